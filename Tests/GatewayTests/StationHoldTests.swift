import Gateway
import SIP
import Testing

/// A hold from the cloud or mesh leg relayed to the station, as a value (issue 15): the mirror
/// direction, one re-INVITE at a time, retries while the station's own exchange runs, and
/// holds absorbed for good once the station refuses one.
@Suite("Holds relayed to the station")
struct StationHoldTests {
    static func connected(relaying: Bool = true) -> BridgedCall {
        var call = BridgedCall(channel: 1, direction: .cloudToLegacy, branches: 1)
        _ = call.outboundAnswered(0, at: 0)
        call.relayHolds(toStation: relaying)
        return call
    }

    @Test func whatTheFarPartyDoesToUsTheGatewayDoesToTheStation() {
        var call = Self.connected()
        // The cloud client holds with sendonly (music on hold): the station gets sendonly from us.
        #expect(call.farLegChanged(sends: true, receives: false, at: 1) == [.offerToStation(.sendonly)])
        #expect(call.stationOffer(.sendonly, sent: true, at: 1) == [])
        #expect(call.stationAnswered() == [])
        #expect(call.stationHold.agreed == .sendonly)
        // inactive stays inactive; recvonly (the party only listens) stays recvonly.
        #expect(call.farLegChanged(sends: false, receives: false, at: 2) == [.offerToStation(.inactive)])
        _ = call.stationOffer(.inactive, sent: true, at: 2)
        _ = call.stationAnswered()
        #expect(call.farLegChanged(sends: false, receives: true, at: 3) == [.offerToStation(.recvonly)])
        _ = call.stationOffer(.recvonly, sent: true, at: 3)
        _ = call.stationAnswered()
        // The resume.
        #expect(call.farLegChanged(sends: true, receives: true, at: 4) == [.offerToStation(.sendrecv)])
        // A change that changes nothing toward the station (a new key, a codec) sends nothing.
        _ = call.stationOffer(.sendrecv, sent: true, at: 4)
        _ = call.stationAnswered()
        #expect(call.farLegChanged(sends: true, receives: true, at: 5) == [])
    }

    @Test func oneReInviteAtATimeAndTheNewestWishGoesNext() {
        var call = Self.connected()
        #expect(call.farLegChanged(sends: true, receives: false, at: 1) == [.offerToStation(.sendonly)])
        _ = call.stationOffer(.sendonly, sent: true, at: 1)
        // Hold, resume, hold again while the first re-INVITE is out: nothing goes now.
        #expect(call.farLegChanged(sends: true, receives: true, at: 1.1) == [])
        #expect(call.farLegChanged(sends: false, receives: false, at: 1.2) == [])
        // Its answer: the newest wish goes.
        #expect(call.stationAnswered() == [.offerToStation(.inactive)])
        // And back to where the station is: nothing to send.
        _ = call.stationOffer(.inactive, sent: true, at: 2)
        #expect(call.farLegChanged(sends: true, receives: false, at: 2.1) == [])
        #expect(call.stationAnswered() == [.offerToStation(.sendonly)], "inactive agreed, sendonly wanted")
    }

    @Test func aReInviteThatCannotGoYetIsTriedAgainOnTheCallsClockThenGivenUp() {
        var call = Self.connected()
        _ = call.farLegChanged(sends: true, receives: false, at: 10)
        // The station's own re-INVITE is being answered: ours waits.
        #expect(call.stationOffer(.sendonly, sent: false, at: 10) == [])
        #expect(call.timers.deadlines[.stationOffer] == 10 + StationHold.retryInterval)
        #expect(call.tick(at: 10.1) == [], "not before its time")
        #expect(call.tick(at: 10.25) == [.offerToStation(.sendonly)])
        #expect(call.stationOffer(.sendonly, sent: true, at: 10.25) == [])
        #expect(call.timers.deadlines[.stationOffer] == nil)

        var stuck = Self.connected()
        _ = stuck.farLegChanged(sends: false, receives: false, at: 0)
        var now = 0.0
        for _ in 1..<StationHold.maximumAttempts {
            #expect(stuck.stationOffer(.inactive, sent: false, at: now) == [])
            now += StationHold.retryInterval
            #expect(stuck.tick(at: now) == [.offerToStation(.inactive)])
        }
        _ = stuck.stationOffer(.inactive, sent: false, at: now)
        #expect(stuck.stationHold.refusedWith == 491, "given up after \(StationHold.maximumAttempts) tries")
        #expect(stuck.timers.deadlines[.stationOffer] == nil)
        #expect(stuck.farLegChanged(sends: true, receives: true, at: now + 1) == [], "absorbed from now on")
    }

    @Test func aStationThatRefusesKeepsHoldsAbsorbedAndOneThatCannotNeverHearsOfThem() {
        var call = Self.connected()
        _ = call.farLegChanged(sends: true, receives: false, at: 1)
        _ = call.stationOffer(.sendonly, sent: true, at: 1)
        #expect(call.stationRefused(status: 488) == [])
        #expect(call.stationHold.agreed == .sendrecv && call.stationHold.inFlight == nil)
        #expect(call.farLegChanged(sends: true, receives: true, at: 2) == [])
        #expect(call.farLegChanged(sends: false, receives: false, at: 3) == [])

        var noReinvite = Self.connected(relaying: false)
        #expect(noReinvite.farLegChanged(sends: true, receives: false, at: 1) == [])

        var ringing = BridgedCall(channel: 1, direction: .cloudToLegacy, branches: 1)
        ringing.relayHolds(toStation: true)
        #expect(ringing.farLegChanged(sends: true, receives: false, at: 1) == [], "not before the answer")
        var ended = Self.connected()
        _ = ended.inboundEnded()
        #expect(ended.farLegChanged(sends: true, receives: false, at: 1) == [], "not after the end")
    }

    @Test func anAnswerThatArrivesForNothingChangesNothing() {
        var call = Self.connected()
        #expect(call.stationAnswered() == [])
        #expect(call.stationHold.agreed == .sendrecv)
    }
}
