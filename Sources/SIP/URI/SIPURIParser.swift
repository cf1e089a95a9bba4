/// Parses URIs (RFC 3261 §19.1 and §25.1, RFC 5118 for IPv6, RFC 3966 for tel).
///
/// Where a URI ends depends on where it stands: a Request-URI is the whole range between the
/// spaces of the request line; a URI in `<…>` is everything up to the `>`; a bare `addr-spec` in
/// From/To/Contact ends at the first `;` (what follows are header parameters, RFC 3261 §20.10),
/// `,` or white space, and must not hold `?`, `,` or `;` of its own.
public enum SIPURIParser {
    public enum Context: Sendable {
        case requestURI
        case enclosed
        case bare
    }

    /// Parses a URI standing alone in `text` (as inside `<…>`: headers allowed).
    public static func parse(_ text: String) throws(SIPParseError) -> AnyURI {
        var scanner = SIPScanner(text)
        let uri = try parse(&scanner, context: .enclosed)
        guard scanner.isAtEnd else { throw scanner.error("unexpected character in URI") }
        return uri
    }

    /// Parses a `sip:`/`sips:` URI standing alone in `text`.
    public static func parseSIP(_ text: String) throws(SIPParseError) -> SIPURI {
        guard case .sip(let uri) = try parse(text) else {
            throw SIPParseError("not a sip: or sips: URI", at: 0)
        }
        return uri
    }

    /// Parses the URI at the scanner's position, leaving the scanner after it.
    public static func parse(_ s: inout SIPScanner, context: Context) throws(SIPParseError) -> AnyURI {
        let limit = context == .bare ? bareEnd(s) : s.end
        let scheme = try parseScheme(&s, limit: limit)
        let uri: AnyURI
        switch scheme {
        case "sip", "sips":
            uri = .sip(try parseSIP(&s, limit: limit, secure: scheme == "sips", context: context))
        case "tel":
            uri = .tel(try parseTel(&s, limit: limit, context: context))
        default:
            // absoluteURI = scheme ":" ( hier-part / opaque-part ) (RFC 2396), made of uric.
            let start = s.index
            while s.index < limit, s.bytes[s.index].isIn(.uric) || s.bytes[s.index] == UInt8(ascii: "%") {
                if context == .bare, s.bytes[s.index] == UInt8(ascii: ";") { break }
                s.index += 1
            }
            guard s.index > start else { throw s.error("empty \(scheme): URI") }
            uri = .other(scheme: scheme, rest: s.string(start..<s.index))
        }
        if context == .requestURI, s.index < s.end {
            throw s.error("unexpected character '\(printable(s.bytes[s.index]))' in Request-URI")
        }
        return uri
    }

    /// Where a bare addr-spec ends: the first `,` or white space (`;` is handled by the parsers).
    private static func bareEnd(_ s: SIPScanner) -> Int {
        var index = s.index
        while index < s.end {
            let byte = s.bytes[index]
            if byte == UInt8(ascii: ",") || byte.isSIPWhitespace { break }
            index += 1
        }
        return index
    }

    private static func parseScheme(_ s: inout SIPScanner, limit: Int) throws(SIPParseError) -> String {
        let start = s.index
        guard s.index < limit, s.bytes[s.index].asciiLowercased >= UInt8(ascii: "a"),
            s.bytes[s.index].asciiLowercased <= UInt8(ascii: "z")
        else { throw s.error("expected a URI scheme") }
        s.index += 1
        while s.index < limit, s.bytes[s.index].isIn(.scheme) { s.index += 1 }
        guard s.index < limit, s.bytes[s.index] == UInt8(ascii: ":") else {
            throw s.error("expected ':' after the URI scheme")
        }
        let length = s.index - start
        s.index += 1
        // The common schemes without building a string first.
        func matches(_ name: StaticString) -> Bool {
            guard name.utf8CodeUnitCount == length else { return false }
            for offset in 0..<length where s.bytes[start + offset].asciiLowercased != name.utf8Start[offset] { return false }
            return true
        }
        if matches("sip") { return "sip" }
        if matches("sips") { return "sips" }
        if matches("tel") { return "tel" }
        return s.string(start..<(start + length)).lowercased()
    }

