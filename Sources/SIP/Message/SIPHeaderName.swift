/// A header field name. Known names compare and serialize by their canonical long form; compact
/// forms (RFC 3261 §7.3.3, §20) map onto them; other names keep their spelling and compare
/// case-insensitively (RFC 3261 §7.3.1).
public struct SIPHeaderName: Hashable, Sendable, CustomStringConvertible {
    /// The names this stack knows, as a small integer so that comparing them is one instruction.
    @usableFromInline
    enum Known: UInt8, CaseIterable, Sendable {
        case accept, acceptEncoding, acceptLanguage, alertInfo, allow, allowEvents, authenticationInfo, authorization, callID, callInfo, contact, contentDisposition, contentEncoding, contentLanguage, contentLength, contentType, cseq, date, errorInfo, event, expires, from, inReplyTo, maxForwards, minExpires, mimeVersion, organization, priority, proxyAuthenticate, proxyAuthorization, proxyRequire, reason, recordRoute, referTo, referredBy, replyTo, require, retryAfter, route, server, sessionExpires, subject, subscriptionState, supported, timestamp, to, unsupported, userAgent, via, warning, wwwAuthenticate, path, serviceRoute, flowTimer, sipETag, sipIfMatch
    }

    @usableFromInline let known: Known?
    /// For an unknown name: its spelling as received, and lowercased for comparison.
    let spelling: String
    let folded: String

    @usableFromInline
    init(known: Known?, spelling: String = "", folded: String = "") {
        self.known = known
        self.spelling = spelling
        self.folded = folded
    }

    /// A name from text: a known name (long or compact form) or an extension header.
    public init(_ name: String) {
        var copy = name
        self = copy.withUTF8 { SIPHeaderName(lookup: UnsafeRawBufferPointer($0)) }
    }

    public static func == (lhs: SIPHeaderName, rhs: SIPHeaderName) -> Bool {
        lhs.known == rhs.known && (lhs.known != nil || lhs.folded == rhs.folded)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(known)
        if known == nil { hasher.combine(folded) }
    }

    /// The canonical spelling (RFC 3261 §20 and the RFC defining the header).
    public var description: String {
        guard let known else { return spelling }
        return Self.canonical[Int(known.rawValue)]
    }
    public static let accept = SIPHeaderName(known: .accept)
    public static let acceptEncoding = SIPHeaderName(known: .acceptEncoding)
    public static let acceptLanguage = SIPHeaderName(known: .acceptLanguage)
    public static let alertInfo = SIPHeaderName(known: .alertInfo)
    public static let allow = SIPHeaderName(known: .allow)
    public static let allowEvents = SIPHeaderName(known: .allowEvents)
    public static let authenticationInfo = SIPHeaderName(known: .authenticationInfo)
    public static let authorization = SIPHeaderName(known: .authorization)
    public static let callID = SIPHeaderName(known: .callID)
    public static let callInfo = SIPHeaderName(known: .callInfo)
    public static let contact = SIPHeaderName(known: .contact)
    public static let contentDisposition = SIPHeaderName(known: .contentDisposition)
    public static let contentEncoding = SIPHeaderName(known: .contentEncoding)
    public static let contentLanguage = SIPHeaderName(known: .contentLanguage)
    public static let contentLength = SIPHeaderName(known: .contentLength)
    public static let contentType = SIPHeaderName(known: .contentType)
    public static let cseq = SIPHeaderName(known: .cseq)
    public static let date = SIPHeaderName(known: .date)
    public static let errorInfo = SIPHeaderName(known: .errorInfo)
    public static let event = SIPHeaderName(known: .event)
    public static let expires = SIPHeaderName(known: .expires)
    public static let from = SIPHeaderName(known: .from)
    public static let inReplyTo = SIPHeaderName(known: .inReplyTo)
    public static let maxForwards = SIPHeaderName(known: .maxForwards)
    public static let minExpires = SIPHeaderName(known: .minExpires)
    public static let mimeVersion = SIPHeaderName(known: .mimeVersion)
    public static let organization = SIPHeaderName(known: .organization)
    public static let priority = SIPHeaderName(known: .priority)
    public static let proxyAuthenticate = SIPHeaderName(known: .proxyAuthenticate)
    public static let proxyAuthorization = SIPHeaderName(known: .proxyAuthorization)
    public static let proxyRequire = SIPHeaderName(known: .proxyRequire)
    public static let reason = SIPHeaderName(known: .reason)
    public static let recordRoute = SIPHeaderName(known: .recordRoute)
    public static let referTo = SIPHeaderName(known: .referTo)
    public static let referredBy = SIPHeaderName(known: .referredBy)
    public static let replyTo = SIPHeaderName(known: .replyTo)
    public static let require = SIPHeaderName(known: .require)
    public static let retryAfter = SIPHeaderName(known: .retryAfter)
    public static let route = SIPHeaderName(known: .route)
    public static let server = SIPHeaderName(known: .server)
    public static let sessionExpires = SIPHeaderName(known: .sessionExpires)
    public static let subject = SIPHeaderName(known: .subject)
    public static let subscriptionState = SIPHeaderName(known: .subscriptionState)
    public static let supported = SIPHeaderName(known: .supported)
    public static let timestamp = SIPHeaderName(known: .timestamp)
    public static let to = SIPHeaderName(known: .to)
    public static let unsupported = SIPHeaderName(known: .unsupported)
    public static let userAgent = SIPHeaderName(known: .userAgent)
    public static let via = SIPHeaderName(known: .via)
    public static let warning = SIPHeaderName(known: .warning)
    public static let wwwAuthenticate = SIPHeaderName(known: .wwwAuthenticate)
    public static let path = SIPHeaderName(known: .path)
    public static let serviceRoute = SIPHeaderName(known: .serviceRoute)
    public static let flowTimer = SIPHeaderName(known: .flowTimer)
    public static let sipETag = SIPHeaderName(known: .sipETag)
    public static let sipIfMatch = SIPHeaderName(known: .sipIfMatch)

