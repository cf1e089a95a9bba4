/// The `Digest` challenge and credentials of RFC 3261 §22.4 with the algorithms of RFC 8760
/// (MD5 and SHA-256, and their -sess forms), following RFC 7616's computation.
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case md5 = "MD5"
    case md5Session = "MD5-sess"
    case sha256 = "SHA-256"
    case sha256Session = "SHA-256-sess"

    /// Case-insensitive lookup; a missing algorithm parameter means MD5 (RFC 8760 §2.5).
    public init?(parameter: String?) {
        guard let parameter else {
            self = .md5
            return
        }
        guard let match = Self.allCases.first(where: { $0.rawValue.lowercased() == parameter.lowercased() }) else { return nil }
        self = match
    }

    public var isSession: Bool { self == .md5Session || self == .sha256Session }

    /// The hash without the -sess variant: what a stored HA1 is computed with.
    public var base: DigestAlgorithm {
        switch self {
        case .md5, .md5Session: .md5
        case .sha256, .sha256Session: .sha256
        }
    }
}

/// `auth-param` lists: `token "=" ( token / quoted-string )` separated by commas (RFC 3261 §25.1).
public struct DigestParameters: Sendable, Hashable {
    public var scheme: String
    /// Names lowercased; values unquoted (escapes resolved).
    public var values: [String: String]

    public subscript(name: String) -> String? { values[name] }

    public init(scheme: String, values: [String: String]) {
        self.scheme = scheme
        self.values = values
    }

    public static func parse(_ text: String) throws(SIPParseError) -> DigestParameters {
        var s = SIPScanner(text)
        s.skipWhitespace()
        let scheme = try s.token("authentication scheme")
        s.skipWhitespace()
        var values: [String: String] = [:]
        if s.isAtEnd { return DigestParameters(scheme: scheme, values: values) }
        repeat {
            s.skipWhitespace()
            let name = try s.token("auth-param name").lowercased()
            try s.expect(UInt8(ascii: "="), "'=' in auth-param")
            let value: String
            if s.peek == UInt8(ascii: "\"") {
                value = unquote(try s.quotedString())
            } else {
                value = try s.token("auth-param value")
            }
            guard values[name] == nil else { throw s.error("auth-param \(name) repeated") }
            values[name] = value
            s.skipWhitespace()
        } while s.consume(UInt8(ascii: ","))
        try s.expectEnd("auth-params")
        return DigestParameters(scheme: scheme, values: values)
    }

    /// Renders `Digest name="value", …` with the given order; `unquoted` names are written bare.
    public static func render(scheme: String, _ pairs: [(String, String)], unquoted: Set<String>) -> String {
        scheme + " " + pairs.map { name, value in
            unquoted.contains(name) ? "\(name)=\(value)" : "\(name)=\"\(quote(value))\""
        }.joined(separator: ", ")
    }

    static func unquote(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var out = ""
        var escaped = false
        for char in text {
            if escaped {
                out.append(char)
                escaped = false
            } else if char == "\\" {
                escaped = true
            } else {
                out.append(char)
            }
        }
        return out
    }

    static func quote(_ text: String) -> String {
        var out = ""
        for char in text {
            if char == "\"" || char == "\\" { out.append("\\") }
            out.append(char)
        }
        return out
    }
}
