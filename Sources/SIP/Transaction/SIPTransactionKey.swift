/// Keys that match messages to transactions (RFC 3261 §17.1.3 and §17.2.3).
public enum SIPTransactionKey: Hashable, Sendable, CustomStringConvertible {
    /// RFC 3261 branches: branch + sent-by + method (ACK counts as INVITE, CANCEL as itself).
    case branch(String, sentBy: String, method: SIPMethod)
    /// RFC 2543 peers (no magic cookie, or only the cookie — RFC 4475 §3.2.1): the request's
    /// identity is Request-URI, From tag, Call-ID, CSeq number and top Via; the To tag is not
    /// part of it, so that the ACK for a non-2xx matches its INVITE.
    case legacy(requestURI: String, fromTag: String, callID: String, cseq: UInt32, via: String, method: SIPMethod)

    public var description: String {
        switch self {
        case .branch(let branch, let sentBy, let method): "\(branch)|\(sentBy)|\(method)"
        case .legacy(let uri, let fromTag, let callID, let cseq, let via, let method): "2543|\(uri)|\(fromTag)|\(callID)|\(cseq)|\(via)|\(method)"
        }
    }

    /// The server transaction a request belongs to; an ACK maps to its INVITE's transaction.
    public static func server(for request: SIPMessage) -> SIPTransactionKey? {
        guard let line = request.requestLine, let via = request.topVia else { return nil }
        let method = line.method == .ack ? .invite : line.method
        if let branch = via.branch, branch.hasPrefix(SIPVia.magicCookie), branch.count > SIPVia.magicCookie.count {
            return .branch(branch, sentBy: via.sentBy.lowercased(), method: method)
        }
        guard let cseq = request.cseq, let callID = request.callID else { return nil }
        return .legacy(
            requestURI: line.uri.description, fromTag: request.from?.tag ?? "", callID: callID, cseq: cseq.sequence,
            via: via.description, method: method)
    }

    /// The INVITE server transaction a CANCEL refers to (§9.2): same key with method INVITE.
    public static func cancelled(by cancel: SIPMessage) -> SIPTransactionKey? {
        switch server(for: cancel) {
        case .branch(let branch, let sentBy, _)?: .branch(branch, sentBy: sentBy, method: .invite)
        case .legacy(let uri, let fromTag, let callID, let cseq, let via, _)?:
            .legacy(requestURI: uri, fromTag: fromTag, callID: callID, cseq: cseq, via: via, method: .invite)
        case nil: nil
        }
    }

    /// The client transaction a response belongs to (§17.1.3): top Via branch and CSeq method.
    public static func client(for response: SIPMessage) -> SIPTransactionKey? {
        guard let via = response.topVia, let branch = via.branch, let method = response.cseq?.method else { return nil }
        return .branch(branch, sentBy: "", method: method)
    }

    /// The key a client transaction registers under for the request it sends.
    public static func client(forRequest request: SIPMessage) -> SIPTransactionKey? {
        guard let via = request.topVia, let branch = via.branch, let method = request.method else { return nil }
        return .branch(branch, sentBy: "", method: method == .ack ? .ack : method)
    }
}
