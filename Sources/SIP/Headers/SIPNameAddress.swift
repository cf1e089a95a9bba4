/// `name-addr / addr-spec` with header parameters: the value of From, To, Contact, Route,
/// Record-Route, Reply-To, Path (RFC 3261 §20.10, §20.20, §20.39, §25.1).
public struct SIPNameAddress: Hashable, Sendable, CustomStringConvertible {
    /// Display name as written: a quoted string keeps its quotes and escapes.
    public var displayName: String?
    public var uri: AnyURI
    public var parameters: [SIPParameter]

    public init(displayName: String? = nil, uri: AnyURI, parameters: [SIPParameter] = []) {
        self.displayName = displayName
        self.uri = uri
        self.parameters = parameters
    }

    public init(displayName: String? = nil, uri: SIPURI, parameters: [SIPParameter] = []) {
        self.init(displayName: displayName, uri: .sip(uri), parameters: parameters)
    }

    /// The `tag` parameter (From/To, RFC 3261 §19.3).
    public var tag: String? {
        get { parameters.value("tag") ?? nil }
        set {
            if let newValue { parameters.set("tag", newValue) } else { parameters.remove("tag") }
        }
    }

    public var sipURI: SIPURI? { uri.sipURI }

    /// The display name as text: without its quotes, quoted pairs resolved (RFC 3261 §25.1).
    public var displayText: String? {
        guard var text = displayName else { return nil }
        guard text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 2 else { return text }
        text = String(text.dropFirst().dropLast())
        var out = "", escaped = false
        for character in text {
            if escaped || character != "\\" {
                out.append(character)
                escaped = false
            } else {
                escaped = true
            }
        }
        return out
    }

    /// A display name quoted for a header, from text that went through `safeDisplayName`.
    public static func quoted(_ text: String?) -> String? { text.map { "\"\($0)\"" } }

    /// Always the `<…>` form, which is never ambiguous (RFC 3261 §20.10).
    public var description: String {
        var out = ""
        if let displayName { out += displayName + " " }
        out += "<" + uri.description + ">" + parameters.serialized
        return out
    }

    /// Parses exactly one name-addr/addr-spec (From, To): trailing text is an error.
    public static func parseSingle(_ s: inout SIPScanner, header: String) throws(SIPParseError) -> SIPNameAddress {
        s.skipWhitespace()
        let value = try parseOne(&s, header: header)
        try s.expectEnd(header)
        return value
    }

    /// Parses a comma-separated list (Contact, Route, Record-Route). Contact `*` is handled by
    /// `SIPContact`.
    public static func parseList(_ s: inout SIPScanner, header: String) throws(SIPParseError) -> [SIPNameAddress] {
        var values: [SIPNameAddress] = []
        repeat {
            s.skipWhitespace()
            values.append(try parseOne(&s, header: header))
            s.skipWhitespace()
        } while s.consume(UInt8(ascii: ","))
        try s.expectEnd(header)
        return values
    }

    static func parseOne(_ s: inout SIPScanner, header: String) throws(SIPParseError) -> SIPNameAddress {
        guard let first = s.peek else { throw s.error("empty \(header)") }
        var displayName: String?
        var enclosed = false
        if first == UInt8(ascii: "\"") {
            let start = s.index
            _ = try s.quotedString()
            displayName = s.string(start..<s.index)
            s.skipWhitespace()
            guard s.peek == UInt8(ascii: "<") else { throw s.error("expected '<' after the display name") }
            enclosed = true
        } else if first == UInt8(ascii: "<") {
            enclosed = true
        } else {
            // Either *(token LWS) "<" or a bare addr-spec: look for '<' before any ',' or ';'
            // outside tokens and white space.
            var index = s.index
            while index < s.end, s.bytes[index].isSIPToken || s.bytes[index].isSIPWhitespace { index += 1 }
            if index < s.end, s.bytes[index] == UInt8(ascii: "<") {
                var nameEnd = index
                while nameEnd > s.index, s.bytes[nameEnd - 1].isSIPWhitespace { nameEnd -= 1 }
                if nameEnd > s.index { displayName = s.string(s.index..<nameEnd) }
                s.index = index
                enclosed = true
            } else if index < s.end, s.bytes[index] != UInt8(ascii: ":") {
                // RFC 4475 §3.1.2.15: a display name with non-token characters must be quoted.
                if s.bytes[index..<s.end].contains(UInt8(ascii: "<")) {
                    throw SIPParseError("display name with non-token characters must be quoted", at: index)
                }
            }
        }
        let uri: AnyURI
        if enclosed {
            s.index += 1  // '<'
            guard let close = s.bytes[s.index..<s.end].firstIndex(of: UInt8(ascii: ">")) else {
                throw s.error("missing '>' in \(header)")
            }
            // LAQUOT / RAQUOT: no white space inside the brackets (RFC 4475 §3.1.2.14).
            var inner = SIPScanner(s.bytes, range: s.index..<close)
            if inner.peek?.isSIPWhitespace == true || s.bytes[close - 1].isSIPWhitespace {
                throw s.error("white space inside <> in \(header)")
            }
            uri = try SIPURIParser.parse(&inner, context: .enclosed)
            guard inner.isAtEnd else { throw inner.error("unexpected character in URI of \(header)") }
            s.index = close + 1
        } else {
            uri = try SIPURIParser.parse(&s, context: .bare)
        }
        let parameters = try s.parameters()
        return SIPNameAddress(displayName: displayName, uri: uri, parameters: parameters)
    }
}

/// A Contact header value: `*` (for REGISTER removal, RFC 3261 §10.2.2) or a list of addresses.
public enum SIPContact: Hashable, Sendable {
    case wildcard
    case addresses([SIPNameAddress])

    public static func parse(_ s: inout SIPScanner) throws(SIPParseError) -> SIPContact {
        s.skipWhitespace()
        if s.peek == UInt8(ascii: "*") {
            s.index += 1
            try s.expectEnd("Contact")
            return .wildcard
        }
        let list = try SIPNameAddress.parseList(&s, header: "Contact")
        // RFC 3261 §20.10 / §25.1 contact-params: q = "0"…"1" with up to 3 decimals; expires = delta-seconds.
        for address in list {
            if let expires = address.parameters.value("expires") {
                guard let expires, UInt64(expires).map({ $0 <= UInt64(UInt32.max) }) == true else {
                    throw s.error("Contact expires is not a number of seconds up to 2^32-1")
                }
            }
            if let q = address.parameters.value("q") {
                guard let q, let value = Double(q), (0...1).contains(value) else { throw s.error("Contact q is not between 0 and 1") }
            }
        }
        return .addresses(list)
    }
}

extension SIPHeaderName {
    /// RFC 3325 §9.1: the identity a trusted element asserts.
    public static let pAssertedIdentity = SIPHeaderName("P-Asserted-Identity")
    /// RFC 3325 §9.2: the identity a user agent would like asserted.
    public static let pPreferredIdentity = SIPHeaderName("P-Preferred-Identity")
}

extension SIPNameAddress {
    /// A display name as it may go into a header: at most `limit` characters, no controls, quotes
    /// or backslashes (so that quoting it cannot break the header), trimmed; nil when nothing is
    /// left. Display names come from outside (a station's From, the directory, configuration).
    public static func safeDisplayName(_ text: String?, limit: Int = 64) -> String? {
        guard let text else { return nil }
        let kept = text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F && $0 != "\"" && $0 != "\\" }
        let trimmed = String(String.UnicodeScalarView(kept.prefix(limit))).trimmingCharacters(in: .whitespaces)
        return trimmed.isEmpty ? nil : trimmed
    }
}