    private static func parseSIP(
        _ s: inout SIPScanner, limit: Int, secure: Bool, context: Context
    ) throws(SIPParseError) -> SIPURI {
        // userinfo ends at the first '@' (user and password cannot hold a raw '@').
        var user: String?
        var password: String?
        var userLimit = limit
        if context == .bare {
            // In a bare addr-spec ';' and '?' end the URI, so they cannot be in the user part.
            var index = s.index
            while index < limit, s.bytes[index] != UInt8(ascii: ";"), s.bytes[index] != UInt8(ascii: "?") { index += 1 }
            userLimit = index
        }
        if let at = s.bytes[s.index..<userLimit].firstIndex(of: UInt8(ascii: "@")) {
            let colon = s.bytes[s.index..<at].firstIndex(of: UInt8(ascii: ":"))
            let userEnd = colon ?? at
            guard userEnd > s.index else { throw s.error("empty user part in URI") }
            try validate(s, s.index..<userEnd, allowed: SIPCharacterClass.unreserved.union(.userUnreserved), what: "user part")
            user = s.string(s.index..<userEnd)
            if let colon {
                try validate(s, (colon + 1)..<at, allowed: SIPCharacterClass.unreserved.union(.passwordExtra), what: "password")
                password = s.string((colon + 1)..<at)
            }
            s.index = at + 1
        }
        let host = try parseHost(&s, limit: limit)
        var port: Int?
        if s.index < limit, s.bytes[s.index] == UInt8(ascii: ":") {
            s.index += 1
            let start = s.index
            let value = try s.number(max: 65535, "port")
            guard s.index <= limit else { throw SIPParseError("bad port", at: start) }
            port = Int(value)
        }
        var parameters: [SIPParameter] = []
        var headers: [SIPParameter] = []
        if context != .bare {
            while s.index < limit, s.bytes[s.index] == UInt8(ascii: ";") {
                s.index += 1
                let name = try uriComponent(&s, limit: limit, allowed: SIPCharacterClass.unreserved.union(.paramUnreserved), what: "URI parameter name")
                var value: String?
                if s.index < limit, s.bytes[s.index] == UInt8(ascii: "=") {
                    s.index += 1
                    value = try uriComponent(&s, limit: limit, allowed: SIPCharacterClass.unreserved.union(.paramUnreserved), what: "URI parameter value")
                }
                parameters.append(SIPParameter(name: name, value: value))
            }
            if s.index < limit, s.bytes[s.index] == UInt8(ascii: "?") {
                if context == .requestURI {
                    throw s.error("headers are not allowed in a Request-URI (RFC 3261 §19.1.1)")
                }
                repeat {
                    s.index += 1
                    let name = try uriComponent(&s, limit: limit, allowed: SIPCharacterClass.unreserved.union(.headerUnreserved), what: "URI header name")
                    guard s.index < limit, s.bytes[s.index] == UInt8(ascii: "=") else { throw s.error("expected '=' in URI header") }
                    s.index += 1
                    let value = try uriComponent(&s, limit: limit, allowed: SIPCharacterClass.unreserved.union(.headerUnreserved), what: "URI header value", allowEmpty: true)
                    headers.append(SIPParameter(name: name, value: value))
                } while s.index < limit && s.bytes[s.index] == UInt8(ascii: "&")
            }
        }
        return SIPURI(secure: secure, user: user, password: password, host: host, port: port, parameters: parameters, headers: headers)
    }

    /// host = hostname / IPv4address / IPv6reference
    static func parseHost(_ s: inout SIPScanner, limit: Int) throws(SIPParseError) -> String {
        if s.index < limit, s.bytes[s.index] == UInt8(ascii: "[") {
            let start = s.index + 1
            var index = start
            while index < limit, s.bytes[index].isIn(.hex) || s.bytes[index] == UInt8(ascii: ":") || s.bytes[index] == UInt8(ascii: ".") {
                index += 1
            }
            guard index < limit, s.bytes[index] == UInt8(ascii: "]"), index > start else {
                throw SIPParseError("bad IPv6 reference", at: s.index)
            }
            let address = s.string(start..<index)
            guard IPAddressText.isIPv6(address) else { throw SIPParseError("bad IPv6 address '\(address)'", at: start) }
            s.index = index + 1
            return address
        }
        let start = s.index
        while s.index < limit, s.bytes[s.index].isIn(.hostname) { s.index += 1 }
        guard s.index > start else { throw s.error("expected a host") }
        return s.string(start..<s.index)
    }

