import CloudCore
import CloudUplink
import Foundation
import Gateway
import NIOCore
import NIOPosix
import PeerTestSupport
import Testing

/// The path under load and under faults: all 14 channels in calls at once, the cloud core
/// restarted under the gateway, and what the gateway refuses (a wrong claiming code, a cloud
/// certificate from the wrong CA) without going down.
@Suite("Gateway under load and faults", .serialized)
struct GatewayResilienceTests {
    @Test func fourteenChannelsCarryCallsAtOnce() async throws {
        let users = (1...14).map { "u\($0)" }
        let path = try await GatewayPath.start(channels: (1...14).map { GatewayPath.channel($0, to: "u\($0)", ringing: []) }, users: users)
        let cloudTone = path.scratch.path("cloud.wav"), doorTone = path.scratch.path("door.wav")
        try await Baresip.tone(cloudTone, frequency: 1000, seconds: 30, rate: 48000, channels: 2)
        try await Baresip.tone(doorTone, frequency: 800, seconds: 30, rate: 16000, channels: 1)
        let domain = path.coreConfiguration.domain
        let accounts = users.map {
            "<sip:\($0)@\(domain);transport=tls>;auth_pass=\($0)-pw;outbound=\"sip:127.0.0.1:\(path.coreTLSPort);transport=tls\";regint=300;mediaenc=srtp-mand;audio_codecs=opus/48000/2;answermode=auto"
        }
        let desk = try Baresip(
            "desk", in: path.scratch, modules: ["opus.so", "srtp.so"], account: accounts.joined(separator: "\n"), tone: cloudTone,
            caFile: path.coreCAFile, rtpPorts: 34000...34999, extraConfig: "call_max_calls 16")
        try desk.start(seconds: 60)
        try await path.eventually("14 cloud users registered", timeout: .seconds(20)) {
            var registered = 0
            for user in users where await !path.core.proxy.contacts(of: user).isEmpty { registered += 1 }
            return registered == 14
        }
        let doors = try Baresip(
            "doors", in: path.scratch, modules: ["g722.so"], account: "<sip:doors@127.0.0.1>;regint=0;audio_codecs=G722/16000/1;answermode=auto",
            tone: doorTone, rtpPorts: 35000...35999, extraConfig: "call_max_calls 16")
        // baresip ends its calls with BYE when its time is up.
        try doors.start(seconds: 14, commands: (1...14).map { "/dial sip:\(GatewayPath.number($0))@127.0.0.1:\(path.legacyPort)" })
        try await path.eventually("14 calls connected", timeout: .seconds(20)) { await path.core.proxy.statistics.callsAnswered == 14 }
        #expect(await path.gateway.router.busyChannelIndices == Array(1...14))
        try await Task.sleep(for: .seconds(2))
        // Every channel carries media both ways (transcoded G.722 ↔ Opus).
        for channel in 1...14 {
            let counters = await path.gateway.router.mediaCounters(channel: channel)
            #expect((counters?.legacy.packetsReceived ?? 0) > 50 && (counters?.far.packetsReceived ?? 0) > 50, "channel \(channel): \(String(describing: counters))")
            #expect((counters?.legacy.packetsSent ?? 0) > 50 && (counters?.far.packetsSent ?? 0) > 50, "channel \(channel) sends both ways")
        }
        _ = try await doors.process?.wait(timeout: .seconds(30))
        let records = try await path.records(atLeast: 14, timeout: .seconds(20))
        #expect(records.count == 14 && records.allSatisfy { $0.status == .answered && $0.codec == "g722/opus" })
        #expect(Set(records.map(\.channel)) == Set(1...14))
        desk.stop()
        await path.stop()
    }

    @Test func afterACoreRestartTheGatewayRegistersAgainAndTheNextCallWorks() async throws {
        let scratch = try ScratchDirectory()
        let doorTone = scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 750, seconds: 30, rate: 16000, channels: 1)
        let door = try GatewayPath.legacyStation("door", in: scratch, tone: doorTone)
        try door.start(seconds: 60)
        let path = try await GatewayPath.start(legacyTargets: ["sip:door@127.0.0.1:\(door.sipPort)"]) { config in
            config.keepaliveSeconds = 2
        }
        let tone = path.scratch.path("alice.wav")
        try await Baresip.tone(tone, frequency: 1000, seconds: 10, rate: 48000, channels: 2)
        let before = try path.cloudClient("alice", tone: tone)
        try before.start(seconds: 4, command: "/dial sip:gw1-ch1@\(path.coreConfiguration.domain)")
        try await path.eventually("the first call connected") { await path.core.proxy.statistics.callsAnswered == 1 }
        _ = try await before.process?.wait(timeout: .seconds(10))
        _ = try await path.records(atLeast: 1)

