import Foundation

/// One baresip 1.0 (Debian's `baresip-core`) with its own config directory: it plays a WAV into
/// every call (module aufile), dumps what it decodes (module sndfile, `snd/…-dec.wav`), answers by
/// itself when the account says `answermode=auto`, and takes commands during a call over
/// ctrl_tcp (netstring JSON) — `/sndcode 5` sends a DTMF digit, as a door opener would.
public final class Baresip: @unchecked Sendable {
    public let name: String
    public let directory: String
    /// Where it listens for SIP (UDP and TCP; TLS too when it has a certificate).
    public let sipPort: Int
    public let controlPort: Int
    public private(set) var process: PeerProcess?
    /// The network namespace it runs in (`ip netns exec`), or nil for the test's own.
    public let namespace: String?

    /// - Parameters:
    ///   - modules: codec and media modules beyond aufile, sndfile and ctrl_tcp (`g722.so`,
    ///     `opus.so`, `srtp.so`, …).
    ///   - account: the account line (`<sip:door@127.0.0.1>;regint=0;answermode=auto;…`).
    ///   - tone: the WAV played into calls; its rate and channels must suit the codec (16 kHz
    ///     mono for G.722, 48 kHz stereo for Opus).
    public init(
        _ name: String, in scratch: ScratchDirectory, modules: [String], account: String, tone: String, caFile: String? = nil,
        rtpPorts: ClosedRange<Int>, extraConfig: String = "", namespace: String? = nil
    ) throws {
        self.name = name
        self.namespace = namespace
        directory = scratch.path("baresip-\(name)")
        // baresip listens on sipPort for UDP and TCP and on sipPort + 1 for TLS.
        var port = try freePort()
        while port >= 65535 || !portIsFree(port + 1) || !portIsFree(port, udp: true) { port = try freePort() }
        sipPort = port
        controlPort = try freePort()
        try FileManager.default.createDirectory(atPath: directory + "/snd", withIntermediateDirectories: true)
        var config = """
            poll_method epoll
            sip_listen 127.0.0.1:\(sipPort)
            net_interface 127.0.0.1
            module_path /usr/lib/baresip/modules

            """
        if let caFile { config += "sip_cafile \(caFile)\n" }
        for module in modules + ["aufile.so", "sndfile.so"] { config += "module \(module)\n" }
        config += """
            module_app account.so
            module_app menu.so
            module_app ctrl_tcp.so
            ctrl_tcp_listen 127.0.0.1:\(controlPort)
            audio_source aufile,\(tone)
            audio_player aufile,/dev/null
            snd_path \(directory)/snd
            rtp_ports \(rtpPorts.lowerBound)-\(rtpPorts.upperBound)
            \(extraConfig)

            """
        try config.write(toFile: directory + "/config", atomically: true, encoding: .utf8)
        try (account + "\n").write(toFile: directory + "/accounts", atomically: true, encoding: .utf8)
    }

    /// Starts it for `seconds`; `command` runs at start (`/dial sip:…`), and `commands` after it
    /// (baresip 1.0 takes up to 16).
    public func start(seconds: Int, command: String? = nil, commands: [String] = []) throws {
        var arguments = ["-f", directory, "-t", String(seconds)]
        for command in (command.map { [$0] } ?? []) + commands { arguments += ["-e", command] }
        if let namespace {
            guard PeerProcess.find("baresip") != nil else { throw PeerError("baresip is not installed; run scripts/bootstrap (it installs the test peers)") }
            process = try PeerProcess("ip", ["netns", "exec", namespace, "baresip"] + arguments, directory: URL(fileURLWithPath: directory))
        } else {
            process = try PeerProcess("baresip", arguments, directory: URL(fileURLWithPath: directory))
        }
    }

    public var output: String { process?.text ?? "" }

    /// Waits until it takes commands: ctrl_tcp is loaded after its SIP transports are bound, so
    /// a call placed to it from then on finds it listening (a station called the moment its
    /// process starts may not be, and the call fails for a reason the test is not about).
    public func waitUntilReady(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        let probe = ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/\(controlPort)"]
        while ContinuousClock.now < deadline {
            let command = namespace.map { ["ip", "netns", "exec", $0] + probe } ?? probe
            if (try? await runCommand(command[0], Array(command.dropFirst()))) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw PeerError("\(name) did not start within \(timeout): \(output.suffix(2000))")
    }

    public func stop() { process?.stop() }

    /// A menu command over ctrl_tcp: `{"command":"sndcode","params":"5"}`.
    public func command(_ command: String, _ params: String = "") async throws {
        let json = "{\"command\":\"\(command)\",\"params\":\"\(params)\",\"token\":\"t\"}"
        let netstring = "\(json.utf8.count):\(json),"
        let script = "exec 3<>/dev/tcp/127.0.0.1/\(controlPort) && printf '%s' '\(netstring)' >&3 && sleep 0.2"
        if let namespace {
            _ = try await runCommand("ip", ["netns", "exec", namespace, "bash", "-c", script])
        } else {
            _ = try await runCommand("bash", ["-c", script])
        }
    }

    /// What it decoded in its first call (or its latest), as 16 kHz mono (sox converts the dump).
    public func decodedAudio(latest: Bool = false) async throws -> [Int16] {
        let dumps = try FileManager.default.contentsOfDirectory(atPath: directory + "/snd").filter { $0.hasSuffix("-dec.wav") }.sorted()
        guard let dump = latest ? dumps.last : dumps.first else { throw PeerError("\(name): no decoded audio dump; output:\n\(output.suffix(3000))") }
        let mono = directory + "/received-\(dump)"
        _ = try await runCommand("sox", [directory + "/snd/" + dump, "-c", "1", "-r", "16000", mono, "remix", "1"])
        return try wavSamples(URL(fileURLWithPath: mono))
    }

    /// The highest receive bit rate among its last `lines` status lines (one a second): what
    /// reached the decoder in the call's last seconds, without depending on the one line printed
    /// as the far end hung up (under load that one may read 0).
    public func recentReceiveBitRate(lines: Int = 5) -> Int? {
        var rates: [Int] = []
        var rest = output[...]
        while rates.count < lines, let range = rest.range(of: "audio=", options: .backwards) {
            let value = rest[range.upperBound...].prefix { $0 != " " && $0 != "(" }
            let parts = value.split(separator: "/")
            if parts.count == 2, let rate = Int(parts[1]) { rates.append(rate) }
            rest = rest[..<range.lowerBound]
        }
        return rates.max()
    }

    /// Makes a tone WAV with sox: `seconds` of a sine at `frequency`, at `rate` Hz and `channels`.
    public static func tone(_ path: String, frequency: Int, seconds: Int, rate: Int, channels: Int) async throws {
        _ = try await runCommand("sox", ["-n", "-r", String(rate), "-c", String(channels), "-b", "16", path, "synth", String(seconds), "sine", String(frequency), "vol", "0.5"])
    }
}
