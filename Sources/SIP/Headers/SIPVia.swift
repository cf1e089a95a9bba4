/// One `via-parm` of a Via header (RFC 3261 §20.42, §18.2.1; RFC 3581 rport; RFC 5118 IPv6).
public struct SIPVia: Hashable, Sendable, CustomStringConvertible {
    /// `SIP/2.0` normally; other versions parse so that a UAS can answer 505.
    public var version: String
    /// Transport token, uppercased: UDP, TCP, TLS, SCTP, WS, WSS or an extension.
    public var transport: String
    /// sent-by host (IPv6 without brackets) and port.
    public var host: String
    public var port: Int?
    public var parameters: [SIPParameter]

    public init(transport: String, host: String, port: Int? = nil, parameters: [SIPParameter] = []) {
        self.version = "SIP/2.0"
        self.transport = transport.uppercased()
        self.host = host
        self.port = port
        self.parameters = parameters
    }

    /// RFC 3261 §8.1.1.7: branches of compliant elements start with this cookie.
    public static let magicCookie = "z9hG4bK"

    public var branch: String? { parameters.value("branch") ?? nil }
    public var received: String? { parameters.value("received") ?? nil }
    public var maddr: String? { parameters.value("maddr") ?? nil }
    /// `rport` (RFC 3581): `.some(nil)` when asked for without a value.
    public var rport: Int?? { parameters.value("rport").map { $0.flatMap { Int($0) } } }

    /// True when the branch carries the RFC 3261 cookie (RFC 2543 peers' do not).
    public var hasRFC3261Branch: Bool { branch?.hasPrefix(Self.magicCookie) ?? false }

    public var sentBy: String {
        let hostText = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]" : host
        return port.map { "\(hostText):\($0)" } ?? hostText
    }

    public var description: String {
        "\(version)/\(transport) \(sentBy)\(parameters.serialized)"
    }

    /// Parses a Via header value: one or more comma-separated via-parms.
    public static func parseList(_ s: inout SIPScanner) throws(SIPParseError) -> [SIPVia] {
        var vias: [SIPVia] = []
        repeat {
            s.skipWhitespace()
            vias.append(try parseOne(&s))
            s.skipWhitespace()
        } while s.consume(UInt8(ascii: ","))
        try s.expectEnd("Via")
        return vias
    }

    /// via-parm = sent-protocol LWS sent-by *( SEMI via-params )
    static func parseOne(_ s: inout SIPScanner) throws(SIPParseError) -> SIPVia {
        let name = try s.token("protocol name in Via")
        try s.expect(UInt8(ascii: "/"), "'/' in Via sent-protocol")
        let version = try s.token("protocol version in Via")
        try s.expect(UInt8(ascii: "/"), "'/' in Via sent-protocol")
        let transport = try s.token("transport in Via")
        s.skipWhitespace()
        let host = try SIPURIParser.parseHost(&s, limit: s.end)
        var port: Int?
        if s.consume(UInt8(ascii: ":"), sws: false) {
            port = Int(try s.number(max: 65535, "Via port"))
        }
        var via = SIPVia(transport: transport, host: host, port: port)
        via.version = name.uppercased() + "/" + version
        via.parameters = try s.parameters()
        // RFC 3261 §25.1 ttl = 1*3DIGIT (0-255); received = IPv4address / IPv6address (RFC 5118 §4.5).
        if let ttl = via.parameters.value("ttl") {
            guard let ttl, let value = Int(ttl), (0...255).contains(value) else { throw s.error("bad Via ttl") }
        }
        if let received = via.parameters.value("received") {
            let text = received.map { $0.hasPrefix("[") && $0.hasSuffix("]") ? String($0.dropFirst().dropLast()) : $0 }
            guard let text, IPAddressText.isIPv4(text) || IPAddressText.isIPv6(text) else {
                throw s.error("Via received is not an IP address")
            }
        }
        if let rport = via.parameters.value("rport"), let value = rport {
            guard let port = Int(value), (1...65535).contains(port) else { throw s.error("bad Via rport") }
        }
        return via
    }
}
