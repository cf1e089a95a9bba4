public import SIP
public import SIPTransport
import NIOCore

/// Names a call of one user agent.
public struct SIPCallHandle: Hashable, Sendable, CustomStringConvertible {
    public let value: Int
    public var description: String { "#\(value)" }
}

/// One INVITE session and its dialog (RFC 3261 §13-15).
struct SIPCall {
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
    /// refresh), and the one wake-up for the earliest (`SIPUserAgent+CallTimers.swift`).
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