    static let canonical: [String] = ["Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To", "Max-Forwards", "Min-Expires", "MIME-Version", "Organization", "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "Reason", "Record-Route", "Refer-To", "Referred-By", "Reply-To", "Require", "Retry-After", "Route", "Server", "Session-Expires", "Subject", "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate", "Path", "Service-Route", "Flow-Timer", "SIP-ETag", "SIP-If-Match"
    ]

    /// Known names by length, as lowercase bytes: a lookup compares a few candidates of the
    /// right length and allocates nothing.
    static let byLength: [[(name: [UInt8], known: Known)]] = {
        var table = [[(name: [UInt8], known: Known)]](repeating: [], count: 32)
        for known in Known.allCases {
            let name = Array(canonical[Int(known.rawValue)].lowercased().utf8)
            table[name.count].append((name, known))
        }
        return table
    }()

    /// Looks a name up from its wire bytes, compact forms included.
    init(lookup bytes: UnsafeRawBufferPointer) {
        let count = bytes.count
        if count == 1, let compact = Self.compactForm(bytes[0].asciiLowercased) {
            self.init(known: compact)
            return
        }
        if count < 32 {
            for candidate in Self.byLength[count] {
                var index = 0
                while index < count, bytes[index].asciiLowercased == candidate.name[index] { index += 1 }
                if index == count {
                    self.init(known: candidate.known)
                    return
                }
            }
        }
        let folded = String(unsafeUninitializedCapacity: count) { out in
            for i in 0..<count { out[i] = bytes[i].asciiLowercased }
            return count
        }
        self.init(known: nil, spelling: String(decoding: bytes, as: UTF8.self), folded: folded)
    }

    /// RFC 3261 §7.3.3 and the RFCs that define the other compact forms.
    private static func compactForm(_ letter: UInt8) -> Known? {
        switch letter {
        case UInt8(ascii: "i"): .callID
        case UInt8(ascii: "m"): .contact
        case UInt8(ascii: "e"): .contentEncoding
        case UInt8(ascii: "l"): .contentLength
        case UInt8(ascii: "c"): .contentType
        case UInt8(ascii: "f"): .from
        case UInt8(ascii: "s"): .subject
        case UInt8(ascii: "k"): .supported
        case UInt8(ascii: "t"): .to
        case UInt8(ascii: "v"): .via
        case UInt8(ascii: "o"): .event  // RFC 6665
        case UInt8(ascii: "r"): .referTo  // RFC 3515
        case UInt8(ascii: "b"): .referredBy  // RFC 3892
        case UInt8(ascii: "u"): .allowEvents  // RFC 6665
        case UInt8(ascii: "x"): .sessionExpires  // RFC 4028
        default: nil
        }
    }

    /// Headers whose values are comma-separated lists that may also be split over several
    /// header fields (RFC 3261 §7.3.1). Authorization-style headers and Date are not.
    public var isList: Bool {
        guard let known else { return false }
        switch known {
        case .accept, .acceptEncoding, .acceptLanguage, .alertInfo, .allow, .allowEvents, .callInfo, .contact, .contentEncoding, .contentLanguage, .errorInfo, .inReplyTo, .proxyRequire, .recordRoute, .require, .route, .supported, .unsupported, .via, .warning, .path, .serviceRoute, .reason:
            return true
        default:
            return false
        }
    }

    /// Headers that may appear at most once (RFC 3261 §20); a second one makes a request a 400.
    public var isSingleton: Bool {
        guard let known else { return false }
        switch known {
        case .callID, .cseq, .from, .to, .maxForwards, .contentLength, .contentType, .expires, .minExpires, .date, .contentDisposition, .mimeVersion, .retryAfter, .subject, .timestamp, .priority, .organization, .replyTo, .server, .userAgent, .event, .referTo, .sessionExpires, .subscriptionState:
            return true
        default:
            return false
        }
    }
}
