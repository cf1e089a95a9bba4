public import NIOCore

/// `SIP/2.0` or another version (which a UAS answers 505, RFC 3261 §8.2.2... §21.5.6).
public struct SIPVersion: Hashable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    public static let v2 = SIPVersion(major: 2, minor: 0)
    public var description: String { "SIP/\(major).\(minor)" }
}

/// A request's first line (RFC 3261 §7.1).
public struct SIPRequestLine: Hashable, Sendable {
    public var method: SIPMethod
    public var uri: AnyURI
    public var version: SIPVersion

    public init(method: SIPMethod, uri: AnyURI, version: SIPVersion = .v2) {
        self.method = method
        self.uri = uri
        self.version = version
    }
}

/// A response's first line (RFC 3261 §7.2).
public struct SIPStatusLine: Hashable, Sendable {
    public var version: SIPVersion
    public var statusCode: Int
    public var reasonPhrase: String

    public init(version: SIPVersion = .v2, statusCode: Int, reasonPhrase: String) {
        self.version = version
        self.statusCode = statusCode
        self.reasonPhrase = reasonPhrase
    }
}

public enum SIPStartLine: Hashable, Sendable {
    case request(SIPRequestLine)
    case response(SIPStatusLine)
}

/// A SIP request or response: start line, header fields in order, body.
///
/// Typed views of the common headers (`topVia`, `from`, `cseq`, …) parse on access; a message
/// that came out of `SIPMessageParser` has already had every header it knows validated, so for
/// those the views are non-nil whenever the header is present.
public struct SIPMessage: Sendable {
    public var startLine: SIPStartLine
    public var headers: SIPHeaders
    public var body: ByteBuffer

    public init(startLine: SIPStartLine, headers: SIPHeaders = SIPHeaders(), body: ByteBuffer = ByteBuffer()) {
        self.startLine = startLine
        self.headers = headers
        self.body = body
    }

    /// A new request with the given first line.
    public static func request(_ method: SIPMethod, _ uri: AnyURI) -> SIPMessage {
        SIPMessage(startLine: .request(SIPRequestLine(method: method, uri: uri, version: .v2)))
    }

    /// A new response with the standard reason phrase for `code` unless one is given.
    public static func response(_ code: Int, reason: String? = nil) -> SIPMessage {
        SIPMessage(startLine: .response(SIPStatusLine(version: .v2, statusCode: code, reasonPhrase: reason ?? SIPStatus.reasonPhrase(code))))
    }

    public var isRequest: Bool {
        if case .request = startLine { return true }
        return false
    }

    public var requestLine: SIPRequestLine? {
        if case .request(let line) = startLine { return line }
        return nil
    }

    public var statusLine: SIPStatusLine? {
        if case .response(let line) = startLine { return line }
        return nil
    }

    /// The request method, or for a response the method of its CSeq.
    public var method: SIPMethod? { requestLine?.method ?? cseq?.method }
    public var requestURI: AnyURI? { requestLine?.uri }
    public var statusCode: Int? { statusLine?.statusCode }

    // MARK: Typed views

    /// Every via-parm of every Via field, top first.
    public var vias: [SIPVia] {
        headers.indices(of: .via).flatMap { index -> [SIPVia] in
            var scanner = headers.scanner(at: index)
            return (try? SIPVia.parseList(&scanner)) ?? []
        }
    }

    public var topVia: SIPVia? {
        guard let index = headers.fields.firstIndex(where: { $0.name == .via }) else { return nil }
        var scanner = headers.scanner(at: index)
        return try? SIPVia.parseOne(&scanner)
    }

    public var from: SIPNameAddress? { nameAddress(.from, "From") }
    public var to: SIPNameAddress? { nameAddress(.to, "To") }

    public var callID: String? {
        headers[.callID].map { $0 }
    }

    public var cseq: SIPCSeq? {
        guard let index = headers.fields.firstIndex(where: { $0.name == .cseq }) else { return nil }
        var scanner = headers.scanner(at: index)
        return try? SIPCSeq.parse(&scanner)
    }

    public var maxForwards: Int? { headers[.maxForwards].flatMap { Int($0) } }
    public var expires: UInt32? { headers[.expires].flatMap { UInt32($0) } }

    /// Contact addresses (empty for `*` or none); see `contactHeader` for the wildcard.
    public var contacts: [SIPNameAddress] {
        if case .addresses(let list) = contactHeader { return list }
        return []
    }

    public var contactHeader: SIPContact? {
        let indices = headers.indices(of: .contact)
        guard !indices.isEmpty else { return nil }
        var all: [SIPNameAddress] = []
        for index in indices {
            var scanner = headers.scanner(at: index)
            switch try? SIPContact.parse(&scanner) {
            case .wildcard: return .wildcard
            case .addresses(let list): all += list
            case nil: return nil
            }
        }
        return .addresses(all)
    }

    public var routes: [SIPNameAddress] { nameAddressList(.route, "Route") }
    public var recordRoutes: [SIPNameAddress] { nameAddressList(.recordRoute, "Record-Route") }

    /// Lowercased `type/subtype` of Content-Type, without parameters.
    public var contentType: String? {
        guard let value = headers[.contentType] else { return nil }
        let mediaType = value.split(separator: ";", maxSplits: 1).first ?? ""
        return mediaType.filter { $0 != " " && $0 != "\t" }.lowercased()
    }

    /// Values of a comma-separated token list header (Require, Supported, Allow, …), all fields.
    public func tokens(_ name: SIPHeaderName) -> [String] {
        headers.values(name).flatMap { value in
            value.split(separator: ",").map { $0.trimmingCharacters(in: " \t") }.filter { !$0.isEmpty }
        }
    }

    private func nameAddress(_ name: SIPHeaderName, _ label: String) -> SIPNameAddress? {
        guard let index = headers.fields.firstIndex(where: { $0.name == name }) else { return nil }
        var scanner = headers.scanner(at: index)
        return try? SIPNameAddress.parseSingle(&scanner, header: label)
    }

    private func nameAddressList(_ name: SIPHeaderName, _ label: String) -> [SIPNameAddress] {
        headers.indices(of: name).flatMap { index -> [SIPNameAddress] in
            var scanner = headers.scanner(at: index)
            return (try? SIPNameAddress.parseList(&scanner, header: label)) ?? []
        }
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
