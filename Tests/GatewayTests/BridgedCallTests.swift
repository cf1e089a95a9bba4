import Gateway
import SIP
import Testing

/// The call-through-a-channel state on its own: what the router must do for each thing its legs
/// report, with no sockets (the end-to-end suites run the same rules against real peers).
@Suite("Bridged call state")
struct BridgedCallTests {
    @Test func legacyToCloudRingsAnswersAndEndsWhenTheStationHangsUp() {
        var call = BridgedCall(channel: 3, direction: .legacyToCloud, branches: 1)
        #expect(call.outboundRinging(0, early: false) == [.ringInbound(earlyBranch: nil)])
        #expect(call.outboundRinging(0, early: false) == [], "one 180 toward the caller is enough")
        #expect(call.outboundAnswered(0, at: 0) == [.answerInbound(branch: 0)])
        #expect(call.phase == .connected && call.connectedBranch == 0)
        #expect(call.inboundEnded() == [.hangUpOutbound(branch: 0), .finish(.answered, reason: "legacy station hung up")])
        #expect(call.inboundEnded() == [], "nothing twice")
    }

    @Test func earlyMediaSetsUpTheBridgeBeforeThe183() {
        var call = BridgedCall(channel: 1, direction: .legacyToCloud, branches: 1)
        #expect(call.outboundRinging(0, early: true) == [.earlyMedia(branch: 0), .ringInbound(earlyBranch: 0)])
        #expect(call.earlyBranch == 0)
        #expect(call.outboundAnswered(0, at: 0) == [.answerInbound(branch: 0)])
    }

    @Test func theFirstStationToAnswerWinsAndTheOthersAreCancelledWithReason200() {
        var call = BridgedCall(channel: 2, direction: .cloudToLegacy, branches: 3)
        _ = call.outboundRinging(0, early: false)
        _ = call.outboundRinging(2, early: false)
        #expect(call.outboundAnswered(1, at: 0) == [.answerInbound(branch: 1), .cancel(branches: [0, 2], reason: .answeredElsewhere)])
        // A second answer racing the CANCEL is a dialog nobody wants: BYE.
        #expect(call.outboundAnswered(2, at: 0) == [.hangUpOutbound(branch: 2)])
        #expect(call.outboundEnded(1) == [.hangUpInbound, .finish(.answered, reason: "legacy station hung up")])
    }

    @Test func whenEveryStationFailsTheCallerHearsTheMostUsefulStatus() {
        var call = BridgedCall(channel: 2, direction: .cloudToLegacy, branches: 2)
        #expect(call.outboundFailed(0, status: 404) == [])
        #expect(call.outboundFailed(1, status: 486) == [.rejectInbound(status: 486), .finish(.busy, reason: "486 from the legacy side")])
        #expect(call.outcome == .busy)
    }

    @Test func aDeclineEndsTheSearchAndCancelsTheRest() {
        var call = BridgedCall(channel: 2, direction: .cloudToLegacy, branches: 2)
        let actions = call.outboundFailed(0, status: 603)
        #expect(actions.first == .cancel(branches: [1], reason: .declinedElsewhere(603)))
        #expect(call.outboundFailed(1, status: 487) == [.rejectInbound(status: 603), .finish(.declined, reason: "603 from the legacy side")])
    }

    @Test func theCallerGivingUpCancelsEveryBranchAndAnAnswerAfterwardsIsHungUp() {
        var call = BridgedCall(channel: 1, direction: .cloudToLegacy, branches: 2)
        _ = call.outboundRinging(0, early: false)
        #expect(call.inboundCancelled() == [.cancel(branches: [0, 1], reason: .callerGone), .finish(.cancelled, reason: "caller hung up before the answer")])
        #expect(call.outboundAnswered(0, at: 0) == [.hangUpOutbound(branch: 0)])
        #expect(call.outboundFailed(1, status: 487) == [])
    }

    // MARK: Timers, on a manual clock (seconds)

