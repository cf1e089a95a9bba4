public import Foundation

/// A mosquitto 2.0 broker for one test on a loopback port (anonymous, no persistence: a restart
/// forgets retained messages, as a broker without a database would), and mosquitto_sub to read
/// what it holds.
public final class Mosquitto: @unchecked Sendable {
    public let port: Int
    private let scratch: ScratchDirectory
    public private(set) var process: PeerProcess?

    public init(in scratch: ScratchDirectory, port: Int? = nil) throws {
        self.scratch = scratch
        self.port = try port ?? freePort()
    }

    public func start() async throws {
        let config = scratch.path("mosquitto-\(port).conf")
        try "listener \(port) 127.0.0.1\nallow_anonymous true\npersistence false\n".write(toFile: config, atomically: true, encoding: .utf8)
        process = try PeerProcess("mosquitto", ["-c", config])
        try await waitUntilListening(port: port, udp: false)
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
        if retainedOnly { arguments.append("--retained-only") }
        return try PeerProcess("stdbuf", arguments)
    }
}
