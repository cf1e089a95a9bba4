import SIP
import Testing

/// The fork's response context (RFC 3261 §16.7) on its own: which response the caller gets and
/// which branches are cancelled, and why.
@Suite("Forked INVITE response context")
struct ForkedInviteTests {
    @Test func firstAnswerWinsAndTheOthersAreCancelledWithReason200() {
        var fork = ForkedInvite(branchCount: 3)
        #expect(fork.response(180, on: 0) == [.relay(branch: 0, status: 180)])
        #expect(fork.response(180, on: 2) == [.relay(branch: 2, status: 180)])
        let actions = fork.response(200, on: 1)
        #expect(actions == [.relay(branch: 1, status: 200), .cancel(branches: [0, 2], reason: .answeredElsewhere)])
        #expect(ForkedInvite.CancelReason.answeredElsewhere.headerValue?.hasPrefix("SIP;cause=200") == true)
        #expect(fork.answeredBranch == 1 && fork.finalStatus == 200)
        // The losers' 487s go nowhere; the winner's 2xx retransmission goes through.
        #expect(fork.response(487, on: 0).isEmpty)
        #expect(fork.response(200, on: 1) == [.relay(branch: 1, status: 200)])
    }

    @Test func allBusyGivesBusy() {
        var fork = ForkedInvite(branchCount: 3)
        #expect(fork.response(486, on: 0).isEmpty)
        #expect(fork.response(404, on: 1).isEmpty)
        #expect(fork.response(486, on: 2) == [.relay(branch: 0, status: 486)])
        #expect(fork.finalStatus == 486)
    }

    @Test func lowestClassWins() {
        var fork = ForkedInvite(branchCount: 2)
        _ = fork.response(503, on: 0)
        #expect(fork.response(486, on: 1) == [.relay(branch: 1, status: 486)])
    }

    @Test func aDeclineEndsTheSearchForEveryone() {
        var fork = ForkedInvite(branchCount: 3)
        _ = fork.response(180, on: 0)
        let actions = fork.response(603, on: 1)
        #expect(actions == [.cancel(branches: [0, 2], reason: .declinedElsewhere(603))])
        _ = fork.response(487, on: 0)
        #expect(fork.response(487, on: 2) == [.relay(branch: 1, status: 603)])
    }

    @Test func ringTimeoutCancelsEveryBranchAndAnswers480() {
        var fork = ForkedInvite(branchCount: 2)
        _ = fork.response(180, on: 0)
        #expect(fork.ringTimerFired() == [.cancel(branches: [0, 1], reason: .ringTimeout), .reply(status: 480, reason: "No Answer")])
        #expect(fork.response(487, on: 0).isEmpty)
        #expect(fork.ringTimerFired().isEmpty)
    }

    @Test func callerCancelCancelsTheBranchesAndTheirAnswerGoesBack() {
        var fork = ForkedInvite(branchCount: 2)
        _ = fork.response(180, on: 0)
        #expect(fork.callerCancel() == [.cancel(branches: [0, 1], reason: .callerGone)])
        #expect(ForkedInvite.CancelReason.callerGone.headerValue == nil)
        _ = fork.response(487, on: 0)
        #expect(fork.response(487, on: 1) == [.relay(branch: 0, status: 487)])
        #expect(fork.callerCancelled)
    }

    @Test func anAnswerRacingTheCancelStillWins() {
        var fork = ForkedInvite(branchCount: 2)
        _ = fork.callerCancel()
        let actions = fork.response(200, on: 1)
        #expect(actions.first == .relay(branch: 1, status: 200))
        #expect(fork.answeredBranch == 1)
    }
}
