/// Identifies a dialog from this side: Call-ID, local tag, remote tag (RFC 3261 §12).
public struct SIPDialogID: Hashable, Sendable, CustomStringConvertible {
    public var callID: String
    public var localTag: String
    public var remoteTag: String

    public init(callID: String, localTag: String, remoteTag: String) {
        self.callID = callID
        self.localTag = localTag
        self.remoteTag = remoteTag
    }

    /// The ID of the dialog a received request belongs to (our tag is in To).
    public static func forReceivedRequest(_ request: SIPMessage) -> SIPDialogID? {
        guard let callID = request.callID, let local = request.to?.tag, let remote = request.from?.tag else { return nil }
        return SIPDialogID(callID: callID, localTag: local, remoteTag: remote)
    }

    /// The ID of the dialog a received response belongs to (our tag is in From).
    public static func forReceivedResponse(_ response: SIPMessage) -> SIPDialogID? {
        guard let callID = response.callID, let local = response.from?.tag, let remote = response.to?.tag else { return nil }
        return SIPDialogID(callID: callID, localTag: local, remoteTag: remote)
    }

    public var description: String { "\(callID);local=\(localTag);remote=\(remoteTag)" }
}

/// The state of one dialog (RFC 3261 §12): identifiers, sequence numbers, remote target and
/// route set, and the re-INVITE bookkeeping for glare (§14).
public struct SIPDialog: Sendable {
    public enum State: Sendable, Equatable { case early, confirmed, terminated }

    public var id: SIPDialogID
    public var state: State
    public var localURI: SIPNameAddress
    public var remoteURI: SIPNameAddress
    /// Last CSeq sent; the next request uses `localSequence + 1`.
    public var localSequence: UInt32
    /// Last CSeq received, nil until the peer sends a request in the dialog.
    public var remoteSequence: UInt32?
    /// Where in-dialog requests go: the peer's Contact URI.
    public var remoteTarget: AnyURI
    /// Route set, in the order requests carry it.
    public var routeSet: [SIPNameAddress]
    /// sips Request-URI and TLS over every hop (§12.1.1).
    public var secure: Bool
    /// This side created the Call-ID (it sent the initial INVITE): sets the glare retry window.
    public let isCallIDOwner: Bool
    /// Our Contact, repeated in every in-dialog request and target-refresh response.
    public var localContact: SIPNameAddress

    /// A re-INVITE of ours is waiting for its final response.
    public private(set) var outgoingInvitePending = false
    /// A re-INVITE of the peer's has not been answered yet.
    public private(set) var incomingInvitePending = false

    /// UAC side: from the INVITE we sent and a 1xx (with To tag) or 2xx response (§12.1.2).
    public init?(uacRequest request: SIPMessage, response: SIPMessage, localContact: SIPNameAddress) {
        guard let callID = request.callID, let from = request.from, let localTag = from.tag,
            let to = response.to, let remoteTag = to.tag, let cseq = request.cseq, let code = response.statusCode,
            (101...299).contains(code)
        else { return nil }
        id = SIPDialogID(callID: callID, localTag: localTag, remoteTag: remoteTag)
        state = code >= 200 ? .confirmed : .early
        localURI = from
        remoteURI = to
        localSequence = cseq.sequence
        remoteSequence = nil
        remoteTarget = response.contacts.first?.uri ?? request.requestURI ?? .other(scheme: "sip", rest: "invalid")
        // The route set is the Record-Route of the response, reversed (§12.1.2).
        routeSet = response.recordRoutes.reversed()
        secure = request.requestURI?.scheme == "sips"
        isCallIDOwner = true
        self.localContact = localContact
    }

    /// UAS side: from the INVITE we received and the tag we answer with (§12.1.1).
    public init?(uasRequest request: SIPMessage, localTag: String, localContact: SIPNameAddress, early: Bool = false) {
        guard let callID = request.callID, var to = request.to, let from = request.from, let remoteTag = from.tag,
            let cseq = request.cseq
        else { return nil }
        to.tag = localTag
        id = SIPDialogID(callID: callID, localTag: localTag, remoteTag: remoteTag)
        state = early ? .early : .confirmed
        localURI = to
        remoteURI = from
        localSequence = SIPDialog.initialSequence()
        remoteSequence = cseq.sequence
        remoteTarget = request.contacts.first?.uri ?? .other(scheme: "sip", rest: "invalid")
        // The route set is the Record-Route of the request, in order (§12.1.1).
        routeSet = request.recordRoutes
        secure = request.requestURI?.scheme == "sips"
        isCallIDOwner = false
        self.localContact = localContact
    }

    /// A random first CSeq below 2^31, as §8.1.1.5 recommends.
    static func initialSequence() -> UInt32 {
        UInt32.random(in: 1...0x7FFF_0000) & 0x7FFF_FFFF
    }

    /// Moves an early dialog to confirmed with the 2xx (and its possibly updated target).
    public mutating func confirm(with response: SIPMessage) {
        state = .confirmed
        if let target = response.contacts.first?.uri { remoteTarget = target }
        if !response.recordRoutes.isEmpty, routeSet.isEmpty { routeSet = response.recordRoutes.reversed() }
    }

