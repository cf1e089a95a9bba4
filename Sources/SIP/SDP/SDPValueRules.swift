/// The ranges SDP values must fall in before they become ports, frame sizes or clocks
/// (docs/RELIABILITY.md: every value from outside is range-checked before it is used). An offer
/// whose only audio stream breaks one of them is refused (488); an answer, dropped with a BYE;
/// where the RFC gives a default for a bad value, the default is used instead.
public enum SDPValueRules {
    /// RFC 4566 §6: `a=ptime` is a hint. RFC 3551 §4.2 and RFC 7587 bound useful packet times to
    /// 10–120 ms (also the longest Opus packet); a value outside — 0, negative, fractional below
    /// 10, huge, not a number — is taken as absent, i.e. the 20 ms default.
    public static let packetTimeMilliseconds = 10...120
    public static let defaultPacketTimeMilliseconds = 20

    /// The packet time an `a=ptime` value asks for, or nil (the default applies).
    public static func packetTime(_ value: String?) -> Int? {
        guard let text = value?.trimmingCharacters(in: " \t"), !text.isEmpty, text.utf8.count <= 16 else { return nil }
        if let whole = Int(text) { return packetTimeMilliseconds.contains(whole) ? whole : nil }
        guard let fractional = Double(text), fractional.isFinite else { return nil }
        let rounded = fractional.rounded()
        guard rounded >= Double(packetTimeMilliseconds.lowerBound), rounded <= Double(packetTimeMilliseconds.upperBound) else { return nil }
        return Int(rounded)
    }

    /// Ports a peer may name for RTP or RTCP (RFC 4566 §5.14 allows 0 only to refuse a stream).
    public static let ports = 1...65535

    /// Why a stream's RTCP port cannot be used.
    public enum RTCPPortProblem: Error, Sendable, Equatable, CustomStringConvertible {
        /// `a=rtcp:<port>` (RFC 3605 §2.1) outside 1–65535.
        case attributeOutOfRange(String)
        /// No `a=rtcp` and the RTP port is 65535: RTP port + 1 (RFC 3550 §11) is no port.
        case noPortAfter(Int)

        public var description: String {
            switch self {
            case .attributeOutOfRange(let value): "a=rtcp port \(value) is outside 1–65535"
            case .noPortAfter(let port): "RTP port \(port) leaves no RTCP port (RFC 3550 §11: RTP port + 1)"
            }
        }
    }

    /// The RTCP port of a stream without rtcp-mux: `a=rtcp` (RFC 3605), else the RTP port + 1.
    /// An `a=rtcp` whose first field is not a number is ignored (the default applies); a number
    /// outside 1–65535 is refused.
    public static func rtcpPort(of media: SDPMedia) -> Result<Int, RTCPPortProblem> {
        if let value = media.attributes(named: "rtcp").first {
            let field = value.split(separator: " ", maxSplits: 1).first.map(String.init) ?? ""
            if !field.isEmpty, field.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "+") }) {
                guard let port = Int(field), ports.contains(port) else { return .failure(.attributeOutOfRange(String(field.prefix(24)))) }
                return .success(port)
            }
        }
        guard media.port < ports.upperBound else { return .failure(.noPortAfter(media.port)) }
        return .success(media.port + 1)
    }

    /// RFC 4733 §2.1: a telephone-event counts in its codec's clock. Peers that pair Opus with
    /// telephone-event/8000 exist (baresip 1.0), so the clocks of the codecs we carry are taken
    /// too; any other clock (0, 49, 10^18) makes the event unusable: that leg's digits go by SIP
    /// INFO instead.
    public static let telephoneEventClockRates: Set<Int> = [8000, 16000, 48000]

    public static func isUsableTelephoneEvent(_ map: SDPRTPMap, codecClockRate: Int) -> Bool {
        map.clockRate == codecClockRate || telephoneEventClockRates.contains(map.clockRate)
    }
}
