public import SIP
public import SIPTransport

/// What the agent reports, in order. Each event carries what it is about — the INVITE's
/// identities and offer, the answer a response brought, the peer's Allow — so that the owner
/// (the gateway's router, a demo phone, a test) never reads a message back out of the agent.
public enum SIPUserAgentEvent: Sendable, Equatable, CustomStringConvertible {
    case incomingCall(SIPCallHandle, SIPIncomingCall)
    /// 100 Trying to our INVITE (before any other provisional response).
    case trying(SIPCallHandle)
    case ringing(SIPCallHandle)
    /// A provisional response brought the callee's session description (early media, 183).
    case earlyMedia(SIPCallHandle, answer: SIPMessageBody)
    /// The call is answered: our INVITE's 2xx (with the callee's answer, when it carried one,
    /// and what the callee allows), or our own 2xx to an incoming call (no answer: the offer
    /// came with `incomingCall`).
    case answered(SIPCallHandle, answer: SIPMessageBody?, peerAllows: SIPAllowedMethods)
    case confirmed(SIPCallHandle)
    case ended(SIPCallHandle, reason: String)
    case failed(SIPCallHandle, status: Int)
    case registered(addressOfRecord: String, contact: String)
    case registrationFailed(status: Int)
    case dtmfInfo(SIPCallHandle, body: String)
    /// Our re-INVITE was accepted.
    case reinvited(SIPCallHandle)
    /// Our re-INVITE was refused with a final `status` (not glare), or its 2xx brought no answer
    /// to our offer: the session stays as it was (RFC 3261 §14.1), the offer is void.
    case reinviteRefused(SIPCallHandle, status: Int)
    /// Our re-INVITE met the peer's (491, or 500 with Retry-After while the peer's offer was
    /// unanswered); it goes again after `retryAfter`.
    case glare(SIPCallHandle, retryAfter: Duration)
    /// The peer's mid-call offer (`method`: INVITE or UPDATE): for a back-to-back leg, the
    /// owner answers it (`answerOffer`) or refuses it (`refuseOffer`).
    case offerReceived(SIPCallHandle, offer: SIPMessageBody, method: SIPMethod)
    /// A re-INVITE without a body: for a back-to-back leg, the owner gives our offer
    /// (`answerOffer`); the answer comes back as `answerReceived`.
    case offerRequested(SIPCallHandle)
    /// The peer asks us to call `referTo` (REFER, RFC 3515: a blind transfer). With
    /// a back-to-back leg, the owner accepts (`acceptRefer`, then `notifyRefer` with the new
    /// call's progress) or refuses it (`refuseRefer`); otherwise it is declined (603).
    case referReceived(SIPCallHandle, referTo: String)
    /// The peer's answer to our mid-call offer (in the 2xx to our re-INVITE, or in the ACK when
    /// we offered in a 2xx).
    case answerReceived(SIPCallHandle, answer: SIPMessageBody)

    /// The call an event is about, if any.
    public var callHandle: SIPCallHandle? {
        switch self {
        case .incomingCall(let h, _), .trying(let h), .ringing(let h), .earlyMedia(let h, _), .answered(let h, _, _), .confirmed(let h),
            .ended(let h, _), .failed(let h, _), .dtmfInfo(let h, _), .reinvited(let h), .reinviteRefused(let h, _), .glare(let h, _),
            .offerReceived(let h, _, _), .offerRequested(let h), .answerReceived(let h, _), .referReceived(let h, _):
            h
        case .registered, .registrationFailed:
            nil
        }
    }

