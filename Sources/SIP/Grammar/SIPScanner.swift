/// A cursor over the bytes of one header value, URI or line, with the RFC 3261 §25.1 lexical
/// helpers (tokens, quoted strings, separators with optional white space).
///
/// The scanner reads a range of a shared byte array (the message's storage) without copying it.
/// Line folding reaches it already blanked (CRLF replaced by spaces, RFC 3261 §7.3.1), so `LWS`
/// and `SWS` reduce to runs of SP / HTAB. Error offsets are indices into `bytes`, which for a
/// parsed message are offsets from its first byte.
public struct SIPScanner {
    public let bytes: [UInt8]
    public var index: Int
    public let end: Int

    public init(_ bytes: [UInt8], range: Range<Int>) {
        self.bytes = bytes
        self.index = range.lowerBound
        self.end = range.upperBound
    }

    public init(_ string: String) {
        let bytes = Array(string.utf8)
        self.init(bytes, range: 0..<bytes.count)
    }

    /// The unread rest, as a string.
    public var remainder: String { string(index..<end) }

    @inlinable public var isAtEnd: Bool { index >= end }
    @inlinable public var peek: UInt8? { index < end ? bytes[index] : nil }

    public func error(_ reason: String) -> SIPParseError {
        SIPParseError(reason, at: index)
    }

    public mutating func skipWhitespace() {
        while index < end, bytes[index].isSIPWhitespace { index += 1 }
    }

    /// Consumes `byte` if it is next (after optional white space when `sws`), and says so.
    public mutating func consume(_ byte: UInt8, sws: Bool = true) -> Bool {
        let saved = index
        if sws { skipWhitespace() }
        if index < end, bytes[index] == byte {
            index += 1
            if sws { skipWhitespace() }
            return true
        }
        index = saved
        return false
    }

    public mutating func expect(_ byte: UInt8, _ what: String) throws(SIPParseError) {
        guard consume(byte) else { throw error("expected \(what)") }
    }

    /// Reads `1*token-char`; throws when there is none.
    public mutating func token(_ what: String) throws(SIPParseError) -> String {
        let start = index
        while index < end, bytes[index].isSIPToken { index += 1 }
        guard index > start else { throw SIPParseError("expected \(what)", at: start) }
        return string(start..<index)
    }

    /// Reads a run of bytes of `cls` (possibly empty).
    public mutating func run(of cls: SIPCharacterClass) -> Range<Int> {
        let start = index
        while index < end, bytes[index].isIn(cls) { index += 1 }
        return start..<index
    }

    /// Reads a run of digits as a number no larger than `max`; throws on overflow or no digit.
    public mutating func number(max: UInt64, _ what: String) throws(SIPParseError) -> UInt64 {
        let start = index
        var value: UInt64 = 0
        while index < end, bytes[index].isSIPDigit {
            value = value &* 10 &+ UInt64(bytes[index] &- 0x30)
            if value > max || index - start > 19 {
                throw SIPParseError("\(what) is larger than \(max)", at: start)
            }
            index += 1
        }
        guard index > start else { throw SIPParseError("expected \(what) (digits)", at: start) }
        return value
    }

