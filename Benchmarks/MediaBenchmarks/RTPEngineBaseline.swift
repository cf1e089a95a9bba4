import Foundation
import Media
import NIOCore

/// rtpengine (Debian rtpengine-daemon 10.5, userspace only: `--table=-1`) as the baseline,
/// driven over its ng control protocol (bencode over UDP) with the same traffic as ours.
final class RTPEngine {
    let process = Process()
    let controlPort: Int
    let fd: Int32

    init(controlPort: Int = 22222, portRange: ClosedRange<Int> = 50000...59999) throws {
        self.controlPort = controlPort
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/rtpengine") else {
            throw BenchError("rtpengine is not installed: scripts/bootstrap bench installs rtpengine-daemon")
        }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/rtpengine")
        process.arguments = [
            "--config-file=none", "--table=-1", "--foreground", "--log-stderr", "--log-level=4", "--interface=127.0.0.1",
            "--listen-ng=127.0.0.1:\(controlPort)", "--port-min=\(portRange.lowerBound)", "--port-max=\(portRange.upperBound)",
            "--num-threads=2", "--no-redis-required", "--pidfile=/dev/null",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // Wait until it answers a ping.
        for _ in 0..<50 {
            if let reply = try? command(["command": .string("ping")]), reply["result"] == .string("pong") { return }
            usleep(100_000)
        }
        throw BenchError("rtpengine did not answer ng ping")
    }

    deinit {
        process.terminate()
        process.waitUntilExit()
        close(fd)
    }

    /// CPU time of the whole rtpengine process (all threads, user + system), nanoseconds.
    var cpuNanoseconds: UInt64 {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = (UInt64(fields[11]) ?? 0) + (UInt64(fields[12]) ?? 0)
        return ticks * 1_000_000_000 / UInt64(sysconf(Int32(_SC_CLK_TCK)))
    }

    private var cookie = 0

