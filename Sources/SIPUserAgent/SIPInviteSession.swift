public import SIP
public import SIPTransport
import NIOCore

/// Names a call of one user agent.
public struct SIPCallHandle: Hashable, Sendable, CustomStringConvertible {
    public let value: Int
    public var description: String { "#\(value)" }
}

/// One INVITE session and its dialog (RFC 3261 §13–15) as a value: what was said, what is
/// outstanding, and the rules for what may come next — provisional and final answers to our
/// INVITE (early media, a 422 or a challenge retried once), our 2xx until its ACK (§13.3.1.4),
/// offer/answer after the answer (RFC 3264 §5, §8; re-INVITE §14, UPDATE RFC 3311) with glare,
/// session timers (RFC 4028) and REFER (RFC 3515). The agent drives it as the endpoint drives
/// transactions: it hands in what arrived or what the owner decided, with the time, and carries
/// out the outcome (send, respond, emit); messages that need the transport (Via, Contact) are
/// made by the agent. `SIPInviteSessionTests` run every rule here without a socket.
struct SIPInviteSession {
    enum Direction { case outgoing, incoming }
    enum State: Equatable { case calling, ringing, answered, established, ending, ended }

    let handle: SIPCallHandle
    let direction: Direction
    var state: State
    /// The flow signalling runs on; in-dialog requests reuse it while it lives (RFC 5626 §5.3).
    var flow: SIPFlow
    var invite: SIPMessage
    var dialog: SIPDialog?
    /// Outgoing: the INVITE client transaction (for CANCEL). Incoming: the server transaction.
    var inviteTransaction: SIPTransactionKey?
    /// Our 2xx to an INVITE or re-INVITE, retransmitted until its ACK (RFC 3261 §13.3.1.4).
    var okResponse: SIPMessage?
    var okTransaction: SIPTransactionKey?
    /// Every timer of the session (2xx retransmission, answer, duration, offer, session
    /// refresh, re-INVITE retry), and the one wake-up for the earliest (`SIPUserAgent+CallTimers.swift`).
    var timers: SIPCallTimers
    var wakeUp = DeadlineWakeUp()
    /// Outgoing: the ACK we sent for the 2xx, repeated when the 2xx is.
    var ack: SIPMessage?
    var authenticated = false
    /// This call's own body (SDP), instead of the agent's configured one: what a back-to-back
    /// leg offers or answers with.
    var localBody: SIPMessageBody?
    /// The peer's body: from its INVITE (incoming) or its 2xx, or a provisional response with a
    /// body (early media) (outgoing).
    var remoteBody: SIPMessageBody?
    /// Mid-call offer/answer (re-INVITE, UPDATE): who has an offer out.
    var offerAnswer = SIPOfferAnswerState()
    /// The peer's mid-call offer while the owner works out the answer.
    var pendingOffer: PendingOffer?
    /// Our 2xx to an offerless re-INVITE carried an offer: its ACK carries the answer.
    var offerInOK = false
    /// What our re-INVITE offers, kept for its retry after a 491.
    var reinviteBody: SIPMessageBody?
    /// RFC 4028: the session timer this call settled on (its deadline is in `timers`).
    var sessionTimer: SIPSessionTimer?
    /// A REFER the owner has not decided on; and the CSeq of the one accepted, which its
    /// NOTIFYs name (RFC 3515 §2.4.6: `Event: refer;id=`).
    var pendingRefer: (request: SIPMessage, key: SIPTransactionKey)?
    var referID: UInt32?
    /// Our INVITE went again with the peer's Min-SE after a 422 (once).
    var retriedSessionInterval = false

    /// A re-INVITE or UPDATE with an offer (or a re-INVITE without one, which asks for ours),
    /// waiting for `answerOffer` or `refuseOffer`.
    struct PendingOffer {
        let request: SIPMessage
        let key: SIPTransactionKey
        /// nil: an offerless re-INVITE; what the owner gives is our offer.
        let offer: SIPMessageBody?
    }

    // MARK: Our INVITE's responses (UAC, §13.2.2)

    /// A 101–199 to our INVITE: whether the call rings now (the first one), and the callee's
    /// description when the response brought a new one (early media).
    mutating func provisional(_ response: SIPMessage) -> (rings: Bool, earlyMedia: SIPMessageBody?) {
        var early: SIPMessageBody?
        if let body = SIPMessageBody(response), body != remoteBody {
            remoteBody = body
            early = body
        }
        let first = state == .calling
        if first { state = .ringing }
        return (first, early)
    }