    @Test func theRingTimeCancelsAndTellsTheCallerNoAnswer() {
        var call = BridgedCall(channel: 1, direction: .legacyToCloud, branches: 1, timing: .init(ring: 30))
        call.begin(at: 100)
        #expect(call.nextDeadline == 130 && call.timers.deadlines.keys.sorted { $0.rawValue < $1.rawValue } == [.ring], "no fallback without a mesh")
        _ = call.outboundRinging(0, early: false)
        #expect(call.tick(at: 129.9) == [])
        #expect(call.tick(at: 130) == [
            .cancel(branches: [0], reason: .ringTimeout), .rejectInbound(status: 480), .finish(.missed, reason: "no answer within the ring time"),
        ])
        #expect(call.nextDeadline == nil && call.tick(at: 1000) == [], "an ended call has no timers")
    }

    @Test func theAnswerStopsTheRingTimeAndStartsTheDurationLimit() {
        var call = BridgedCall(channel: 1, direction: .legacyToCloud, branches: 1, timing: .init(ring: 30, maxCall: 600))
        call.begin(at: 0)
        _ = call.outboundAnswered(0, at: 10)
        #expect(call.timers.deadlines == [.duration: 610])
        #expect(call.tick(at: 40) == [], "the ring time no longer counts")
        #expect(call.tick(at: 610) == [.hangUpInbound, .hangUpOutbound(branch: 0), .finish(.answered, reason: "duration limit")])
        #expect(call.outboundEnded(0) == [])
    }

    @Test func aSilentCloudFallsBackToTheMeshAndAnyAnswerStopsThat() {
        let timing = BridgedCall.Timing(ring: 30, fallbackAfter: 1.5)
        var silent = BridgedCall(channel: 1, direction: .legacyToCloud, branches: 1, timing: timing)
        silent.begin(at: 0)
        #expect(silent.nextDeadline == 1.5)
        #expect(silent.tick(at: 1.5) == [.fallBackToMesh(reason: "no answer from the cloud within 1500 ms")])
        let rerouted = silent.reroute(to: .legacyToMesh, branches: 2, at: 1.6)
        #expect(rerouted && silent.timers.deadlines == [.ring: 30], "the caller's ring time goes on")

        var trying = BridgedCall(channel: 1, direction: .legacyToCloud, branches: 1, timing: timing)
        trying.begin(at: 0)
        trying.outboundTrying(0)
        #expect(trying.heardFromCallee && !trying.calleeRang)
        #expect(trying.tick(at: 2) == [], "a 100 proves the cloud is there")
        var meshCall = BridgedCall(channel: 1, direction: .cloudToLegacy, branches: 1, timing: timing)
        meshCall.begin(at: 0)
        #expect(meshCall.timers.deadlines == [.ring: 30], "only legacy → cloud calls fall back")
    }

    @Test func aChainRingsEachTargetForItsRingTimeWithinTheCallLimit() {
        var call = BridgedCall(channel: 2, direction: .legacyToMesh, branches: 1, chain: true, timing: .init(ring: 20, maxCall: 90))
        call.begin(at: 0)
        call.chainTargetPlaced(at: 0)
        #expect(call.timers.deadlines == [.ring: 90, .chainStep: 20])
        #expect(call.tick(at: 20) == [.nextInChain])
        let next = call.reroute(to: .legacyToMesh, branches: 1, chain: true, at: 20)
        #expect(next)
        call.chainTargetPlaced(at: 20)
        #expect(call.timers.deadlines == [.ring: 90, .chainStep: 40], "the overall limit stays")
        // A cloud call that fell back onto a chain gets the chain's limit then.
        var fellBack = BridgedCall(channel: 2, direction: .legacyToCloud, branches: 1, timing: .init(ring: 20, maxCall: 90, fallbackAfter: 1))
        fellBack.begin(at: 0)
        _ = fellBack.reroute(to: .legacyToMesh, branches: 1, chain: true, at: 1)
        #expect(fellBack.timers.deadlines == [.ring: 91])
    }

    @Test func silentMediaEndsBothLegsWithAReasonAndHoldDoesNotCount() {
        var call = BridgedCall(channel: 1, direction: .cloudToLegacy, branches: 2, timing: .init(mediaTimeout: 30))
        call.begin(at: 0)
        #expect(call.mediaActivity(legacy: (0, true), far: (0, true), at: 100) == [], "not before the answer")
        _ = call.outboundAnswered(1, at: 0)
        #expect(call.timers.deadlines[.mediaCheck] == 5, "looked at every fifth of the timeout, at most 5 s")
        #expect(call.tick(at: 5) == [.checkMedia])
        #expect(call.timers.deadlines[.mediaCheck] == 10, "and again")
        #expect(call.mediaActivity(legacy: (250, true), far: (250, true), at: 5) == [])
        // The cloud leg goes on hold: its silence does not count.
        #expect(call.mediaActivity(legacy: (1000, true), far: (250, false), at: 60) == [])
        #expect(call.mediaActivity(legacy: (2000, true), far: (250, true), at: 89) == [])
        #expect(call.mediaActivity(legacy: (3000, true), far: (250, true), at: 90) == [
            .hangUpBoth(reason: "Q.850;cause=102;text=\"no media from the cloud leg for 30 s\""),
            .finish(.answered, reason: "no media from the cloud leg for 30 s"),
        ])
        #expect(call.inboundEnded() == [], "over once")
        #expect(call.nextDeadline == nil)
    }

    @Test func withoutSupervisionNoMediaCheckIsArmed() {
        var call = BridgedCall(channel: 1, direction: .legacyToCloud, branches: 1)
        call.begin(at: 0)
        _ = call.outboundAnswered(0, at: 1)
        #expect(call.timers.deadlines.keys.contains(.mediaCheck) == false)
    }

    /// The mesh fallback: the silent cloud branch is dropped, the mesh targets take over while
    /// the caller waits; what ends the call afterwards speaks of the mesh.
    @Test func aCallReroutedToTheMeshStartsAFreshForkAndKeepsTheCaller() {
        var call = BridgedCall(channel: 1, direction: .legacyToCloud, branches: 1)
        let rerouted = call.reroute(to: .legacyToMesh, branches: 2, at: 0)
        #expect(rerouted)
        #expect(call.direction == .legacyToMesh && call.phase == .routing)
        #expect(call.outboundRinging(1, early: false) == [.ringInbound(earlyBranch: nil)])
        #expect(call.outboundAnswered(1, at: 0) == [.answerInbound(branch: 1), .cancel(branches: [0], reason: .answeredElsewhere)])
        #expect(call.outboundEnded(1) == [.hangUpInbound, .finish(.answered, reason: "mesh peer hung up")])
        #expect(GatewayCallRecord.Direction(call.direction) == .legacyToMesh)
    }

    @Test func aChainStepDoesNotRingTheCallerTwiceAndNothingReroutesAfterTheEnd() {
        var call = BridgedCall(channel: 2, direction: .legacyToMesh, branches: 1)
        #expect(call.outboundRinging(0, early: false) == [.ringInbound(earlyBranch: nil)])
        let nextStep = call.reroute(to: .legacyToMesh, branches: 1, at: 0)
        #expect(nextStep)
        #expect(call.outboundRinging(0, early: false) == [], "the caller already hears ringing")
        #expect(call.outboundFailed(0, status: 486) == [.rejectInbound(status: 486), .finish(.busy, reason: "486 from the mesh")])
        let afterEnd = call.reroute(to: .legacyToMesh, branches: 1, at: 0)
        #expect(!afterEnd, "an ended call stays ended")
        var cancelled = BridgedCall(channel: 1, direction: .legacyToCloud, branches: 1)
        _ = cancelled.inboundCancelled()
        let afterCancel = cancelled.reroute(to: .legacyToMesh, branches: 1, at: 0)
        #expect(!afterCancel)
    }

    @Test func cloudFailuresMapToWhatALegacyStationCanShow() {
        #expect(GatewayFailureMapping.inboundStatus(forOutbound: 486) == 486)
        #expect(GatewayFailureMapping.inboundStatus(forOutbound: 408) == 480)
        #expect(GatewayFailureMapping.inboundStatus(forOutbound: 403) == 503, "the gateway's own credentials")
        #expect(GatewayFailureMapping.inboundStatus(forOutbound: 502) == 503)
        #expect(GatewayFailureMapping.inboundStatus(forOutbound: 302) == 480)
        #expect(GatewayFailureMapping.outcome(forOutbound: 600) == .busy)
        #expect(GatewayFailureMapping.outcome(forOutbound: 480) == .missed)
    }
}

@Suite("Mesh fallback rules")
struct MeshFallbackRuleTests {
    @Test func theCloudFallsBackOnlyWhenItCannotDeliver() {
        #expect(ChannelRouter.cloudCannotDeliver(503, heardAnything: false, rang: false), "before the cloud said a word: anything")
        #expect(ChannelRouter.cloudCannotDeliver(486, heardAnything: false, rang: false))
        #expect(ChannelRouter.cloudCannotDeliver(500, heardAnything: true, rang: true), "the far gateway not registered again yet")
        #expect(ChannelRouter.cloudCannotDeliver(408, heardAnything: true, rang: true))
        #expect(ChannelRouter.cloudCannotDeliver(480, heardAnything: true, rang: false))
        #expect(!ChannelRouter.cloudCannotDeliver(480, heardAnything: true, rang: true), "rang and nobody answered: that is an answer")
        #expect(!ChannelRouter.cloudCannotDeliver(486, heardAnything: true, rang: false), "busy is the callee's answer")
        #expect(!ChannelRouter.cloudCannotDeliver(603, heardAnything: true, rang: true))
        #expect(!ChannelRouter.cloudCannotDeliver(404, heardAnything: true, rang: false))
    }
}
