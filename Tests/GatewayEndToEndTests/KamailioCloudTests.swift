import CloudUplink
import Foundation
import Gateway
import NIOPosix
import PeerTestSupport
import Testing

/// The gateway with a standards-based SIP cloud (issue 19): Debian's Kamailio running the
/// project's etc/kamailio/kamailio.cfg, media anchored in Debian's rtpengine, baresip as the
/// cloud client and as the legacy station. Calls both ways carry audio (tone checks), door digits
/// cross, in digest mode (an account per channel) and in certificate mode (one trunk account).
@Suite("Kamailio and rtpengine as the cloud", .serialized)
struct KamailioCloudTests {
    /// One gateway for `cloud`, its channel 1 (number 101) to alice, ringing `station`.
    static func gateway(
        _ cloud: KamailioCloud, scratch: ScratchDirectory, station: Baresip, access: (inout BridgeConfiguration) -> Void
    ) async throws -> (GatewayServer, LogCapture) {
        var g = BridgeConfiguration()
        g.gatewayID = "gw7"
        g.stateDirectory = scratch.path("gateway")
        g.legacyListen = .init(host: "127.0.0.1", port: 0)
        g.cloudServer = .init(host: "127.0.0.1", port: cloud.tlsPort)
        g.cloudCAFile = cloud.certificates.caFile
        g.cloudAccess.domain = cloud.domain
        g.keepaliveSeconds = 5
        g.optionsIntervalSeconds = 0
        g.channels = [BridgeConfiguration.Channel(index: 1, number: "101", cloudTarget: "alice", legacyTargets: ["sip:door@127.0.0.1:\(station.sipPort)"])]
        access(&g)
        let logs = LogCapture()
        let gateway = try await GatewayServer.start(g, group: MultiThreadedEventLoopGroup.singleton, logger: logs.logger)
        return (gateway, logs)
    }

    /// The legacy station (G.722, an 800 Hz tone), running and ready for calls.
    static func door(in scratch: ScratchDirectory) async throws -> Baresip {
        let tone = scratch.path("door.wav")
        try await Baresip.tone(tone, frequency: 800, seconds: 30, rate: 16000, channels: 1)
        let door = try GatewayPath.legacyStation("door", in: scratch, tone: tone)
        try door.start(seconds: 60)
        try await door.waitUntilReady()
        return door
    }

    static func registered(_ gateway: GatewayServer, logs: LogCapture, cloud: KamailioCloud) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if case .registered? = await gateway.registration?.status { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw PeerError("the gateway did not register at Kamailio:\n\(logs.text.suffix(3000))\nKamailio:\n\(cloud.log.suffix(3000))")
    }

    static func alice(_ cloud: KamailioCloud, scratch: ScratchDirectory, tone: String) throws -> Baresip {
        try Baresip(
            "alice", in: scratch, modules: ["opus.so", "g722.so", "srtp.so"],
            account: "<sip:alice@\(cloud.domain);transport=tls>;auth_pass=alice-pw;outbound=\"sip:127.0.0.1:\(cloud.tlsPort);transport=tls\";regint=300;mediaenc=srtp-mand;audio_codecs=opus/48000/2;answermode=auto",
            tone: tone, caFile: cloud.certificates.caFile, rtpPorts: 32000...32999)
    }

    static func eventually(_ what: String, timeout: Duration = .seconds(15), logs: LogCapture, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw PeerError("timed out waiting for \(what); gateway log:\n\(logs.text.suffix(3000))")
    }

    /// A call from alice to the channel and one from the station to alice, each with tones both
    /// ways through rtpengine; a door digit from alice reaches the station.
    static func callBothWays(_ cloud: KamailioCloud, scratch: ScratchDirectory, gateway: GatewayServer, logs: LogCapture, door: Baresip, dialling channel: String) async throws {
        let aliceTone = scratch.path("alice.wav")
        try await Baresip.tone(aliceTone, frequency: 1200, seconds: 30, rate: 48000, channels: 2)
        let alice = try Self.alice(cloud, scratch: scratch, tone: aliceTone)
        try alice.start(seconds: 40)
        defer { alice.stop() }
        try await Self.eventually("alice registered at Kamailio", logs: logs) { alice.output.contains("200 OK") || alice.output.contains("registered") }
        try await Task.sleep(for: .milliseconds(500))

        // The cloud calls the channel.
        try await alice.command("dial", "sip:\(channel)@\(cloud.domain)")
        try await Self.eventually("alice's call to the channel connected", logs: logs) { ((try? gateway.records.all()) ?? []).contains { $0.answeredAt != nil } }
        try await Task.sleep(for: .seconds(2))
        try await alice.command("sndcode", "5")
        try await Self.eventually("the station heard digit 5", logs: logs) { door.output.contains("received event: '5'") }
        try await Task.sleep(for: .seconds(2))
        try await alice.command("hangup")
        try await Self.eventually("the first call ended", logs: logs) { ((try? gateway.records.all()) ?? []).contains { $0.endedAt != nil } }
        let first = try await door.decodedAudio(latest: true)
        CallPathTests.expectToneIn(first, 1200, heardBy: "door", from: "alice via rtpengine")
        let aliceHeard = try await alice.decodedAudio(latest: true)
        CallPathTests.expectToneIn(aliceHeard, 800, heardBy: "alice", from: "the station via rtpengine")

        // The station calls the cloud (the INVITE answers Kamailio's 407, or goes on the certificate).
        try await door.command("dial", "sip:101@127.0.0.1:\(gateway.legacyAddress.port ?? 0)")
        try await Self.eventually("the station's call connected", logs: logs) { ((try? gateway.records.all()) ?? []).filter { $0.answeredAt != nil }.count == 2 }
        try await Task.sleep(for: .seconds(4))
        try await door.command("hangup")
        try await Self.eventually("the second call ended", logs: logs) { ((try? gateway.records.all()) ?? []).filter { $0.endedAt != nil }.count == 2 }
        let second = try await alice.decodedAudio(latest: true)
        CallPathTests.expectToneIn(second, 800, heardBy: "alice", from: "the station via rtpengine")
        let doorHeard = try await door.decodedAudio(latest: true)
        CallPathTests.expectToneIn(doorHeard, 1200, heardBy: "door", from: "alice via rtpengine")

        let records = try gateway.records.all().sorted { $0.startedAt < $1.startedAt }
        #expect(records.map(\.direction) == [.cloudToLegacy, .legacyToCloud] && records.allSatisfy { $0.status == .answered }, "\(records)")
        // rtpengine anchored both calls (Kamailio's offers made a call there each).
        #expect((cloud.rtpengine?.callsCreated ?? 0) >= 2, "rtpengine anchored both calls:\n\(cloud.rtpengine?.log.suffix(2000) ?? "")")
    }