    /// A 422 to our INVITE (RFC 4028 §7.4): our interval was too small. The INVITE is made again
    /// with the peer's Min-SE, once, when that is more than we asked for (`asked`); false: give up.
    mutating func retryAfterIntervalTooSmall(_ response: SIPMessage, asked: Int?) -> Bool {
        guard !retriedSessionInterval, let minimum = SIPSessionTimer.minimum(in: response), minimum > (asked ?? 0) else { return false }
        reissueInvite { invite in
            invite.headers.set(.sessionExpires, String(minimum))
            invite.headers.set(SIPSessionTimer.minSE, String(minimum))
        }
        retriedSessionInterval = true
        return true
    }

    /// A 401/407 to our INVITE: made again with `credentials` (CSeq + 1, RFC 3261 §22.2), once;
    /// false: give up (no credentials, or they were refused already).
    mutating func retryAuthenticated(with credentials: (name: SIPHeaderName, value: String)?) -> Bool {
        guard !authenticated, let credentials else { return false }
        reissueInvite { $0.headers.add(credentials.name, credentials.value) }
        authenticated = true
        return true
    }

    /// The INVITE again as a new transaction: a new Via (the endpoint's), the next CSeq.
    private mutating func reissueInvite(_ change: (inout SIPMessage) -> Void) {
        invite.headers.remove(.via)
        let sequence = (invite.cseq?.sequence ?? 1) &+ 1
        invite.headers.set(.cseq, "\(sequence) INVITE")
        change(&invite)
    }

    /// The first 2xx to our INVITE: the dialog it made and the ACK we sent for it (§13.2.2.4).
    /// Returns the callee's answer, when the 2xx carried one.
    mutating func established(by response: SIPMessage, dialog: SIPDialog, ack: SIPMessage) -> SIPMessageBody? {
        self.ack = ack
        self.dialog = dialog
        state = .established
        let answer = SIPMessageBody(response)
        if let answer { remoteBody = answer }
        sessionTimer = SIPSessionTimer.settled(by: response)
        return answer
    }

    // MARK: Our 2xx and its ACK (UAS, §13.3.1.4)

    /// Our 2xx to an INVITE or re-INVITE went out at `now`: resent until its ACK.
    mutating func okSent(_ ok: SIPMessage, on key: SIPTransactionKey, now: Double) {
        okResponse = ok
        okTransaction = key
        timers.okSent(now: now)
    }

    /// What an ACK for our 2xx means: the call is confirmed (the first ACK), and the answer to
    /// an offer we made in the 2xx (`nil`: none was due, or the ACK had none and the exchange
    /// failed — the session stays as it was, §14.2).
    struct Confirmation: Equatable {
        var confirmsCall: Bool
        var answer: SIPMessageBody?
    }

    /// An ACK in this dialog: nil unless it acknowledges our 2xx (it carries its CSeq, §13.2.2.4).
    mutating func ackReceived(_ ack: SIPMessage) -> Confirmation? {
        guard let ok = okResponse, ack.cseq?.sequence == ok.cseq?.sequence else { return nil }
        timers.ackReceived()
        okResponse = nil
        okTransaction = nil
        let first = state == .answered
        state = .established
        var answer: SIPMessageBody?
        if offerInOK {
            offerInOK = false
            offerAnswer.closedOurs()
            answer = SIPMessageBody(ack)
            if let answer { remoteBody = answer }
        }
        return Confirmation(confirmsCall: first, answer: answer)
    }

    // MARK: The peer's mid-call offers (re-INVITE §14.2, UPDATE RFC 3311 §5.2)

    enum SessionChange: Equatable {
        /// Glare or an offer out of turn: this status (491, or 500 with Retry-After).
        case reject(status: Int, retryAfter: UInt32?)
        /// An UPDATE without an offer: a session refresh, answered 2xx at once.
        case refresh
        /// An offer (or an offerless re-INVITE asking for ours): pending until the owner, or a
        /// softphone at once, answers (`answeringOffer`) or refuses (`refusingOffer`).
        case pending(offer: SIPMessageBody?)
    }

    /// A re-INVITE or UPDATE in the dialog at `now`; the owner has `answerWithin` seconds.
    mutating func sessionChange(_ request: SIPMessage, key: SIPTransactionKey, answerWithin: Double, now: Double) -> SessionChange {
        let isInvite = request.method == .invite
        let body = SIPMessageBody(request)
        switch offerAnswer.received(isInvite: isInvite, carriesOffer: body != nil) {
        case .reject(let status, let retryAfter):
            if isInvite { dialog?.answeredIncomingInvite() }
            return .reject(status: status, retryAfter: retryAfter)
        case .refresh:
            return .refresh
        case .offer, .offerInResponse:
            pendingOffer = PendingOffer(request: request, key: key, offer: body)
            timers.offerPending(timeout: answerWithin, now: now)
            return .pending(offer: body)
        }
    }

