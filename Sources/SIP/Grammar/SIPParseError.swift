/// Why a SIP message, header or URI could not be parsed, and where.
///
/// `offset` counts bytes from the start of what was handed to the parser; `SIPMessageParser`
/// turns it into the 1-based `line:column` that `sip-check` prints.
public struct SIPParseError: Error, Hashable, Sendable, CustomStringConvertible {
    public var reason: String
    /// Byte offset of the problem in the parsed input.
    public var offset: Int
    /// 1-based line and column, filled in by the message parser.
    public var line: Int = 0
    public var column: Int = 0

    public init(_ reason: String, at offset: Int) {
        self.reason = reason
        self.offset = offset
    }

    public var description: String {
        line > 0 ? "\(line):\(column): \(reason)" : "offset \(offset): \(reason)"
    }

    /// Returns the error with its offset moved by `base` (for errors found inside a header value).
    func shifted(by base: Int) -> SIPParseError {
        var copy = self
        copy.offset += base
        return copy
    }
}