    @Test func digestChannelsRegisterAtKamailioAndCallBothWaysThroughRTPEngine() async throws {
        let scratch = try ScratchDirectory()
        let cloud = try await KamailioCloud.start(in: scratch, subscribers: [("alice", "alice-pw"), ("door-lobby", "gw7-secret"), ("door-garage", "gw7-secret")])
        defer { cloud.stop() }
        let door = try await Self.door(in: scratch)
        try scratch.write("cloud-password", "gw7-secret\n")
        let (gateway, logs) = try await Self.gateway(cloud, scratch: scratch, station: door) { g in
            g.cloudAccess.authentication = .digest(username: nil, passwordFile: scratch.path("cloud-password"))
            g.channels[0].cloudAccount = "door-lobby"
            g.channels.append(BridgeConfiguration.Channel(index: 2, number: "102", cloudTarget: "alice", legacyTargets: ["sip:door@127.0.0.1:\(door.sipPort)"], cloudAccount: "door-garage"))
        }
        try await Self.registered(gateway, logs: logs, cloud: cloud)
        try await Self.callBothWays(cloud, scratch: scratch, gateway: gateway, logs: logs, door: door, dialling: "door-lobby")
        #expect(!logs.text.contains("gw7-secret"), "the password is never logged")
        await gateway.stop()
        door.stop()
    }

    @Test func aCertificateTrunkRegistersAtKamailioAndItsNumbersCallBothWays() async throws {
        let scratch = try ScratchDirectory()
        let cloud = try await KamailioCloud.start(in: scratch, subscribers: [("alice", "alice-pw")], numbers: ["101": "gw7"])
        defer { cloud.stop() }
        let door = try await Self.door(in: scratch)
        let (certificate, key) = try await cloud.clientCertificate("gw7")
        let (gateway, logs) = try await Self.gateway(cloud, scratch: scratch, station: door) { g in
            g.cloudAccess.authentication = .certificate(certificateFile: certificate, keyFile: key)
            g.cloudAccess.registration = .trunk
            g.cloudAccess.trunkAccount = "gw7"
        }
        try await Self.registered(gateway, logs: logs, cloud: cloud)
        try await Self.callBothWays(cloud, scratch: scratch, gateway: gateway, logs: logs, door: door, dialling: "101")
        await gateway.stop()
        door.stop()
    }

    /// Authentication is not authorization: a certificate Kamailio's CA signed speaks only for
    /// its own name. A gateway presenting gw8's certificate cannot register gw7's trunk.
    @Test func aCertificateForAnotherNameIsRefused() async throws {
        let scratch = try ScratchDirectory()
        let cloud = try await KamailioCloud.start(in: scratch, subscribers: [], mediaAnchor: false)
        defer { cloud.stop() }
        let station = try GatewayPath.legacyStation("door", in: scratch, tone: "/dev/null")
        let (certificate, key) = try await cloud.clientCertificate("gw8")
        let (gateway, logs) = try await Self.gateway(cloud, scratch: scratch, station: station) { g in
            g.cloudAccess.authentication = .certificate(certificateFile: certificate, keyFile: key)
            g.cloudAccess.registration = .trunk
            g.cloudAccess.trunkAccount = "gw7"
        }
        try await Self.eventually("the registration refused with 403", logs: logs) { logs.contains("403") }
        if case .registered? = await gateway.registration?.status { Issue.record("registered with another name's certificate") }
        #expect(cloud.log.contains("certificate gw8 does not speak for gw7"), "Kamailio said why:\n\(cloud.log.suffix(2000))")
        await gateway.stop()
    }
}
