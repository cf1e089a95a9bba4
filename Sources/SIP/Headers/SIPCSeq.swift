/// CSeq: sequence number and method (RFC 3261 §20.16). The number is below 2^31 (§8.1.1.5).
public struct SIPCSeq: Hashable, Sendable, CustomStringConvertible {
    public var sequence: UInt32
    public var method: SIPMethod

    public init(_ sequence: UInt32, _ method: SIPMethod) {
        self.sequence = sequence
        self.method = method
    }

    public var description: String { "\(sequence) \(method)" }

    public static func parse(_ s: inout SIPScanner) throws(SIPParseError) -> SIPCSeq {
        s.skipWhitespace()
        let number = try s.number(max: UInt64(Int32.max), "CSeq number")
        guard s.peek?.isSIPWhitespace == true else { throw s.error("expected white space after the CSeq number") }
        s.skipWhitespace()
        let method = SIPMethod(try s.token("CSeq method"))
        try s.expectEnd("CSeq")
        return SIPCSeq(UInt32(number), method)
    }
}

/// A request method (RFC 3261 §7.1, §27.4). Methods are case-sensitive tokens.
public struct SIPMethod: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    public static let invite: SIPMethod = "INVITE"
    public static let ack: SIPMethod = "ACK"
    public static let bye: SIPMethod = "BYE"
    public static let cancel: SIPMethod = "CANCEL"
    public static let options: SIPMethod = "OPTIONS"
    public static let register: SIPMethod = "REGISTER"
    public static let info: SIPMethod = "INFO"
    public static let prack: SIPMethod = "PRACK"
    public static let update: SIPMethod = "UPDATE"
    public static let message: SIPMethod = "MESSAGE"
    public static let subscribe: SIPMethod = "SUBSCRIBE"
    public static let notify: SIPMethod = "NOTIFY"
    public static let refer: SIPMethod = "REFER"

    /// The methods of RFC 3261 and the extensions above: an element recognizes them even where
    /// it does not allow them (405, not 501; RFC 3261 §8.2.1).
    public static let standard: Set<SIPMethod> = [.invite, .ack, .bye, .cancel, .options, .register, .info, .prack, .update, .message, .subscribe, .notify, .refer]
}
