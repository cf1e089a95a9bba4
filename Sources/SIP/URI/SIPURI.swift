/// A `sip:` or `sips:` URI (RFC 3261 §19.1), with IPv6 references (RFC 5118).
///
/// User, password, parameter and header texts are kept as they were written (still %-escaped),
/// so that serializing gives back the same URI; `unescaped(_:)` decodes a component and
/// `isEquivalent(to:)` compares by the rules of RFC 3261 §19.1.4.
public struct SIPURI: Hashable, Sendable, CustomStringConvertible {
    public var isSecure: Bool
    public var user: String?
    public var password: String?
    /// Host name, IPv4 address, or IPv6 address without brackets.
    public var host: String
    public var port: Int?
    public var parameters: [SIPParameter]
    /// `?name=value&…` headers; never allowed in a Request-URI (RFC 3261 §19.1.1).
    public var headers: [SIPParameter]

    public init(
        secure: Bool = false, user: String? = nil, password: String? = nil, host: String,
        port: Int? = nil, parameters: [SIPParameter] = [], headers: [SIPParameter] = []
    ) {
        self.isSecure = secure
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.parameters = parameters
        self.headers = headers
    }

    public var scheme: String { isSecure ? "sips" : "sip" }

    /// True when `host` is an IPv6 address (it holds a colon).
    public var isIPv6: Bool { host.utf8.contains(UInt8(ascii: ":")) }

    /// `host` or `[v6]`, with `:port` when set.
    public var hostPort: String {
        let hostText = isIPv6 ? "[\(host)]" : host
        if let port { return "\(hostText):\(port)" }
        return hostText
    }

    /// `scheme:user@host` — who, without password, port, parameters or headers: what status
    /// topics and logs may show of a URI someone else wrote (issue 17).
    public var identityText: String {
        // Unescaped for reading, with control characters (a `%0A` in a hostile From) shown as '?'.
        let shownUser = user.map { String(String.UnicodeScalarView(SIPURI.unescaped($0).unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 })) }
        return scheme + ":" + (shownUser.map { $0 + "@" } ?? "") + (isIPv6 ? "[\(host)]" : host)
    }

    /// The `transport` parameter, lowercased, if any.
    public var transport: String? { parameters.value("transport")??.lowercased() }

    public var description: String {
        var out = scheme + ":"
        if let user {
            out += user
            if let password { out += ":" + password }
            out += "@"
        }
        out += hostPort
        out += parameters.serialized
        if !headers.isEmpty {
            out += "?" + headers.map { $0.name + "=" + ($0.value ?? "") }.joined(separator: "&")
        }
        return out
    }

    /// RFC 3261 §19.1.4: scheme, user and password compare case-sensitively after unescaping;
    /// host and parameter names case-insensitively; `user`, `ttl`, `method`, `maddr` and
    /// `transport` must match when either side has them; other parameters only when both do;
    /// headers must match.
    public func isEquivalent(to other: SIPURI) -> Bool {
        guard isSecure == other.isSecure,
            user.map(Self.unescaped) == other.user.map(Self.unescaped),
            password.map(Self.unescaped) == other.password.map(Self.unescaped),
            host.lowercased() == other.host.lowercased(),
            port == other.port
        else { return false }
        for name in ["user", "ttl", "method", "maddr", "transport"] {
            let mine = parameters.value(name).map { $0?.lowercased() }
            let theirs = other.parameters.value(name).map { $0?.lowercased() }
            if mine != theirs { return false }
        }
        for parameter in parameters {
            let name = parameter.name.lowercased()
            if let theirs = other.parameters.value(name), theirs?.lowercased() != parameter.value?.lowercased() {
                return false
            }
        }
        let mine = Set(headers.map { $0.name.lowercased() + "=" + Self.unescaped($0.value ?? "") })
        let theirs = Set(other.headers.map { $0.name.lowercased() + "=" + Self.unescaped($0.value ?? "") })
        return mine == theirs
    }

    /// Decodes `%HH` escapes (RFC 3261 §19.1.2). Invalid escapes are kept literally; a decoded
    /// NUL stays a NUL in the Swift string (RFC 4475 §3.1.1.4 `escnull`).
    public static func unescaped(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
            {
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// A `tel:` URI (RFC 3966): the number and its parameters.
public struct TelURI: Hashable, Sendable, CustomStringConvertible {
    public var number: String
    public var parameters: [SIPParameter]

    public init(number: String, parameters: [SIPParameter] = []) {
        self.number = number
        self.parameters = parameters
    }

    public var isGlobal: Bool { number.hasPrefix("+") }
    public var description: String { "tel:" + number + parameters.serialized }
}

/// Any URI a SIP message can carry: SIP/SIPS, tel, or an absolute URI of another scheme
/// (RFC 3261 §25.1 `absoluteURI`), which parses but which a UAS answers 416 (RFC 4475 §3.3.2).
public enum AnyURI: Hashable, Sendable, CustomStringConvertible {
    case sip(SIPURI)
    case tel(TelURI)
    /// Scheme (lowercased) and everything after the colon, as written.
    case other(scheme: String, rest: String)

    public var scheme: String {
        switch self {
        case .sip(let uri): uri.scheme
        case .tel: "tel"
        case .other(let scheme, _): scheme
        }
    }

    public var sipURI: SIPURI? {
        if case .sip(let uri) = self { return uri }
        return nil
    }

    public var description: String {
        switch self {
        case .sip(let uri): uri.description
        case .tel(let uri): uri.description
        case .other(let scheme, let rest): scheme + ":" + rest
        }
    }
}