    public var description: String {
        switch self {
        case .incomingCall(let h, let call): "call \(h): incoming from \(call.from?.sipURI?.identityText ?? "?")"
        case .trying(let h): "call \(h): trying"
        case .ringing(let h): "call \(h): ringing"
        case .earlyMedia(let h, _): "call \(h): early media"
        case .answered(let h, _, _): "call \(h): answered"
        case .confirmed(let h): "call \(h): confirmed (ACK)"
        case .ended(let h, let reason): "call \(h): ended (\(reason))"
        case .failed(let h, let status): "call \(h): failed \(status)"
        case .registered(let aor, let contact): "registered \(aor) at \(contact)"
        case .registrationFailed(let status): "registration failed \(status)"
        // Never the body: it holds a door-opener digit (issue 17: no digits in logs).
        case .dtmfInfo(let h, let body): "call \(h): INFO (\(body.utf8.count) bytes)"
        case .reinvited(let h): "call \(h): re-INVITE accepted"
        case .reinviteRefused(let h, let status): "call \(h): re-INVITE refused \(status)"
        case .glare(let h, let delay): "call \(h): re-INVITE glare, retrying in \(delay)"
        case .offerReceived(let h, let offer, let method): "call \(h): \(method) offer (\(offer.text.utf8.count) bytes)"
        case .offerRequested(let h): "call \(h): re-INVITE without an offer"
        case .referReceived(let h, _): "call \(h): REFER"
        case .answerReceived(let h, let answer): "call \(h): answer to our offer (\(answer.text.utf8.count) bytes)"
        }
    }
}

/// What an INVITE that reached us says about its call: where it was sent, who calls (as the
/// caller says and as a proxy asserted), where it came from and what it offers.
public struct SIPIncomingCall: Sendable, Equatable {
    public var requestURI: AnyURI?
    public var from: SIPNameAddress?
    /// The To header: who the caller dialled (a trunk's channel, when the Request-URI is our Contact).
    public var to: SIPNameAddress?
    /// P-Asserted-Identity (RFC 3325) as received: worth something only from a peer trusted to
    /// assert (the owner knows which).
    public var assertedIdentity: SIPNameAddress?
    public var callID: String
    /// The flow the INVITE came in on (its remote address, and the interface for link-local peers).
    public var flow: SIPFlow
    /// The caller's session description (nil: an offerless INVITE).
    public var offer: SIPMessageBody?
    public var peerAllows: SIPAllowedMethods

    public init(
        requestURI: AnyURI?, from: SIPNameAddress?, assertedIdentity: SIPNameAddress? = nil, callID: String, flow: SIPFlow,
        offer: SIPMessageBody?, peerAllows: SIPAllowedMethods = SIPAllowedMethods(nil)
    ) {
        self.requestURI = requestURI
        self.from = from
        self.assertedIdentity = assertedIdentity
        self.callID = callID
        self.flow = flow
        self.offer = offer
        self.peerAllows = peerAllows
    }

    /// What `invite`, received on `flow`, says.
    public init(_ invite: SIPMessage, flow: SIPFlow) {
        var asserted: SIPNameAddress?
        if let value = invite.headers[.pAssertedIdentity] {
            var scanner = SIPScanner(value)
            asserted = try? SIPNameAddress.parseSingle(&scanner, header: "P-Asserted-Identity")
        }
        self.init(
            requestURI: invite.requestURI, from: invite.from, assertedIdentity: asserted, callID: invite.callID ?? "", flow: flow,
            offer: SIPMessageBody(invite), peerAllows: SIPAllowedMethods(invite))
        to = invite.to
    }
}

/// The methods a peer said it allows (its Allow header, RFC 3261 §20.5).
public struct SIPAllowedMethods: Sendable, Equatable {
    /// nil: the message had no Allow — which does not mean that the peer allows nothing (§20.5).
    public let methods: Set<SIPMethod>?

    /// At most 32 methods are kept: no peer implements more.
    public init(_ message: SIPMessage?) {
        guard let message, message.headers[.allow] != nil else {
            methods = nil
            return
        }
        methods = Set(message.tokens(.allow).prefix(32).map { SIPMethod($0) })
    }

    /// Whether the peer listed `method`; false when it listed none.
    public func lists(_ method: SIPMethod) -> Bool { methods?.contains(method) ?? false }
}
