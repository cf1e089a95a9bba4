import Foundation

/// A mosquitto 2.0 broker for one test on a loopback port (anonymous, no persistence: a restart
/// forgets retained messages, as a broker without a database would), and mosquitto_sub to read
/// what it holds.
public final class Mosquitto: @unchecked Sendable {
    /// The broker's port: picked free, and picked again should another program take it before
    /// the broker binds it (`start`).
    public private(set) var port: Int
    private let fixedPort: Bool
    private let scratch: ScratchDirectory
    public private(set) var process: PeerProcess?

    /// With `credentials`, the broker refuses anonymous clients (a password file made with
    /// mosquitto_passwd), and the test's own subscribers log in with them.
    public let credentials: (user: String, password: String)?

    /// With `tls`, the listener speaks only TLS with this certificate; subscribers trust its CA.
    public let tls: TestCertificates?

    /// The network namespace the broker and the test's clients run in (`ip netns exec`), or nil.
    public let namespace: String?

    public init(
        in scratch: ScratchDirectory, port: Int? = nil, credentials: (user: String, password: String)? = nil, tls: TestCertificates? = nil,
        namespace: String? = nil
    ) throws {
        self.scratch = scratch
        self.namespace = namespace
        self.port = try port ?? freePort()
        self.fixedPort = port != nil
        self.credentials = credentials
        self.tls = tls
    }

    public func start() async throws {
        // A port found free may be taken (an ephemeral port of another test's socket) before
        // mosquitto binds it: then mosquitto exits ("Address already in use") while the port
        // answers for the other program. Started again on another port.
        for attempt in 1...5 {
            try await startOnce()
            try await Task.sleep(for: .milliseconds(300))
            if process?.process.isRunning == true { return }
            let output = process?.text ?? ""
            guard !fixedPort, attempt < 5 else { throw PeerError("mosquitto did not stay up on port \(port):\n\(output)") }
            port = try freePort()
        }
    }

    private func startOnce() async throws {
        let config = scratch.path("mosquitto-\(port).conf")
        var text = "listener \(port) 127.0.0.1\npersistence false\n"
        if let tls {
            // Started as root, mosquitto would drop to its own user, who cannot read the test's key.
            text += "user root\ncafile \(tls.caFile)\ncertfile \(tls.certificateFile)\nkeyfile \(tls.keyFile)\n"
        }
        if let credentials {
            let passwords = scratch.path("mosquitto-\(port).passwd")
            _ = try await runCommand("mosquitto_passwd", ["-c", "-b", passwords, credentials.user, credentials.password])
            text += "allow_anonymous false\npassword_file \(passwords)\n"
        } else {
            text += "allow_anonymous true\n"
        }
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        process = try peer("mosquitto", ["-c", config])
        if let namespace {
            let deadline = ContinuousClock.now + .seconds(10)
            while try await !runCommand("ip", ["netns", "exec", namespace, "ss", "-Hlnt"]).contains("127.0.0.1:\(port)") {
                guard ContinuousClock.now < deadline else { throw PeerError("mosquitto did not listen on \(port) in \(namespace):\n\(process?.text ?? "")") }
                try await Task.sleep(for: .milliseconds(50))
            }
        } else {
            try await waitUntilListening(port: port, udp: false)
        }
    }

    /// A program of ours, in the broker's namespace if it has one.
    private func peer(_ executable: String, _ arguments: [String]) throws -> PeerProcess {
        guard let namespace else { return try PeerProcess(executable, arguments) }
        guard PeerProcess.find(executable) != nil else { throw PeerError("\(executable) is not installed; run scripts/bootstrap (it installs the test peers)") }
        return try PeerProcess("ip", ["netns", "exec", namespace, executable] + arguments)
    }

    public func stop() {
        process?.stop()
        process = nil
    }

    /// The retained messages under `pattern` right now: topic → payload.
    public func retained(_ pattern: String, wait: Int = 1) async throws -> [String: String] {
        let lines = try await subscribe(pattern, seconds: wait, retainedOnly: true)
        var result: [String: String] = [:]
        for line in lines {
            guard let space = line.firstIndex(of: " ") else { result[line] = ""; continue }
            result[String(line[..<space])] = String(line[line.index(after: space)...])
        }
        return result
    }

    /// Everything published under `pattern` for `seconds` (`topic payload` lines).
    /// mosquitto_sub's own `-W` cannot be used: it relies on SIGALRM, which the test runner's
    /// threads block and its children inherit blocked; so it is stopped from here, its output
    /// line-buffered (`stdbuf -oL`) so that nothing is lost with it.
    public func subscribe(_ pattern: String, seconds: Int, retainedOnly: Bool = false) async throws -> [String] {
        let sub = try startSubscriber(pattern, seconds: seconds, retainedOnly: retainedOnly)
        try await Task.sleep(for: .seconds(seconds))
        sub.stop()
        return sub.text.split(separator: "\n").map(String.init)
    }

    /// Starts a subscriber; its `text` holds what arrived. Stop it with `stop()`.
    public func startSubscriber(_ pattern: String, seconds: Int = 0, retainedOnly: Bool = false) throws -> PeerProcess {
        var arguments = ["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", String(port), "-v", "-t", pattern]
        if let credentials { arguments += ["-u", credentials.user, "-P", credentials.password] }
        if let tls { arguments += ["--cafile", tls.caFile] }
        if retainedOnly { arguments.append("--retained-only") }
        return try peer("stdbuf", arguments)
    }

    /// Publishes once (`mosquitto_pub`); an empty retained message clears the topic.
    public func publish(_ topic: String, _ payload: String, retain: Bool = false) async throws {
        var arguments = ["-h", "127.0.0.1", "-p", String(port), "-t", topic, "-q", "1"]
        if let credentials { arguments += ["-u", credentials.user, "-P", credentials.password] }
        if let tls { arguments += ["--cafile", tls.caFile] }
        arguments += payload.isEmpty ? ["-n"] : ["-m", payload]
        if retain { arguments.append("-r") }
        let publisher = try peer("mosquitto_pub", arguments)
        let status = try await publisher.wait(timeout: .seconds(30))
        guard status == 0 else { throw PeerError("mosquitto_pub exited \(status):\n\(publisher.text)") }
    }
}
