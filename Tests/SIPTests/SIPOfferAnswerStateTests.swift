import Testing
@testable import SIP

/// One offer outstanding at a time, whoever made it (RFC 3264 §4, RFC 3261 §14, RFC 3311 §5.2).
@Suite("Mid-call offer/answer state")
struct SIPOfferAnswerStateTests {
    @Test("A re-INVITE or UPDATE with an offer is an offer to answer; answering or refusing closes it")
    func offerThenAnswer() {
        var state = SIPOfferAnswerState()
        do { let verdict = state.received(isInvite: true, carriesOffer: true); #expect(verdict == .offer) }
        #expect(state.outstanding == .theirs)
        state.answeredTheirs()
        #expect(state.outstanding == .none)
        do { let verdict = state.received(isInvite: false, carriesOffer: true); #expect(verdict == .offer) }
        state.refusedTheirs()
        #expect(state.outstanding == .none)
    }

    @Test("A re-INVITE without a body asks for our offer; an UPDATE without one is a refresh")
    func offerless() {
        var state = SIPOfferAnswerState()
        do { let verdict = state.received(isInvite: false, carriesOffer: false); #expect(verdict == .refresh) }
        #expect(state.outstanding == .none)
        do { let verdict = state.received(isInvite: true, carriesOffer: false); #expect(verdict == .offerInResponse) }
        #expect(state.outstanding == .ours)
        // Until the ACK brings the answer, another offer is glare.
        do { let verdict = state.received(isInvite: false, carriesOffer: true); #expect(verdict == .reject(status: 491, retryAfter: nil)) }
        do { let verdict = state.received(isInvite: false, carriesOffer: false); #expect(verdict == .refresh) }
        state.closedOurs()
        #expect(state.outstanding == .none)
    }

    @Test("Our offer out: their offer is 491, and we may not send a second")
    func glare() {
        var state = SIPOfferAnswerState()
        do { let sent = state.sendOffer(); #expect(sent) }
        do { let sent = state.sendOffer(); #expect(!sent) }
        do { let verdict = state.received(isInvite: true, carriesOffer: true); #expect(verdict == .reject(status: 491, retryAfter: nil)) }
        do { let verdict = state.received(isInvite: true, carriesOffer: false); #expect(verdict == .reject(status: 491, retryAfter: nil)) }
        state.closedOurs()
        do { let sent = state.sendOffer(); #expect(sent) }
    }

    @Test("Their offer unanswered: a second offer is 500 with a Retry-After of 0–10 s (RFC 3311 §5.2), and ours waits")
    func theirsPending() {
        var state = SIPOfferAnswerState()
        do { let verdict = state.received(isInvite: false, carriesOffer: true); #expect(verdict == .offer) }
        for isInvite in [true, false] {
            guard case .reject(500, let retryAfter?) = state.received(isInvite: isInvite, carriesOffer: true) else {
                Issue.record("expected 500 with Retry-After")
                continue
            }
            #expect(retryAfter <= 10)
        }
        do { let sent = state.sendOffer(); #expect(!sent) }
        state.answeredTheirs()
        do { let sent = state.sendOffer(); #expect(sent) }
    }
}