    private static func parseTel(_ s: inout SIPScanner, limit: Int, context: Context) throws(SIPParseError) -> TelURI {
        let start = s.index
        while s.index < limit, s.bytes[s.index] != UInt8(ascii: ";"), s.bytes[s.index].isIn(.uric) || s.bytes[s.index] == UInt8(ascii: "%") {
            s.index += 1
        }
        guard s.index > start else { throw s.error("empty tel: number") }
        let number = s.string(start..<s.index)
        var parameters: [SIPParameter] = []
        if context != .bare {
            while s.index < limit, s.bytes[s.index] == UInt8(ascii: ";") {
                s.index += 1
                let name = try uriComponent(&s, limit: limit, allowed: SIPCharacterClass.unreserved.union(.paramUnreserved), what: "tel parameter name")
                var value: String?
                if s.index < limit, s.bytes[s.index] == UInt8(ascii: "=") {
                    s.index += 1
                    value = try uriComponent(&s, limit: limit, allowed: SIPCharacterClass.unreserved.union(.paramUnreserved), what: "tel parameter value")
                }
                parameters.append(SIPParameter(name: name, value: value))
            }
        }
        return TelURI(number: number, parameters: parameters)
    }

    /// A run of `allowed` characters and `%HH` escapes.
    private static func uriComponent(
        _ s: inout SIPScanner, limit: Int, allowed: SIPCharacterClass, what: String, allowEmpty: Bool = false
    ) throws(SIPParseError) -> String {
        let start = s.index
        while s.index < limit {
            let byte = s.bytes[s.index]
            if byte == UInt8(ascii: "%") {
                try checkEscape(s, at: s.index)
                s.index += 3
            } else if allowed.contains(byte) {
                s.index += 1
            } else {
                break
            }
        }
        guard s.index > start || allowEmpty else { throw s.error("expected \(what)") }
        return s.string(start..<s.index)
    }

    private static func validate(_ s: SIPScanner, _ range: Range<Int>, allowed: SIPCharacterClass, what: String) throws(SIPParseError) {
        var index = range.lowerBound
        while index < range.upperBound {
            let byte = s.bytes[index]
            if byte == UInt8(ascii: "%") {
                try checkEscape(s, at: index)
                index += 3
                continue
            }
            guard allowed.contains(byte) else {
                throw SIPParseError("character '\(printable(byte))' not allowed in the \(what)", at: index)
            }
            index += 1
        }
    }

    private static func checkEscape(_ s: SIPScanner, at index: Int) throws(SIPParseError) {
        guard index + 2 < s.end, s.bytes[index + 1].isIn(.hex), s.bytes[index + 2].isIn(.hex) else {
            throw SIPParseError("bad %-escape (RFC 3261 §25.1 escaped = \"%\" HEXDIG HEXDIG)", at: index)
        }
    }

    static func printable(_ byte: UInt8) -> String {
        (0x21...0x7E).contains(byte) ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
    }
}

/// Textual checks of IP addresses, without resolving anything.
public enum IPAddressText {
    public static func isIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCIIDigit) && Int(part)! <= 255
        }
    }

    /// RFC 4291 §2.2 text forms, with an optional trailing IPv4 part.
    public static func isIPv6(_ text: String) -> Bool {
        guard text.contains(":") else { return false }
        var groups = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var maxGroups = 8
        if let last = groups.last, last.contains(".") {
            guard isIPv4(last) else { return false }
            groups.removeLast()
            maxGroups = 6
        }
        // "::" may appear once; it shows as empty groups (two at an end, one inside).
        let doubleColons = zip(text.utf8, text.utf8.dropFirst()).filter { $0 == UInt8(ascii: ":") && $1 == UInt8(ascii: ":") }.count
        guard doubleColons <= 1, !text.contains(":::") else { return false }
        let filled = groups.filter { !$0.isEmpty }
        guard filled.allSatisfy({ $0.count <= 4 && $0.allSatisfy { $0.isHexDigit } }) else { return false }
        if doubleColons == 1 { return filled.count < maxGroups }
        return filled.count == maxGroups && groups.count == maxGroups
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
