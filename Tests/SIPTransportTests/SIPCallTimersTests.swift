import SIP
import SIPUserAgent
import Testing

/// An INVITE session's timers on a manual clock (seconds): what the agent does when.
@Suite("INVITE session timers")
struct SIPCallTimersTests {
    /// RFC 3261 §13.3.1.4: the 2xx goes again after T1, 2·T1, … capped at T2, until the ACK;
    /// after 64·T1 without one the call ends.
    @Test func theOKIsResentDoublingUpToT2AndGivenUpAt64T1() {
        var timers = SIPCallTimers(t1: 0.5, t2: 4)
        timers.okSent(now: 0)
        var resent: [Double] = []
        var now = 0.0
        while let next = timers.nextDeadline, now < 100 {
            now = next
            let due = timers.fire(at: now)
            if due == [.noACK] { break }
            #expect(due == [.retransmitOK])
            resent.append(now)
        }
        #expect(resent.prefix(5) == [0.5, 1.5, 3.5, 7.5, 11.5], "\(resent)")
        #expect(resent.allSatisfy { $0 < 32 } && now == 32, "given up at 64·T1: \(now)")
        #expect(timers.nextDeadline == nil)
    }

    @Test func theACKStopsTheResending() {
        var timers = SIPCallTimers()
        timers.okSent(now: 10)
        #expect(timers.fire(at: 10.5) == [.retransmitOK])
        timers.ackReceived()
        #expect(timers.nextDeadline == nil)
    }

    /// RFC 4028 §10: the refresher refreshes at half the interval; the other side gives up at
    /// the interval less min(32 s, a third), and each refresh starts the clock again.
    @Test func sessionTimersRefreshOrExpire() {
        var timers = SIPCallTimers()
        timers.sessionRefreshed(SIPSessionTimer(interval: 300, weRefresh: true), now: 0)
        #expect(timers.deadlines[.session] == 150)
        #expect(timers.fire(at: 150) == [.refreshSession])
        timers.sessionRefreshed(SIPSessionTimer(interval: 300, weRefresh: false), now: 150)
        #expect(timers.deadlines[.session] == 418.0, "150 + 300 - 32")
        timers.sessionRefreshed(SIPSessionTimer(interval: 300, weRefresh: false), now: 400)
        #expect(timers.fire(at: 418) == [], "a refresh moved the deadline")
        #expect(timers.fire(at: 668) == [.sessionExpired])
    }

    @Test func answerDurationAndOfferDeadlinesFireInOrder() {
        var timers = SIPCallTimers()
        timers.answer(after: 0.1, now: 0)
        timers.limitDuration(to: 600, now: 0)
        timers.offerPending(timeout: 8, now: 0)
        #expect(timers.fire(at: 0.1) == [.answer])
        timers.okSent(now: 0.1)
        #expect(timers.deadlines[.answer] == nil)
        timers.ackReceived()
        #expect(timers.fire(at: 700) == [.offerUnanswered, .durationReached], "earliest first")
        timers.offerPending(timeout: 8, now: 700)
        timers.offerSettled()
        timers.stopAll()
        #expect(timers.nextDeadline == nil)
    }

    /// After glare the re-INVITE goes again at its delay; while the peer's exchange blocks it,
    /// every interval, a bounded number of times; a re-INVITE that went needs no retry.
    @Test func aReInviteIsRetriedAfterGlareABoundedNumberOfTimes() {
        var timers = SIPCallTimers()
        timers.retryReinvite(after: 1.5, attempts: 3, every: 0.25, now: 10)
        let early = timers.fire(at: 11)
        #expect(early == [])
        let first = timers.fire(at: 11.5)
        #expect(first == [.retryReinvite])
        let again = timers.reinviteBlocked(now: 11.5)
        #expect(again)
        #expect(timers.deadlines[.reinviteRetry] == 11.75)
        let second = timers.fire(at: 11.75)
        #expect(second == [.retryReinvite])
        let more = timers.reinviteBlocked(now: 11.75)
        #expect(more)
        let third = timers.fire(at: 12)
        #expect(third == [.retryReinvite])
        let last = timers.reinviteBlocked(now: 12)
        #expect(!last, "three attempts in all")
        #expect(timers.deadlines[.reinviteRetry] == nil)

        timers.retryReinvite(after: 1, attempts: 20, every: 0.25, now: 20)
        timers.reinviteSent()
        #expect(timers.nextDeadline == nil, "sent meanwhile (the owner's own re-INVITE): no retry")
        timers.retryReinvite(after: 1, attempts: 0, every: 0.25, now: 20)
        #expect(timers.nextDeadline == nil, "no attempts, no retry")
    }
}
