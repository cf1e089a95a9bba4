/// Where the offer/answer exchange of one established dialog stands: at most one offer may be
/// outstanding at a time, whoever made it and whichever method carried it (RFC 3264 §4,
/// RFC 3261 §13.2.1 and §14, RFC 3311 §5.2, RFC 6337 §3). A pure value: the user agent asks it
/// what to do with a re-INVITE or UPDATE and tells it what went out; the verdicts carry the
/// status codes the RFCs prescribe.
public struct SIPOfferAnswerState: Sendable, Equatable {
    public enum Outstanding: Sendable, Equatable {
        case none
        /// Our offer waits for the peer's answer (in the 2xx to our re-INVITE or UPDATE, or in
        /// the ACK when we offered in a 2xx to an offerless re-INVITE).
        case ours
        /// The peer's offer waits for ours.
        case theirs
    }

    public private(set) var outstanding: Outstanding = .none

    public init() {}

    /// What to do with a mid-dialog INVITE or UPDATE.
    public enum Verdict: Sendable, Equatable {
        /// It carries an offer: answer it (2xx with our answer) or refuse it (488; the session
        /// stays as it was, RFC 3261 §14.2).
        case offer
        /// A re-INVITE without a body: our 2xx carries an offer, its ACK the answer (§14.2).
        case offerInResponse
        /// An UPDATE without a body (a session refresh, RFC 4028): 2xx, nothing changes.
        case refresh
        /// Refuse it: 491 when our own offer is outstanding (glare), 500 with a Retry-After of
        /// 0–10 s when the peer's previous offer is still unanswered (RFC 3311 §5.2).
        case reject(status: Int, retryAfter: UInt32?)
    }

    /// A re-INVITE (`isInvite`) or UPDATE arrived; `carriesOffer` when it has a session description.
    public mutating func received(isInvite: Bool, carriesOffer: Bool) -> Verdict {
        switch (outstanding, carriesOffer) {
        case (.ours, true):
            return .reject(status: 491, retryAfter: nil)
        case (.theirs, true):
            return .reject(status: 500, retryAfter: UInt32.random(in: 0...10))
        case (.none, true):
            outstanding = .theirs
            return .offer
        case (.none, false) where isInvite:
            outstanding = .ours
            return .offerInResponse
        case (.ours, false) where isInvite:
            // Our offer is out and the peer wants one from us: a second one may not go (§14.1).
            return .reject(status: 491, retryAfter: nil)
        case (.theirs, false) where isInvite:
            return .reject(status: 500, retryAfter: UInt32.random(in: 0...10))
        case (_, false):
            return .refresh
        }
    }

    /// We answered the peer's offer (2xx with a body).
    public mutating func answeredTheirs() {
        if outstanding == .theirs { outstanding = .none }
    }

    /// We refused the peer's offer (a final response ≥ 300): the session is what it was.
    public mutating func refusedTheirs() {
        if outstanding == .theirs { outstanding = .none }
    }

    /// We want to send an offer (a re-INVITE or UPDATE with a body). False while another offer
    /// is outstanding: RFC 3261 §14.1 forbids a second, the caller tries later.
    public mutating func sendOffer() -> Bool {
        guard outstanding == .none else { return false }
        outstanding = .ours
        return true
    }

    /// Our offer was answered, refused (≥ 300), or its exchange failed (a timeout, an ACK
    /// without the answer): either way no offer is outstanding any more.
    public mutating func closedOurs() {
        if outstanding == .ours { outstanding = .none }
    }
}
