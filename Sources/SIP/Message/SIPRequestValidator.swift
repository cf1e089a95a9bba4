/// What a UAS checks before it processes a well-formed request (RFC 3261 §8.2, in that order),
/// and the error response it answers with when a check fails.
public struct SIPRequestValidator: Sendable {
    /// Methods the element allows; a method it recognizes but does not allow gets 405, an unknown
    /// one 501, both with Allow (RFC 3261 §8.2.1, `SIPMethod.standard`).
    public var allowedMethods: [SIPMethod]
    /// URI schemes the element serves (RFC 3261 §8.2.2.1, 416 otherwise).
    public var uriSchemes: Set<String>
    /// Option tags the element supports (RFC 3261 §8.2.2.3, 420 otherwise).
    public var supportedExtensions: Set<String>
    /// Body types the element understands (RFC 3261 §8.2.3, 415 otherwise).
    public var acceptedContentTypes: [String]
    /// Body types the element answers INVITE with; an Accept without any of them is 406
    /// (RFC 3261 §21.4.7, RFC 4475 §3.3.15).
    public var answerContentTypes: [String]

    public init(
        allowedMethods: [SIPMethod] = [.invite, .ack, .bye, .cancel, .options, .info, .update, .register],
        uriSchemes: Set<String> = ["sip", "sips"],
        supportedExtensions: Set<String> = ["outbound", "path", "gruu"],
        acceptedContentTypes: [String] = ["application/sdp", "application/dtmf-relay", "multipart/mixed"],
        answerContentTypes: [String] = ["application/sdp"]
    ) {
        self.allowedMethods = allowedMethods
        self.uriSchemes = uriSchemes
        self.supportedExtensions = supportedExtensions
        self.acceptedContentTypes = acceptedContentTypes
        self.answerContentTypes = answerContentTypes
    }

    /// A failed check: the status code, a reason for the log, and headers the response carries.
    public struct Rejection: Sendable, Hashable {
        public var statusCode: Int
        public var reason: String
        public var headers: [SIPParameter]
    }

    /// nil when the request may be processed; otherwise the response to send.
    public func check(_ request: SIPMessage) -> Rejection? {
        guard let line = request.requestLine else { return nil }
        // RFC 3261 §8.2 / §21.5.20: a version we do not speak.
        if line.version != .v2 {
            return Rejection(statusCode: 505, reason: "SIP version \(line.version) not supported", headers: [])
        }
        // RFC 3261 §8.1.1: To, From, CSeq, Call-ID and Via are mandatory (Max-Forwards is not
        // required of what arrives: RFC 2543 peers omit it, RFC 4475 §3.4.1).
        let mandatory: [SIPHeaderName] = [.to, .from, .cseq, .callID, .via]
        let missing = mandatory.filter { !request.headers.contains($0) }
        if !missing.isEmpty {
            return Rejection(statusCode: 400, reason: "missing header \(missing.map(\.description).joined(separator: ", "))", headers: [])
        }
        // RFC 4475 §3.3.8: a second value of a single-value header.
        for name in [SIPHeaderName.to, .from, .cseq, .callID, .maxForwards, .contentType, .expires]
        where request.headers.count(of: name) > 1 {
            return Rejection(statusCode: 400, reason: "more than one \(name) header", headers: [])
        }
        if line.method == .ack || line.method == .cancel {
            // Nothing is answered to ACK; CANCEL skips the extension and body checks (§9.2).
            return nil
        }
        // §8.2.1 method inspection.
        if !allowedMethods.contains(line.method) {
            let recognized = SIPMethod.standard.contains(line.method)
            return Rejection(
                statusCode: recognized ? 405 : 501, reason: "method \(line.method) \(recognized ? "not allowed here" : "not implemented")",
                headers: [SIPParameter(name: "Allow", value: allowedMethods.map(\.rawValue).joined(separator: ", "))])
        }
        // §8.2.2.1 Request-URI scheme.
        if !uriSchemes.contains(line.uri.scheme) {
            return Rejection(statusCode: 416, reason: "Request-URI scheme '\(line.uri.scheme)' not served", headers: [])
        }
        // §8.2.2.3 Require.
        let unsupported = request.tokens(.require).filter { !supportedExtensions.contains($0.lowercased()) }
        if !unsupported.isEmpty {
            return Rejection(
                statusCode: 420, reason: "unsupported extension \(unsupported.joined(separator: ", "))",
                headers: [SIPParameter(name: "Unsupported", value: unsupported.joined(separator: ", "))])
        }
        // §8.2.3 content processing.
        if request.body.readableBytes > 0 || request.headers.contains(.contentType) {
            if let type = request.contentType, !acceptedContentTypes.contains(type) {
                return Rejection(
                    statusCode: 415, reason: "unsupported body type \(type)",
                    headers: [SIPParameter(name: "Accept", value: acceptedContentTypes.joined(separator: ", "))])
            }
            if let encoding = request.headers[.contentEncoding], !encoding.isEmpty, encoding.lowercased() != "identity" {
                return Rejection(
                    statusCode: 415, reason: "unsupported content encoding \(encoding)",
                    headers: [SIPParameter(name: "Accept-Encoding", value: "identity")])
            }
        }
        // An INVITE whose Accept rules out every body we could answer with (§21.4.7).
        if line.method == .invite, request.headers.contains(.accept) {
            let accepted = request.tokens(.accept).map { $0.split(separator: ";").first.map(String.init)?.lowercased() ?? "" }
            let acceptable = accepted.contains { type in
                type == "*/*" || answerContentTypes.contains(type)
                    || (type.hasSuffix("/*") && answerContentTypes.contains { $0.hasPrefix(type.dropLast(1)) })
            }
            if !acceptable {
                return Rejection(
                    statusCode: 406, reason: "Accept allows no body type we answer with",
                    headers: [SIPParameter(name: "Accept", value: answerContentTypes.joined(separator: ", "))])
            }
        }
        return nil
    }
}
