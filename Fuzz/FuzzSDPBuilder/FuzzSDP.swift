public import FuzzDriver
public import SIP

/// Session descriptions written from fuzzed fields — the shape a caller's offer or a callee's
/// answer has, with every number that becomes a port, a frame size or a clock drawn from a table
/// of extremes or from the input. Shared by the call-path and answer fuzz targets.
public enum FuzzSDP {
    static let addresses = ["192.0.2.10", "127.0.0.1", "::1", "2001:db8::10", "fe80::10", "224.2.1.1/127", "host.example", "0.0.0.0", "192.0.2.10%eth0", ""]
    static let ports = ["40000", "0", "1", "65534", "65535", "65536", "70000", "-1", "99999999999999999999", "40000/2", "40000/0", "x"]
    static let protos = ["RTP/AVP", "RTP/SAVP", "RTP/SAVPF", "RTP/AVPF", "UDP/TLS/RTP/SAVPF", "TCP/RTP/AVP", "x"]
    static let encodings = ["opus", "G722", "PCMA", "PCMU", "telephone-event", "OPUS", "g722", "pcmu", "CN", "x"]
    static let clocks = ["48000", "8000", "16000", "0", "1", "49", "2147483648", "9223372036854775807", "99999999999999999999", "-8000", "x"]
    static let channels = ["", "/2", "/1", "/0", "/-1", "/99999999999999999999"]
    static let ptimes = ["20", "0", "-20", "999999999999999", "1e400", "30", "10", "120", "121", "0.5", "nan", "9", "40", "60", "100"]
    static let rtcps = ["70000", "65535", "65536", "0", "-1", "junk", "53020 IN IP4 192.0.2.11", "+1", "99999999999999999999"]
    static let suites = ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AES_256_CM_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80", "x"]
    static let cryptoParameters = ["", "|2^20|1:4", "|2^31", "|2^48", "|2^99999", "|1:32", "|2^20|99999999999:4", "|x", " KDR=1"]
    static let directions = ["sendrecv", "sendonly", "recvonly", "inactive"]
    static let fmtps = ["minptime=10;useinbandfec=1", "0-15", "0-999999", "maxplaybackrate=99999999999999999", "", "stereo=1"]

    /// The key a suite uses (key and salt), as ours: fixed bytes, so inputs replay the same.
    public static func ourKey(_ suite: String) -> [UInt8] {
        [UInt8](repeating: 0x5A, count: suite.hasPrefix("AEAD") ? 28 : 30)
    }

    /// A caller's offer: one to three m-lines, mostly audio.
    public static func offer(_ input: inout FuzzInput, srtp: Bool) -> String {
        if input.byte() % 16 == 0 { return input.text(max: 1500) }  // raw, now and then
        let address = input.bool() ? "192.0.2.10" : input.pick(addresses)
        var lines = ["v=0", "o=- \(input.u32()) \(input.u16()) IN \(address.contains(":") ? "IP6" : "IP4") \(address)", "s=-"]
        lines.append("c=IN \(address.contains(":") ? "IP6" : "IP4") \(address)")
        lines.append("t=0 0")
        for index in 0..<input.int(in: 1...3) {
            lines += section(&input, audio: index == 0 || input.bool(), srtp: srtp, payloadTypes: [], cryptoTags: [])
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// A callee's answer to `offer`: as many m-lines (mostly), formats mostly from the offer,
    /// crypto mostly with a tag and suite the offer had.
    public static func answer(_ input: inout FuzzInput, to offer: SDPSession) -> String {
        if input.byte() % 16 == 0 { return input.text(max: 1500) }
        let address = input.bool() ? "198.51.100.20" : input.pick(addresses)
        var lines = ["v=0", "o=- \(input.u32()) \(input.u16()) IN \(address.contains(":") ? "IP6" : "IP4") \(address)", "s=-",
                     "c=IN \(address.contains(":") ? "IP6" : "IP4") \(address)", "t=0 0"]
        let count = input.byte() % 8 == 0 ? input.int(in: 0...3) : offer.media.count
        for index in 0..<count {
            let ours = index < offer.media.count ? offer.media[index] : nil
            let tags = ours.map { $0.attributes(named: "crypto").compactMap(SDPCryptoAttribute.init(attributeValue:)) } ?? []
            lines += section(
                &input, audio: true, srtp: ours?.proto.hasPrefix("RTP/SAVP") ?? false,
                payloadTypes: ours?.formats.compactMap { Int($0) } ?? [], cryptoTags: tags.map { ($0.tag, $0.suite) })
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    private static func section(_ input: inout FuzzInput, audio: Bool, srtp: Bool, payloadTypes: [Int], cryptoTags: [(Int, String)]) -> [String] {
        let port = input.byte() % 4 == 0 ? input.pick(ports) : String(input.int(in: 1024...65535))
        let proto = input.byte() % 8 == 0 ? input.pick(protos) : (srtp ? "RTP/SAVP" : "RTP/AVP")
        var formats: [Int] = []
        for _ in 0..<input.int(in: 1...5) {
            formats.append(!payloadTypes.isEmpty && input.byte() % 4 != 0 ? input.pick(payloadTypes) : input.pick([0, 8, 9, 96, 100, 101, 102, 111, 127, 128, -1, input.int(in: 0...255)]))
        }
        var lines = ["m=\(audio ? "audio" : input.pick(["video", "application", "text"])) \(port) \(proto) \(formats.map(String.init).joined(separator: " "))"]
        if input.byte() % 8 == 0 { lines.append("c=IN IP4 \(input.pick(addresses))") }
        for format in formats where input.byte() % 4 != 0 {
            let known: String? = switch format {
            case 111, 96: "opus/48000/2"
            case 9: "G722/8000"
            case 8: "PCMA/8000"
            case 0: "PCMU/8000"
            case 100: "telephone-event/8000"
            case 101: "telephone-event/48000"
            case 102: "telephone-event/16000"
            default: nil
            }
            let map = known.flatMap { input.byte() % 4 != 0 ? $0 : nil } ?? "\(input.pick(encodings))/\(input.pick(clocks))\(input.pick(channels))"
            lines.append("a=rtpmap:\(format) \(map)")
            if input.byte() % 4 == 0 { lines.append("a=fmtp:\(format) \(input.pick(fmtps))") }
        }
        if input.bool() { lines.append("a=ptime:\(input.byte() % 4 == 0 ? input.text(max: 24) : input.pick(ptimes))") }
        if input.byte() % 4 == 0 { lines.append("a=maxptime:\(input.pick(ptimes))") }
        if input.byte() % 4 == 0 { lines.append("a=rtcp:\(input.pick(rtcps))") }
        if input.bool() { lines.append("a=rtcp-mux") }
        if srtp || input.byte() % 8 == 0 {
            for _ in 0..<input.int(in: 0...3) {
                let (tag, suite) = !cryptoTags.isEmpty && input.byte() % 4 != 0 ? input.pick(cryptoTags) : (input.pick([1, 2, 3, 0, 1_000_000_000, input.int(in: 0...99)]), input.pick(suites))
                let keyLength = input.byte() % 4 == 0 ? input.int(in: 0...64) : (suite.hasPrefix("AEAD") ? 28 : 30)
                let key = (0..<keyLength).map { _ in input.byte() }
                lines.append("a=crypto:\(tag) \(suite) inline:\(Base64.encode(key))\(input.pick(cryptoParameters))")
            }
        }
        lines.append("a=\(input.pick(directions))")
        for _ in 0..<input.int(in: 0...2) where input.byte() % 4 == 0 { lines.append("a=\(input.text(max: 60))") }
        return lines
    }
}