    /// Reads a `quoted-string` (RFC 3261 §25.1) starting at `"`, returning its content with the
    /// quoted-pairs kept escaped (so that it serializes back unchanged).
    public mutating func quotedString() throws(SIPParseError) -> String {
        let start = index
        guard index < end, bytes[index] == UInt8(ascii: "\"") else { throw error("expected '\"'") }
        index += 1
        let contentStart = index
        while index < end {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let content = string(contentStart..<index)
                index += 1
                return content
            }
            if byte == UInt8(ascii: "\\") {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                guard index + 1 < end, bytes[index + 1] <= 0x7F, bytes[index + 1] != 0x0A, bytes[index + 1] != 0x0D else {
                    throw error("bad escape in quoted string")
                }
                index += 2
                continue
            }
            // qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
            if byte < 0x20 && byte != 0x09 || byte == 0x7F {
                throw error("control character in quoted string")
            }
            index += 1
        }
        throw SIPParseError("unterminated quoted string", at: start)
    }

    /// `gen-value = token / host / quoted-string` (RFC 3261 §25.1); IPv6 references included.
    public mutating func genericValue() throws(SIPParseError) -> String {
        guard let byte = peek else { throw error("expected a parameter value") }
        if byte == UInt8(ascii: "\"") {
            let start = index
            _ = try quotedString()
            return string(start..<index)
        }
        if byte == UInt8(ascii: "[") {
            let start = index
            while index < end, bytes[index] != UInt8(ascii: "]") { index += 1 }
            guard index < end else { throw error("unterminated IPv6 reference") }
            index += 1
            return string(start..<index)
        }
        // token also covers hostnames and IPv4 addresses; ':' for unbracketed IPv6 (RFC 5118 §4.5).
        let start = index
        while index < end, bytes[index].isSIPToken || bytes[index] == UInt8(ascii: ":") { index += 1 }
        guard index > start else { throw error("expected a parameter value") }
        return string(start..<index)
    }

    /// Parameters `*( SEMI generic-param )` (RFC 3261 §25.1), stopping before `,`, `>` or the end.
    public mutating func parameters() throws(SIPParseError) -> [SIPParameter] {
        var parameters: [SIPParameter] = []
        while consume(UInt8(ascii: ";")) {
            let name = try token("a parameter name")
            var value: String?
            if consume(UInt8(ascii: "=")) {
                value = try genericValue()
            }
            parameters.append(SIPParameter(name: name, value: value))
        }
        return parameters
    }

    @inlinable
    public func string(_ range: Range<Int>) -> String {
        String(decoding: bytes[range], as: UTF8.self)
    }

    /// Throws unless only white space remains.
    public mutating func expectEnd(_ what: String) throws(SIPParseError) {
        skipWhitespace()
        guard isAtEnd else { throw error("unexpected characters after \(what)") }
    }
}

/// One `;name[=value]` parameter. Names compare case-insensitively (RFC 3261 §7.3.1).
public struct SIPParameter: Hashable, Sendable {
    public var name: String
    public var value: String?

    public init(name: String, value: String? = nil) {
        self.name = name
        self.value = value
    }
}

extension Array where Element == SIPParameter {
    /// The first parameter named `name` (given in lowercase; names compare case-insensitively):
    /// `.some(nil)` for a valueless one.
    public func value(_ name: String) -> String?? {
        for parameter in self where parameter.name.equalsLowercaseASCII(name) { return .some(parameter.value) }
        return nil
    }

    public func has(_ name: String) -> Bool { value(name) != nil }

    public mutating func set(_ name: String, _ value: String?) {
        if let index = firstIndex(where: { $0.name.equalsLowercaseASCII(name) }) {
            self[index].value = value
        } else {
            append(SIPParameter(name: name, value: value))
        }
    }

    public mutating func remove(_ name: String) {
        removeAll { $0.name.equalsLowercaseASCII(name) }
    }

    /// `;name=value;flag` as on the wire.
    public var serialized: String {
        var out = ""
        for parameter in self {
            out += ";" + parameter.name
            if let value = parameter.value { out += "=" + value }
        }
        return out
    }
}

extension String {
    /// `self` equals `lowercase` ignoring ASCII case, without building a lowercased copy.
    @inlinable
    func equalsLowercaseASCII(_ lowercase: String) -> Bool {
        var mine = utf8.makeIterator()
        var theirs = lowercase.utf8.makeIterator()
        while true {
            switch (mine.next(), theirs.next()) {
            case (nil, nil): return true
            case (let a?, let b?) where a.asciiLowercased == b: continue
            default: return false
            }
        }
    }
}