    // MARK: Requests we send (§12.2.1)

    /// A new in-dialog request (not ACK/CANCEL) with the next CSeq, the remote target as
    /// Request-URI and the route set as Route (loose routing; strict routing per §12.2.1.1).
    public mutating func makeRequest(_ method: SIPMethod, via: SIPVia) -> SIPMessage {
        localSequence &+= 1
        return buildRequest(method, sequence: localSequence, via: via)
    }

    /// The ACK for a 2xx (§13.2.2.4): the INVITE's CSeq number, a new branch, the route set.
    public func makeACK(inviteSequence: UInt32, via: SIPVia) -> SIPMessage {
        buildRequest(.ack, sequence: inviteSequence, via: via)
    }

    private func buildRequest(_ method: SIPMethod, sequence: UInt32, via: SIPVia) -> SIPMessage {
        var requestURI = remoteTarget
        var routes = routeSet
        // §12.2.1.1: if the first route lacks `lr`, the peer is a strict router: it becomes the
        // Request-URI and the remote target goes last in the Route list.
        if let first = routes.first, let uri = first.sipURI, !uri.parameters.has("lr") {
            var strict = uri
            // Strip what a Request-URI may not carry (§19.1.1 table): headers and `method`.
            strict.headers = []
            strict.parameters.remove("method")
            requestURI = .sip(strict)
            routes.removeFirst()
            routes.append(SIPNameAddress(uri: remoteTarget))
        }
        var request = SIPMessage.request(method, requestURI)
        request.headers.add(.via, via.description)
        request.headers.add(.maxForwards, "70")
        for route in routes { request.headers.add(.route, route.description) }
        request.headers.add(.from, localURI.description)
        request.headers.add(.to, remoteURI.description)
        request.headers.add(.callID, id.callID)
        request.headers.add(.cseq, "\(sequence) \(method)")
        if method == .invite || method == .update || method == .ack {
            request.headers.add(.contact, localContact.description)
        }
        return request
    }

    // MARK: Requests we receive (§12.2.2)

    public enum RequestCheck: Sendable, Equatable {
        case accept
        /// Answer with this status (500 for an out-of-order CSeq, 491 for re-INVITE glare).
        case reject(status: Int, retryAfter: UInt32?)
    }

    /// Checks an in-dialog request's CSeq and, for a re-INVITE, glare (§14.2). ACK and CANCEL
    /// are not checked (their CSeq repeats the INVITE's).
    public mutating func receive(_ request: SIPMessage) -> RequestCheck {
        guard let method = request.requestLine?.method, let cseq = request.cseq else { return .reject(status: 400, retryAfter: nil) }
        if method == .ack || method == .cancel { return .accept }
        if let last = remoteSequence, cseq.sequence <= last {
            return .reject(status: 500, retryAfter: nil)
        }
        if method == .invite {
            // §14.2: our own re-INVITE is pending → 491; theirs is still unanswered → 500 + Retry-After.
            if outgoingInvitePending { return .reject(status: 491, retryAfter: nil) }
            if incomingInvitePending {
                return .reject(status: 500, retryAfter: UInt32.random(in: 0...10))
            }
            incomingInvitePending = true
        }
        remoteSequence = cseq.sequence
        if method == .bye { state = .terminated }
        if method == .invite || method == .update, let target = request.contacts.first?.uri {
            remoteTarget = target  // target refresh (§12.2.2)
        }
        return .accept
    }

    /// Our answer to the peer's re-INVITE went out (final response).
    public mutating func answeredIncomingInvite() { incomingInvitePending = false }

    /// Marks a re-INVITE of ours as sent; false if one is already in flight (§14.1: not allowed).
    public mutating func beginOutgoingInvite() -> Bool {
        guard !outgoingInvitePending, !incomingInvitePending else { return false }
        outgoingInvitePending = true
        return true
    }

    /// The final response to our re-INVITE arrived. On 491 the caller waits `glareRetryDelay`.
    public mutating func finishOutgoingInvite(response: SIPMessage) {
        outgoingInvitePending = false
        if let code = response.statusCode, (200...299).contains(code), let target = response.contacts.first?.uri {
            remoteTarget = target
        }
    }

    /// RFC 3261 §14.1: after a 491, the owner of the Call-ID retries after 2.1–4 s, the other
    /// side after 0–2 s, in units of 10 ms.
    public func glareRetryDelay<G: RandomNumberGenerator>(using generator: inout G) -> Duration {
        let tens = isCallIDOwner ? Int.random(in: 210...400, using: &generator) : Int.random(in: 0...200, using: &generator)
        return .milliseconds(tens * 10)
    }

    /// Does a received request or response belong to this dialog?
    public func matches(_ message: SIPMessage) -> Bool {
        let other = message.isRequest ? SIPDialogID.forReceivedRequest(message) : SIPDialogID.forReceivedResponse(message)
        return other == id
    }
}