    func command(_ dictionary: [String: Bencode]) throws -> [String: Bencode] {
        cookie += 1
        let message = Array("\(cookie) ".utf8) + Bencode.dictionary(dictionary).encoded
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(controlPort).bigEndian
        _ = message.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65536, 0) }
        guard n > 0, let space = buffer[..<n].firstIndex(of: 0x20) else { throw BenchError("no ng reply") }
        var parser = Bencode.Parser(bytes: Array(buffer[(space + 1)..<n]))
        guard case .dictionary(let reply) = try parser.parse() else { throw BenchError("ng reply is not a dictionary") }
        if reply["result"] == .string("error") { throw BenchError("rtpengine: \(reply["error-reason"].map { "\($0)" } ?? "?")") }
        return reply
    }

    /// Sets up one call; returns the ports rtpengine gives the legacy side and the cloud side.
    func setUpCall(_ scenario: RelayScenario, index: Int, generatorPort: Int, cloudKey: SRTPKeyMaterial) throws -> (legacyPort: Int, cloudPort: Int) {
        let callID = "bench-\(index)-\(UUID().uuidString)"
        let legacySDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio \(generatorPort) RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        var offer: [String: Bencode] = [
            "command": .string("offer"), "call-id": .string(callID), "from-tag": .string("legacy"), "sdp": .string(legacySDP),
            "replace": .list([.string("origin")]),
        ]
        if scenario != .relay { offer["transport-protocol"] = .string("RTP/SAVP") }
        if scenario == .transcoding { offer["codec"] = .dictionary(["transcode": .list([.string("opus")])]) }
        let offered = try command(offer)
        guard case .string(let toCloud)? = offered["sdp"], let cloudPort = Self.port(in: toCloud) else { throw BenchError("offer: no SDP") }

        let cloudProto = scenario == .relay ? "RTP/AVP" : "RTP/SAVP"
        let (pt, rtpmap) = scenario == .transcoding ? (Self.payloadType(of: "opus", in: toCloud) ?? 96, "opus/48000/2") : (9, "G722/8000")
        var cloudSDP = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio \(generatorPort) \(cloudProto) \(pt)\r\na=rtpmap:\(pt) \(rtpmap)\r\na=ptime:20\r\na=sendrecv\r\n"
        if scenario != .relay {
            let tag = Self.cryptoTag(of: "AES_CM_128_HMAC_SHA1_80", in: toCloud) ?? 1
            cloudSDP += "a=crypto:\(tag) AES_CM_128_HMAC_SHA1_80 inline:\(Data(cloudKey.bytes).base64EncodedString())\r\n"
        }
        let answered = try command([
            "command": .string("answer"), "call-id": .string(callID), "from-tag": .string("legacy"), "to-tag": .string("cloud"),
            "sdp": .string(cloudSDP), "replace": .list([.string("origin")]),
        ])
        guard case .string(let toLegacy)? = answered["sdp"], let legacyPort = Self.port(in: toLegacy) else { throw BenchError("answer: no SDP") }
        return (legacyPort, cloudPort)
    }

    static func port(in sdp: String) -> Int? {
        for line in sdp.split(whereSeparator: \.isNewline) where line.hasPrefix("m=audio ") {
            return Int(line.split(separator: " ")[1])
        }
        return nil
    }

    static func payloadType(of encoding: String, in sdp: String) -> Int? {
        for line in sdp.split(whereSeparator: \.isNewline) where line.hasPrefix("a=rtpmap:") && line.lowercased().contains(" \(encoding)/") {
            return Int(line.dropFirst("a=rtpmap:".count).split(separator: " ")[0])
        }
        return nil
    }

    static func cryptoTag(of suite: String, in sdp: String) -> Int? {
        for line in sdp.split(whereSeparator: \.isNewline) where line.hasPrefix("a=crypto:") && line.contains(suite) {
            return Int(line.dropFirst("a=crypto:".count).split(separator: " ")[0])
        }
        return nil
    }

    /// The same load as `OurRelay.run`, through rtpengine.
    static func run(_ scenario: RelayScenario, channels: Int, seconds: Int, opusComplexity: Int) throws -> RelayRun {
        let engine = try RTPEngine()
        let traffic = try ScenarioTraffic(scenario, seconds: seconds, opusComplexity: opusComplexity)
        let generator = LoadGenerator()
        for index in 0..<channels {
            let (legacyPort, cloudPort) = try engine.setUpCall(scenario, index: index, generatorPort: generator.port, cloudKey: traffic.cloudKey)
            generator.streams.append(.init(destination: try SocketAddress(ipAddress: "127.0.0.1", port: legacyPort), packets: traffic.legacy.packets))
            generator.streams.append(.init(destination: try SocketAddress(ipAddress: "127.0.0.1", port: cloudPort), packets: traffic.cloud.packets))
        }
        let ticks = seconds * 50 - 1
        let before = engine.cpuNanoseconds
        generator.run(ticks: ticks)
        let after = engine.cpuNanoseconds
        // rtpengine keeps the input SSRCs: count what came back per stream by its SSRC.
        let received = generator.arrivals.count
        let result = LoadGenerator.Result(expected: generator.streams.count * ticks, received: received, late: 0, latenciesMicroseconds: [])
        return RelayRun(cpuMicrosecondsPerPacket: Double(after - before) / 1000 / Double(generator.streams.count * ticks), result: result)
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Bencode (the ng protocol's encoding): byte strings, integers, lists, dictionaries.
indirect enum Bencode: Equatable, CustomStringConvertible {
    case string(String)
    case integer(Int)
    case list([Bencode])
    case dictionary([String: Bencode])

    var encoded: [UInt8] {
        switch self {
        case .string(let s): return Array("\(s.utf8.count):".utf8) + Array(s.utf8)
        case .integer(let i): return Array("i\(i)e".utf8)
        case .list(let items): return [0x6C] + items.flatMap(\.encoded) + [0x65]
        case .dictionary(let d):
            return [0x64] + d.keys.sorted().flatMap { Bencode.string($0).encoded + d[$0]!.encoded } + [0x65]
        }
    }

    var description: String {
        switch self {
        case .string(let s): s
        case .integer(let i): String(i)
        case .list(let l): "\(l)"
        case .dictionary(let d): "\(d)"
        }
    }

    struct Parser {
        let bytes: [UInt8]
        var index = 0

        mutating func parse() throws -> Bencode {
            guard index < bytes.count else { throw BenchError("bencode: truncated") }
            switch bytes[index] {
            case 0x69:  // i…e
                index += 1
                let end = bytes[index...].firstIndex(of: 0x65) ?? bytes.count
                defer { index = end + 1 }
                return .integer(Int(String(decoding: bytes[index..<end], as: UTF8.self)) ?? 0)
            case 0x6C:
                index += 1
                var items: [Bencode] = []
                while index < bytes.count, bytes[index] != 0x65 { items.append(try parse()) }
                index += 1
                return .list(items)
            case 0x64:
                index += 1
                var d: [String: Bencode] = [:]
                while index < bytes.count, bytes[index] != 0x65 {
                    guard case .string(let key) = try parse() else { throw BenchError("bencode: key") }
                    d[key] = try parse()
                }
                index += 1
                return .dictionary(d)
            default:
                guard let colon = bytes[index...].firstIndex(of: 0x3A), let length = Int(String(decoding: bytes[index..<colon], as: UTF8.self)) else {
                    throw BenchError("bencode: bad string")
                }
                let start = colon + 1
                index = start + length
                return .string(String(decoding: bytes[start..<min(bytes.count, start + length)], as: UTF8.self))
            }
        }
    }
}