        try await path.restartCore()
        try await path.eventually("the gateway registered again", timeout: .seconds(30)) { path.logs.count("cloud uplink registered") >= 2 }
        let after = try Baresip(
            "alice-again", in: path.scratch, modules: ["opus.so", "srtp.so"],
            account: "<sip:alice@\(path.coreConfiguration.domain);transport=tls>;auth_pass=alice-pw;outbound=\"sip:127.0.0.1:\(path.coreTLSPort);transport=tls\";regint=300;mediaenc=srtp-mand;audio_codecs=opus/48000/2;answermode=auto",
            tone: tone, caFile: path.coreCAFile, rtpPorts: 36000...36999)
        try after.start(seconds: 7, command: "/dial sip:gw1-ch1@\(path.coreConfiguration.domain)")
        try await path.eventually("the call after the restart connected", timeout: .seconds(15)) { await path.core.proxy.statistics.callsAnswered == 1 }
        _ = try await after.process?.wait(timeout: .seconds(15))
        let records = try await path.records(atLeast: 2)
        #expect(records.map(\.status) == [.answered, .answered])
        try await CallPathTests.expectTone(after, 750, from: "door")
        door.stop()
        await path.stop()
    }

    /// A call that outlives a core restart (issue 16): when the station hangs up, the gateway's
    /// BYE toward the cloud goes over the flow the registration made after the restart — it used
    /// to stay pinned to the dead connection and be dropped ("flow is gone; message not sent").
    @Test func aByeAfterACoreRestartGoesOverTheNewFlow() async throws {
        let scratch = try ScratchDirectory()
        let doorTone = scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 800, seconds: 30, rate: 16000, channels: 1)
        let door = try GatewayPath.legacyStation("door", in: scratch, tone: doorTone)
        let path = try await GatewayPath.start(legacyTargets: ["sip:door@127.0.0.1:\(door.sipPort)"]) { config in
            config.keepaliveSeconds = 2
            config.mediaInactivitySeconds = 0  // the restart must not end the call some other way
        }
        let alice = try await path.startCloudClient("alice", frequency: 1200, seconds: 40)
        try door.start(seconds: 14, command: path.dial(channel: 1))
        try await path.eventually("the call connected", timeout: .seconds(15)) { await path.core.proxy.statistics.callsAnswered == 1 }
        try await path.crashAndRestartCore()
        try await path.eventually("the gateway registered again", timeout: .seconds(20)) { path.logs.count("cloud uplink registered") >= 2 }
        // The station's call ends (baresip hangs up after 14 s): BYE toward the cloud.
        let records = try await path.records(atLeast: 1, timeout: .seconds(30))
        #expect(records.first?.status == .answered && records.first?.reason == "legacy station hung up", "\(String(describing: records.first)); alice: \(alice.output.suffix(1500))")
        #expect(!path.logs.contains("flow is gone; message not sent"), "nothing was dropped for want of a connection")
        #expect(path.logs.contains("call moved to the new flow"), "the call went on over the registration's new flow")
        #expect(await path.gateway.router.busyChannelIndices.isEmpty)
        door.stop()
        alice.stop()
        await path.stop()
    }

    /// The ServiceGroup's order at work: the router ends the call on both legs, the uplink
    /// unregisters, the records reach the disk, and only then do the sockets close — so when
    /// `stop` returns, each of those has already happened.
    @Test func aGracefulStopEndsTheCallOnBothLegsUnregistersAndKeepsTheRecord() async throws {
        let scratch = try ScratchDirectory()
        let doorTone = scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 800, seconds: 40, rate: 16000, channels: 1)
        let door = try GatewayPath.legacyStation("door", in: scratch, tone: doorTone)
        let path = try await GatewayPath.start(legacyTargets: ["sip:door@127.0.0.1:\(door.sipPort)"])
        let alice = try await path.startCloudClient("alice", frequency: 1200, seconds: 40)
        try door.start(seconds: 40, command: path.dial(channel: 1))
        try await path.eventually("the call connected", timeout: .seconds(15)) { await path.core.proxy.statistics.callsAnswered == 1 }
        // The core counts the answer when it relays the 200; the station has it once the gateway bridged the media.
        try await path.eventually("the station's call established", timeout: .seconds(10)) { door.output.contains("Call established") }
        #expect(await !path.core.proxy.contacts(of: "gw1-ch1").isEmpty)

        await path.gateway.stop()
        #expect(await path.core.proxy.contacts(of: "gw1-ch1").isEmpty, "the channel unregistered before the sockets closed")
        let records = try path.gateway.records.all()
        #expect(records.count == 1 && records.first?.reason == "gateway shutting down" && records.first?.status == .answered, "\(records)")
        // libre closes a session that received BYE with ECONNRESET.
        let bye = "session closed: Connection reset by peer"
        try? await path.eventually("both ends got BYE") { door.output.contains(bye) && alice.output.contains(bye) }
        #expect(door.output.contains(bye), "the station got BYE: \(door.output.suffix(1500))")
        #expect(alice.output.contains(bye), "the cloud client got BYE: \(alice.output.suffix(1500))")
        door.stop()
        alice.stop()
        await path.core.shutdown()
    }

    /// Issue 18: a gateway whose clock is 3 minutes behind the cloud's (still within the 5 minutes
    /// certificates are back-dated, so TLS works) says so from the registrar's `Date`, with the fix.
    @Test func aClockBehindTheCloudsIsReportedBeforeTLSFailsOnIt() async throws {
        let path = try await GatewayPath.start(coreClock: { Date().addingTimeInterval(180) })
        try await path.eventually("the clock reported") { path.logs.contains("the system clock is 3 min behind the cloud's") }
        #expect(path.logs.contains("enable NTP"))
        await path.stop()
    }

    @Test func aWrongClaimingCodeIsRefusedAndTheGatewayStaysUp() async throws {
        let path = try await GatewayPath.start(claimCode: "NOT-A-CODE", waitForRegistration: false)
        try await path.eventually("the refusal in the log") { path.logs.contains("claiming refused: the cloud refused the claim (403): unknown claiming code") }
        #expect(try DeviceIdentity.load(from: path.gateway.configuration.stateDirectory) == nil, "no identity stored")
        // The legacy side still answers: a call to a channel is refused cleanly, not dropped.
        let call = try await LegacySipp.runCaller(LegacySipp.call(expecting: 503), number: GatewayPath.number(1), gatewayPort: path.legacyPort, in: path.scratch)
        #expect(call.status == 0, "legacy call while unclaimed gets 503: \(call.output.suffix(1500))")
        #expect(path.logs.contains("the cloud is unreachable"))
        // A reload with a new code claims again (the uplink waited for it) and registers.
        var config = path.gateway.configuration
        config.claimCode = try path.core.directory.createClaimingCode(device: "gw1", lifetime: 600)
        guard case .applied = await path.gateway.apply(config) else { Issue.record("the new claim code was refused"); return }
        try await path.eventually("gw1-ch1 registered after the new code", timeout: .seconds(20)) { await !path.core.proxy.contacts(of: "gw1-ch1").isEmpty }
        await path.stop()
    }

    /// RFC 3263 (issue 19): `server = "cloud.test"` without a port — SRV names a dead server
    /// first and the core second; the gateway claims, tries the first, registers over the second,
    /// checking the core's certificate against the domain (which the core's own names).
    @Test func aServerNamedWithoutAPortIsFoundBySRVAndTheNextTargetTakenWhenOneIsDead() async throws {
        let corePort = try freePort(), deadPort = try freePort()
        let dns = try await Dnsmasq(records: [
            "--srv-host=_sips._tcp.cloud.test,sip-a.cloud.test,\(deadPort),10,10",
            "--srv-host=_sips._tcp.cloud.test,sip-b.cloud.test,\(corePort),20,10",
            "--host-record=sip-a.cloud.test,127.0.0.1", "--host-record=sip-b.cloud.test,127.0.0.1",
        ])
        defer { dns.stop() }
        let path = try await GatewayPath.start(
            configure: { g in
                g.cloudServer = .init(host: "cloud.test", port: 5061)
                g.cloudServerHasPort = false
            },
            coreConfigure: { c in
                c.domain = "cloud.test"
                c.tlsListen = [.init("127.0.0.1:\(corePort)")!]
            },
            resolver: DNSStubResolver(nameServers: [try SocketAddress(ipAddress: "127.0.0.1", port: dns.port)]))
        #expect(path.logs.contains("cloud flow to 127.0.0.1:\(corePort) component=cloud-uplink tried=2 of 2"), "the second target, after the dead first: \(path.logs.text.suffix(2000))")
        #expect(dns.peer.text.contains("query[SRV] _sips._tcp.cloud.test"))
        await path.stop()
    }

    @Test func aCloudCertificateFromAnotherCAIsRefusedAndTheGatewayStaysUp() async throws {
        let path = try await GatewayPath.start()
        await path.gateway.stop()
        // The same claimed gateway, now told to trust another CA than the cloud's.
        let other = try await TestCertificates.make(in: path.scratch, name: "other")
        var config = path.gateway.configuration
        config.cloudCAFile = other.caFile
        let logs = LogCapture()
        let gateway = try await GatewayServer.start(config, group: MultiThreadedEventLoopGroup.singleton, logger: logs.logger)
        try await path.eventually("the TLS refusal in the log") { logs.contains("cloud uplink failed") && logs.text.lowercased().contains("certificate") }
        let call = try await LegacySipp.runCaller(
            LegacySipp.call(expecting: 503), number: GatewayPath.number(1), gatewayPort: gateway.legacyAddress.port!, in: path.scratch)
        #expect(call.status == 0, "legacy call while the cloud is untrusted gets 503: \(call.output.suffix(1500))")
        await gateway.stop()
        await path.core.shutdown()
    }
}