    /// The pending offer answered with `body` (for an offerless re-INVITE: our offer, whose
    /// answer the ACK brings). From now on `body` is our description and the offer the peer's.
    mutating func answeringOffer(with body: SIPMessageBody?) -> PendingOffer? {
        guard let pending = pendingOffer else { return nil }
        timers.offerSettled()
        pendingOffer = nil
        if let offer = pending.offer {
            offerAnswer.answeredTheirs()
            remoteBody = offer
        } else {
            offerInOK = body != nil
            if body == nil { offerAnswer.closedOurs() }
        }
        if let body { localBody = body }
        if pending.request.method == .invite { dialog?.answeredIncomingInvite() }
        return pending
    }

    /// The pending offer refused (488, or 500 when the owner did not answer in time): the
    /// session goes on as it was (§14.2).
    mutating func refusingOffer() -> PendingOffer? {
        guard let pending = pendingOffer else { return nil }
        timers.offerSettled()
        pendingOffer = nil
        offerAnswer.refusedTheirs()
        offerAnswer.closedOurs()  // an offerless re-INVITE refused: we offer nothing
        if pending.request.method == .invite { dialog?.answeredIncomingInvite() }
        return pending
    }

    // MARK: Our re-INVITE (§14.1)

    /// Whether our re-INVITE may go now — the call established, no offer outstanding either
    /// way, no INVITE in progress in either direction — and if so, counted as going: it offers
    /// `body`, else what a retried one offered, else our description (`reinviteBody`).
    mutating func beginReinvite(offering body: SIPMessageBody?) -> Bool {
        guard state == .established, offerAnswer.outstanding == .none, dialog?.beginOutgoingInvite() == true else { return false }
        _ = offerAnswer.sendOffer()
        reinviteBody = body ?? reinviteBody ?? localBody
        timers.reinviteSent()
        return true
    }

    enum ReinviteOutcome: Equatable {
        /// 2xx: the peer's answer (nil: none, though we offered — the exchange failed, RFC 3264 §5).
        case accepted(answer: SIPMessageBody?, offered: Bool)
        /// 491, or 500 with Retry-After while the peer's own offer was unanswered: again later.
        case glare(retryAfter: Duration)
        /// Any other final status: the session stays as it was (§14.1).
        case refused(status: Int)
    }

    /// The final response to our re-INVITE.
    mutating func reinviteFinished<G: RandomNumberGenerator>(_ response: SIPMessage, using generator: inout G) -> ReinviteOutcome {
        let code = response.statusCode ?? 500
        dialog?.finishOutgoingInvite(response: response)
        offerAnswer.closedOurs()
        switch code {
        case 200...299:
            let answer = SIPMessageBody(response)
            let offered = reinviteBody
            if let offered, answer != nil { localBody = offered }
            reinviteBody = nil
            if let answer { remoteBody = answer }
            if let settled = SIPSessionTimer.settled(by: response) { sessionTimer = settled }
            return .accepted(answer: answer, offered: offered != nil)
        case 491:
            return .glare(retryAfter: dialog?.glareRetryDelay(using: &generator) ?? .seconds(2))
        case 500:
            // The peer's own offer was still unanswered (§14.2): again after its Retry-After.
            if let seconds = response.headers[.retryAfter].flatMap({ UInt32($0.prefix { $0.isNumber }) }), seconds <= 10 {
                return .glare(retryAfter: .seconds(Int(seconds)))
            }
            fallthrough
        default:
            reinviteBody = nil
            return .refused(status: code)
        }
    }

    // MARK: Ending

    enum Ending: Equatable {
        /// Our INVITE is still out: CANCEL its transaction (§9).
        case cancel(SIPTransactionKey)
        /// The peer's INVITE is not answered yet: decline it (486) on its transaction.
        case decline(SIPTransactionKey?)
        /// After the answer: BYE (§15).
        case bye
        /// Already ending, or nothing to end.
        case nothing
    }

    /// How the call ends from here.
    var ending: Ending {
        switch (direction, state) {
        case (.outgoing, .calling), (.outgoing, .ringing): inviteTransaction.map(Ending.cancel) ?? .nothing
        case (.incoming, .calling), (.incoming, .ringing): .decline(inviteTransaction)
        case (_, .answered), (_, .established): .bye
        default: .nothing
        }
    }
}

/// A registrar binding (RFC 3261 §10.3).
public struct SIPRegistrationBinding: Sendable, Equatable {
    public var contact: SIPNameAddress
    public var expires: UInt32
    public var callID: String
    public var cseq: UInt32
    public var flow: SIPFlow
}

/// A message body with its type, as a call's session description travels.
public struct SIPMessageBody: Sendable, Equatable {
    public var contentType: String
    public var text: String

    public init(contentType: String, text: String) {
        self.contentType = contentType
        self.text = text
    }

    /// The body of a message, if it has one.
    public init?(_ message: SIPMessage) {
        guard message.body.readableBytes > 0 else { return nil }
        self.init(contentType: message.contentType ?? "application/octet-stream", text: String(buffer: message.body))
    }
}
