@testable import Gateway
import Mesh
import SIP
import Testing

/// Whether a new call is taken and where it goes, without sockets (the router only carries it
/// out): which channel each side names, the refusals in their order, the mesh at once when the
/// cloud is away, the timers and ring plan a call gets.
@Suite("Call admission")
struct CallAdmissionTests {
    static let channels = [
        BridgeConfiguration.Channel(index: 1, number: "801", cloudTarget: "desk", legacyTargets: ["sip:door@192.0.2.5", "sip:lift@192.0.2.6"], ringSeconds: 20, maxCallSeconds: 300),
        BridgeConfiguration.Channel(index: 2, number: "802", cloudTarget: "concierge", legacyTargets: ["102"], meshTargets: ["901", "902"], ring: .chain),
        BridgeConfiguration.Channel(index: 3, number: "803", cloudTarget: "desk", legacyTargets: ["103"], enabled: false),
    ]

    static func known(_ change: (inout CallAdmission.Circumstances) -> Void = { _ in }) -> CallAdmission.Circumstances {
        var known = CallAdmission.Circumstances(channels: channels, device: "gw1")
        known.cloudRegistered = true
        known.meshAvailable = true
        known.mediaTimeout = 30
        change(&known)
        return known
    }

    static func uri(_ user: String) -> AnyURI { .sip(SIPURI(user: user, host: "192.0.2.1")) }

    static func route(_ verdict: CallAdmission.Verdict) -> CallAdmission.Route? {
        if case .route(let route) = verdict { route } else { nil }
    }

    @Test func eachSideNamesTheChannelItsOwnWay() throws {
        let fromStation = try #require(Self.route(CallAdmission.decide(requestURI: Self.uri("801"), caller: "sip:door", origin: .legacy, Self.known())))
        #expect(fromStation.channel.index == 1 && fromStation.direction == .legacyToCloud && fromStation.targets == ["desk"])
        #expect(fromStation.timing == BridgedCall.Timing(ring: 20, maxCall: 300, fallbackAfter: nil, mediaTimeout: 30), "no mesh targets: no fallback timer")
        let fromCloud = try #require(Self.route(CallAdmission.decide(requestURI: Self.uri("gw1-ch1"), caller: "sips:alice", origin: .cloud, Self.known())))
        #expect(fromCloud.direction == .cloudToLegacy && fromCloud.targets == ["sip:door@192.0.2.5", "sip:lift@192.0.2.6"], "every station rings")
        let fromMesh = try #require(Self.route(CallAdmission.decide(requestURI: Self.uri("802"), caller: "sips:901", origin: .mesh, Self.known())))
        #expect(fromMesh.direction == .meshToLegacy && fromMesh.targets == ["102"])
        // The cloud's name for a channel is not a number a station dials, and the other way round.
        #expect(CallAdmission.decide(requestURI: Self.uri("801"), caller: "x", origin: .cloud, Self.known()) == .refuse(status: 404, reason: "no channel has the number \"801\" (from x)", record: nil))
        #expect(CallAdmission.decide(requestURI: Self.uri("gw1-ch1"), caller: "x", origin: .legacy, Self.known()) == .refuse(status: 404, reason: "no channel has the number \"gw1-ch1\" (from x)", record: nil))
        #expect(CallAdmission.decide(requestURI: Self.uri("gw2-ch1"), caller: "x", origin: .cloud, Self.known()) == .refuse(status: 404, reason: "no channel has the number \"gw2-ch1\" (from x)", record: nil))
        #expect(CallAdmission.decide(requestURI: Self.uri("gw1-ch99999999999999999999"), caller: "x", origin: .cloud, Self.known()) == .refuse(status: 404, reason: "no channel has the number \"gw1-ch99999999999999999999\" (from x)", record: nil), "no trap on a number too big for Int")
        #expect(CallAdmission.decide(requestURI: .tel(TelURI(number: "+4930123")), caller: "x", origin: .legacy, Self.known()) == .refuse(status: 416, reason: "the Request-URI is not a SIP URI", record: nil))
    }

