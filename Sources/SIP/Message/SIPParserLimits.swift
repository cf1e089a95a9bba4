/// Bounds that keep a hostile peer from costing unbounded memory or time. A message beyond any
/// of them is refused with a `SIPParseError` naming the limit (and a UAS answers 400, or 513 for
/// the size, RFC 3261 §21.5.14), never a crash.
public struct SIPParserLimits: Sendable, Hashable {
    /// Whole message, head and body. UDP cannot carry more than 65,507 bytes anyway.
    public var maxMessageSize: Int = 65_535
    /// Header fields in one message (RFC 4475 §3.1.1.7 `longreq` has 53).
    public var maxHeaderCount: Int = 256
    /// One header field, name to end of (unfolded) value.
    public var maxHeaderLength: Int = 8_192
    /// The Request-URI, and any URI in From, To, Contact, Route and Record-Route.
    public var maxURILength: Int = 4_096

    public init() {}

    public static let `default` = SIPParserLimits()
}