    @Test func refusalsDisabledBusyAndShuttingDownTheBusyOneRecorded() {
        #expect(CallAdmission.decide(requestURI: Self.uri("803"), caller: "x", origin: .legacy, Self.known()) == .refuse(status: 480, reason: "channel 3 is disabled (from x)", record: nil))
        let busy = CallAdmission.decide(requestURI: Self.uri("gw1-ch1"), caller: "x", origin: .cloud, Self.known { $0.busyChannels = [1] })
        #expect(busy == .refuse(status: 486, reason: "channel 1 is busy (from x)", record: .init(channel: 1, direction: .cloudToLegacy, status: .busy)))
        let stopping = CallAdmission.decide(requestURI: Self.uri("801"), caller: "x", origin: .legacy, Self.known { $0.accepting = false })
        #expect(stopping == .refuse(status: 503, reason: "the gateway is shutting down (from x)", record: nil))
    }

    @Test func aStationsCallGoesToTheMeshAtOnceWhenTheCloudIsAwayOr503WithoutOne() throws {
        let notRegistered = try #require(Self.route(CallAdmission.decide(requestURI: Self.uri("802"), caller: "x", origin: .legacy, Self.known { $0.cloudRegistered = false })))
        #expect(notRegistered.direction == .legacyToMesh && notRegistered.targets == ["901", "902"] && notRegistered.meshBecause == "the cloud is not registered")
        #expect(notRegistered.ringPlan == MeshRingPlan(mode: .chain, targets: ["901", "902"]))
        let down = try #require(Self.route(CallAdmission.decide(requestURI: Self.uri("802"), caller: "x", origin: .legacy, Self.known { $0.cloudDown = true })))
        #expect(down.direction == .legacyToMesh && down.meshBecause == "the cloud uplink is down")
        let withoutMesh = CallAdmission.decide(requestURI: Self.uri("801"), caller: "x", origin: .legacy, Self.known { $0.cloudDown = true })
        #expect(withoutMesh == .refuse(status: 503, reason: "channel 1: the cloud is unreachable (no sign of life)", record: .init(channel: 1, direction: .legacyToCloud, status: .failed)))
        let meshOff = CallAdmission.decide(requestURI: Self.uri("802"), caller: "x", origin: .legacy, Self.known { $0.cloudRegistered = false; $0.meshAvailable = false })
        #expect(meshOff == .refuse(status: 503, reason: "channel 2: the cloud is unreachable (not registered)", record: .init(channel: 2, direction: .legacyToCloud, status: .failed)))
        // The cloud there, mesh targets too: to the cloud, with the fallback timer armed.
        let healthy = try #require(Self.route(CallAdmission.decide(requestURI: Self.uri("802"), caller: "x", origin: .legacy, Self.known { $0.fallbackAfter = 2.5 })))
        #expect(healthy.direction == .legacyToCloud && healthy.timing.fallbackAfter == 2.5 && healthy.ringPlan == nil)
        // A cloud caller never goes to the mesh, whatever the cloud's health.
        let cloudCaller = try #require(Self.route(CallAdmission.decide(requestURI: Self.uri("gw1-ch2"), caller: "x", origin: .cloud, Self.known { $0.cloudDown = true })))
        #expect(cloudCaller.direction == .cloudToLegacy && cloudCaller.timing.fallbackAfter == nil)
    }
}

@Suite("Refusals counted, not written one by one")
struct RefusalTallyTests {
    @Test("The first refusal of a kind in a minute is logged and recorded; the rest are one summary when the minute is over; kinds do not mix")
    func firstInFullThenASummaryAMinute() {
        var tally = RefusalTally()
        let busy = RefusalTally.Kind(status: 486, channel: 1, record: .init(direction: .legacyToCloud, status: .busy))
        let unknown = RefusalTally.Kind(status: 404, channel: nil, record: nil)
        let first = tally.refused(busy, caller: "sip:a@x", reason: "busy", now: 0)
        #expect(first)
        var inFull = 0
        for second in 1...1999 where tally.refused(busy, caller: "sip:flood@x", reason: "busy", now: Double(second) / 100) { inFull += 1 }
        #expect(inFull == 0)
        let other = tally.refused(unknown, caller: "sip:b@x", reason: "no channel 999", now: 5)
        #expect(other, "another kind is logged in full")
        #expect(tally.nextDue == 60)
        let early = tally.due(now: 59.9)
        #expect(early.isEmpty)
        let due = tally.due(now: 60)
        #expect(due.count == 1 && due.first?.kind == busy && due.first?.more == 1999 && due.first?.lastCaller == "sip:flood@x")
        let later = tally.due(now: 65)
        #expect(later.isEmpty, "the unknown number came once: nothing to sum up")
        let again = tally.refused(busy, caller: "sip:a@x", reason: "busy", now: 70)
        #expect(again, "a new minute logs in full again")
        #expect(tally.total == 2002)
    }
}
