import CloudCore
import Foundation
import Gateway
import PeerTestSupport
import Testing

/// Calls through the whole path with real peers: baresip as the legacy station (UDP, G.722) and
/// baresip as the cloud client (TLS, SDES-SRTP, Opus or G.722), the gateway and the core between.
/// Each receiving end must hear the other's tone; door-opener digits must arrive both ways.
@Suite("Gateway call path", .serialized)
struct CallPathTests {
    static func expectTone(_ phone: Baresip, _ frequency: Double, from peer: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        expectToneIn(try await phone.decodedAudio(), frequency, heardBy: phone.name, from: peer, sourceLocation: sourceLocation)
    }

    /// At least 3 s decoded (16 kHz mono), and seconds 1–3 hold `frequency` at a good level.
    static func expectToneIn(_ pcm: [Int16], _ frequency: Double, heardBy name: String, from peer: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(pcm.count >= 16000 * 3, "\(name) decoded at least 3 s from \(peer): \(pcm.count) samples", sourceLocation: sourceLocation)
        let middle = pcm.dropFirst(16000).prefix(16000 * 2)
        let measured = ToneMeasurement.frequency(middle, sampleRate: 16000)
        #expect(abs(measured - frequency) < 15, "\(name) hears \(peer)'s \(Int(frequency)) Hz tone: \(measured) Hz", sourceLocation: sourceLocation)
        #expect(ToneMeasurement.level(middle) > -20, "\(name) hears it loud enough: \(ToneMeasurement.level(middle)) dBFS", sourceLocation: sourceLocation)
    }

    @Test func aLegacyStationCallsItsChannelAndTalksWithAnOpusClientDigitsBothWays() async throws {
        // Every level logged: not one of them may hold a door digit or an SRTP key.
        let path = try await GatewayPath.start(logLevel: .trace)
        let doorTone = path.scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 800, seconds: 14, rate: 16000, channels: 1)
        let alice = try await path.startCloudClient("alice", frequency: 1200, seconds: 20)

        let door = try GatewayPath.legacyStation("door", in: path.scratch, tone: doorTone)
        try door.start(seconds: 10, command: path.dial(channel: 1))
        try await path.eventually("the call connected") { await path.core.proxy.statistics.callsAnswered == 1 }
        try await Task.sleep(for: .seconds(2))
        // Door openers: the client's digit reaches the station, the station's the client.
        try await alice.command("sndcode", "5")
        try await path.eventually("the station heard digit 5") { door.output.contains("received event: '5'") }
        try await door.command("sndcode", "7")
        try await path.eventually("the client heard digit 7") { alice.output.contains("received event: '7'") }

        _ = try await door.process?.wait(timeout: .seconds(20))
        let records = try await path.records(atLeast: 1)
        alice.stop()
        try await Self.expectTone(door, 1200, from: "alice")
        try await Self.expectTone(alice, 800, from: "door")
        #expect(records.count == 1)
        let record = try #require(records.first)
        #expect(record.direction == .legacyToCloud && record.channel == 1 && record.peer == "alice" && record.status == .answered)
        #expect(record.codec == "g722/opus", "transcoded between G.722 and Opus: \(record.codec ?? "-")")
        #expect(record.reason == "legacy station hung up")
        let logged = path.logs.text
        #expect(logged.contains("door-opener digit"))
        for secret in ["inline:", "a=crypto", "digit 5", "digit 7", "Signal="] {
            #expect(!logged.contains(secret), "\(secret) in the gateway's log (trace level)")
        }
        await path.stop()
    }

    @Test func aG722ClientRingsTwoStationsTheFirstAnswersWithPassthroughAndTheOtherIsCancelled() async throws {
        let scratch = try ScratchDirectory()
        let doorTone = scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 700, seconds: 14, rate: 16000, channels: 1)
        let answering = try GatewayPath.legacyStation("door-a", in: scratch, tone: doorTone)
        let ringing = try GatewayPath.legacyStation("door-b", in: scratch, tone: doorTone, answer: false)
        let path = try await GatewayPath.start(legacyTargets: [
            "sip:door-b@127.0.0.1:\(ringing.sipPort)", "sip:door-a@127.0.0.1:\(answering.sipPort)",
        ])
        try answering.start(seconds: 30)
        try ringing.start(seconds: 30)
        try await answering.waitUntilReady()
        try await ringing.waitUntilReady()
        let aliceTone = path.scratch.path("alice.wav")
        try await Baresip.tone(aliceTone, frequency: 1100, seconds: 14, rate: 16000, channels: 1)
        let alice = try path.cloudClient("alice", codec: "G722/16000/1", tone: aliceTone)
        try alice.start(seconds: 9, command: "/dial sip:gw1-ch1@\(path.coreConfiguration.domain)")
        try await path.eventually("the call connected", timeout: .seconds(15)) { await path.core.proxy.statistics.callsAnswered == 1 }
        // The station that did not answer was cancelled with the reason why.
        try await path.eventually("door-b's ringing stopped") { ringing.output.contains("Incoming call") && ringing.output.contains("session closed") }
        try await Task.sleep(for: .seconds(2))
        try await alice.command("sndcode", "3")
        try await path.eventually("door-a heard digit 3") { answering.output.contains("received event: '3'") }

        _ = try await alice.process?.wait(timeout: .seconds(20))
        let records = try await path.records(atLeast: 1)
        answering.stop()
        ringing.stop()
        try await Self.expectTone(answering, 1100, from: "alice")
        try await Self.expectTone(alice, 700, from: "door-a")
        let record = try #require(records.first)
        #expect(record.direction == .cloudToLegacy && record.status == .answered && record.codec == "g722", "passthrough: \(record)")
        #expect(record.peer.contains("door-a") && record.reason == "cloud party hung up", "\(record)")
        #expect(!ringing.output.contains("Call established"))
        await path.stop()
    }

    @Test func aStationWithoutTelephoneEventGetsTheDoorDigitAsSIPInfo() async throws {
        let scratch = try ScratchDirectory()
        let stationPort = try freePort(udp: true)
        let station = try LegacySipp.startStation(LegacySipp.infoOnlyStation(digit: "9"), port: stationPort, in: scratch)
        let path = try await GatewayPath.start(legacyTargets: ["sip:door@127.0.0.1:\(stationPort)"])
        let alice = try await path.startCloudClient("alice", frequency: 1000, seconds: 6, command: "/dial sip:gw1-ch1@\(path.coreConfiguration.domain)")
        try await path.eventually("the call connected", timeout: .seconds(15)) { await path.core.proxy.statistics.callsAnswered == 1 }
        try await Task.sleep(for: .seconds(1))
        try await alice.command("sndcode", "9")
        let status = try await station.wait(timeout: .seconds(30))
        #expect(status == 0, "the station got INFO Signal=9 and the BYE: \(station.text.suffix(2000))")
        try await path.eventually("the digit was reported, without its value") { path.logs.contains("door-opener digit cloud → legacy") }
        #expect(!path.logs.text.contains("Signal=9") && !path.logs.text.contains("digit 9"), "no digit in the log")
        await path.stop()
    }

    /// The call policy end to end (issue 17): a user of another company calling a channel hears
    /// what an unknown name gets, and the station never rings (so no door digit can reach it); a
    /// user of the company gets through.
    @Test func aUserOfAnotherCompanyCannotCallAChannel() async throws {
        let scratch = try ScratchDirectory()
        let tone = scratch.path("door.wav")
        try await Baresip.tone(tone, frequency: 900, seconds: 30, rate: 16000, channels: 1)
        let door = try GatewayPath.legacyStation("door", in: scratch, tone: tone)
        let path = try await GatewayPath.start(legacyTargets: ["sip:door@127.0.0.1:\(door.sipPort)"])
        try door.start(seconds: 40)
        try await door.waitUntilReady()
        let directory = path.core.directory
        try directory.createCompany("globex")
        try directory.createProject("main", company: "globex")
        try directory.createSite("tower", company: "globex", project: "main")
        try directory.createUser("mallory", site: "tower", password: "mallory-pw")
        let mallory = try await path.startCloudClient("mallory", frequency: 1000, seconds: 30)
        let domain = path.coreConfiguration.domain
        try await mallory.command("dial", "sip:gw1-ch1@\(domain)")
        try await path.eventually("mallory's call to the channel refused") { mallory.output.components(separatedBy: "404 Not Found").count >= 2 }
        try await mallory.command("hangup")
        try await mallory.command("dial", "sip:nosuch-ch9@\(domain)")
        try await path.eventually("mallory's call to an unknown name refused") { mallory.output.components(separatedBy: "404 Not Found").count >= 3 }
        try await Task.sleep(for: .seconds(1))
        #expect(!door.output.contains("Incoming call"), "the station never rang:\n\(door.output.suffix(1500))")
        #expect(try path.gateway.records.all().isEmpty, "the gateway never saw the call")
        #expect(await path.core.proxy.statistics.forbidden >= 1)

        // The control: a user of the company reaches the station.
        let alice = try await path.startCloudClient("alice", frequency: 1100, seconds: 20)
        try await alice.command("dial", "sip:gw1-ch1@\(domain)")
        try await path.eventually("alice's call rang the station") { door.output.contains("Incoming call") || door.output.contains("Call established") }
        for phone in [mallory, alice, door] { phone.stop() }
        await path.stop()
    }

    @Test func aBusyChannelGets486AnUnknownNumber404AndACallerWhoGivesUpACancelledRecord() async throws {
        // A status broker that is not there never stops a call.
        let deadBroker = try freePort()
        let path = try await GatewayPath.start(channels: [
            GatewayPath.channel(1, to: "alice", ringing: []), GatewayPath.channel(2, to: "bob", ringing: []),
        ]) { config in
            config.mqtt.host = "127.0.0.1"
            config.mqtt.port = deadBroker
        }
        let tone = path.scratch.path("tone.wav")
        try await Baresip.tone(tone, frequency: 900, seconds: 10, rate: 48000, channels: 2)
        let doorTone = path.scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 900, seconds: 10, rate: 16000, channels: 1)
        let alice = try path.cloudClient("alice", tone: tone)
        let bob = try path.cloudClient("bob", tone: tone, answer: false)
        try alice.start(seconds: 40)
        try bob.start(seconds: 40)
        try await path.eventually("alice and bob registered") {
            let alice = await path.core.proxy.contacts(of: "alice"), bob = await path.core.proxy.contacts(of: "bob")
            return !alice.isEmpty && !bob.isEmpty
        }
        let door = try GatewayPath.legacyStation("door", in: path.scratch, tone: doorTone)
        try door.start(seconds: 40, command: "/dial sip:\(GatewayPath.number(1))@127.0.0.1:\(path.legacyPort)")
        try await path.eventually("channel 1 connected") { await path.core.proxy.statistics.callsAnswered == 1 }

        let busy = try await LegacySipp.runCaller(LegacySipp.call(expecting: 486), number: GatewayPath.number(1), gatewayPort: path.legacyPort, in: path.scratch)
        #expect(busy.status == 0, "a second call to a busy channel gets 486: \(busy.output.suffix(1500))")
        let unknown = try await LegacySipp.runCaller(LegacySipp.call(expecting: 404), number: "999", gatewayPort: path.legacyPort, in: path.scratch)
        #expect(unknown.status == 0, "an unknown number gets 404: \(unknown.output.suffix(1500))")
        #expect(path.logs.contains("no channel has the number \"999\""))
        #expect(path.logs.contains("channel 1 is busy"))

        // Another station calls channel 2 (bob answers by hand, so it rings) and gives up.
        let lobby = try GatewayPath.legacyStation("lobby", in: path.scratch, tone: doorTone)
        try lobby.start(seconds: 40, command: "/dial sip:\(GatewayPath.number(2))@127.0.0.1:\(path.legacyPort)")
        try await path.eventually("bob rings") { bob.output.contains("Incoming call") }
        try await lobby.command("hangup")
        try await path.eventually("bob stopped ringing") { bob.output.contains("session closed") }
        try await door.command("hangup")
        let records = try await path.records(atLeast: 3)
        let byChannel = Dictionary(grouping: records, by: \.channel)
        // The refused second call is in the history too.
        #expect(byChannel[1]?.map(\.status) == [.answered, .busy], "\(records)")
        #expect(byChannel[2]?.map(\.status) == [.cancelled] && byChannel[2]?.first?.answeredAt == nil, "\(records)")
        for phone in [alice, bob, door, lobby] { phone.stop() }
        await path.stop()
    }

    @Test func aCallEndsAtTheChannelsDurationLimitWithByeOnBothLegs() async throws {
        let path = try await GatewayPath.start(channels: [GatewayPath.channel(1, to: "alice", ringing: [], maxCallSeconds: 10)])
        let doorTone = path.scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 900, seconds: 20, rate: 16000, channels: 1)
        let alice = try await path.startCloudClient("alice", frequency: 900, seconds: 30)
        let door = try GatewayPath.legacyStation("door", in: path.scratch, tone: doorTone)
        try door.start(seconds: 40, command: path.dial(channel: 1))
        let records = try await path.records(atLeast: 1, timeout: .seconds(25))
        let record = try #require(records.first)
        #expect(record.reason == "duration limit" && record.status == .answered)
        let duration = (record.endedAt ?? 0) - (record.answeredAt ?? 0)
        #expect(abs(duration - 10) < 1.5, "the call lasted \(duration) s")
        // Both peers were told: each saw its call closed by the other side.
        try await path.eventually("both legs got BYE") {
            door.output.contains("session closed") && alice.output.contains("session closed")
        }
        alice.stop()
        door.stop()
        await path.stop()
    }

    @Test func aStationWithOnlyG711IsTranscodedToOpus() async throws {
        let path = try await GatewayPath.start()
        let doorTone = path.scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 600, seconds: 10, rate: 8000, channels: 1)
        let alice = try await path.startCloudClient("alice", frequency: 1000, seconds: 20)
        let door = try GatewayPath.legacyStation("door", in: path.scratch, tone: doorTone, codec: "PCMA/8000/1")
        try door.start(seconds: 7, command: path.dial(channel: 1))
        _ = try await door.process?.wait(timeout: .seconds(20))
        let records = try await path.records(atLeast: 1)
        alice.stop()
        #expect(records.first?.codec == "pcma/opus", "G.711 is all the station has: \(records)")
        try await Self.expectTone(door, 1000, from: "alice")
        try await Self.expectTone(alice, 600, from: "door")
        await path.stop()
    }

    /// The product rule (issue 15): the highest bandwidth both *end parties* have. A G.722 station
    /// and a client that takes Opus (its first choice) and G.722 meet on G.722, passed through
    /// without transcoding, whoever calls: the gateway offers the station's codec first to the
    /// client, and answers the client with the codec the station took.
    @Test(arguments: [true, false])
    func endPartiesMeetOnTheBestCodecTheyShare(stationCalls: Bool) async throws {
        let scratch = try ScratchDirectory()
        let doorTone = scratch.path("door.wav"), aliceTone = scratch.path("alice.wav")
        try await Baresip.tone(doorTone, frequency: 700, seconds: 14, rate: 16000, channels: 1)
        // G.722 is what the call should carry: the client's tone is made for it.
        try await Baresip.tone(aliceTone, frequency: 1100, seconds: 14, rate: 16000, channels: 1)
        let door = try GatewayPath.legacyStation("door", in: scratch, tone: doorTone)
        let path = try await GatewayPath.start(legacyTargets: ["sip:door@127.0.0.1:\(door.sipPort)"])
        let alice = try path.cloudClient("alice", codec: "opus/48000/2,G722/16000/1", tone: aliceTone)
        if stationCalls {
            try alice.start(seconds: 20)
            try await path.eventually("alice registered") { await !path.core.proxy.contacts(of: "alice").isEmpty }
            try door.start(seconds: 8, command: path.dial(channel: 1))
        } else {
            try door.start(seconds: 20)
            try await door.waitUntilReady()
            try alice.start(seconds: 8, command: "/dial sip:gw1-ch1@\(path.coreConfiguration.domain)")
        }
        _ = try await (stationCalls ? door : alice).process?.wait(timeout: .seconds(20))
        let records = try await path.records(atLeast: 1)
        door.stop()
        alice.stop()
        #expect(records.first?.codec == "g722", "G.722 end to end, passed through: \(records)")
        try await Self.expectTone(door, 1100, from: "alice")
        try await Self.expectTone(alice, 700, from: "door")
        await path.stop()
    }

    /// Who calls, seen at each end: the client sees the channel's name and the station's number
    /// ("Lobby door (door)"), the station sees the name the directory has for the client (the
    /// core asserts it, RFC 3325), not what the client put in its From.
    @Test func eachEndSeesWhoCalls() async throws {
        let scratch = try ScratchDirectory()
        let tone = scratch.path("tone.wav")
        try await Baresip.tone(tone, frequency: 900, seconds: 10, rate: 16000, channels: 1)
        let door = try Baresip(
            "door", in: scratch, modules: ["g722.so"], account: "\"Door 1\" <sip:door@127.0.0.1>;regint=0;audio_codecs=G722/16000/1;answermode=manual",
            tone: tone, rtpPorts: 33000...33999)
        var channel = GatewayPath.channel(1, to: "alice", ringing: ["sip:door@127.0.0.1:\(door.sipPort)"])
        channel.displayName = "Lobby door"
        let path = try await GatewayPath.start(channels: [channel])
        // Both answer by hand: baresip prints the caller's display name only for a call it rings.
        let alice = try path.cloudClient("alice", codec: "G722/16000/1", tone: tone, answer: false)
        try alice.start(seconds: 30)
        try await path.eventually("alice registered") { await !path.core.proxy.contacts(of: "alice").isEmpty }
        try door.start(seconds: 30, command: path.dial(channel: 1))
        try await path.eventually("alice saw the door's name and number") { alice.output.contains("Incoming call from: Lobby door (door) ") }
        try await door.command("hangup")
        try await path.eventually("the first call ended") { await path.gateway.router.busyChannelIndices.isEmpty }
        // The other way: alice calls the channel; the station sees the directory's name for her.
        try await alice.command("dial", "sip:gw1-ch1@\(path.coreConfiguration.domain)")
        try await path.eventually("the station saw the asserted name") { door.output.contains("Incoming call from: Alice Example ") }
        try await alice.command("hangup")
        _ = try await path.records(atLeast: 2)
        door.stop()
        alice.stop()
        await path.stop()
    }

    /// `make run`'s demo calls: the built `symphony-bridge demo` (built-in station and client)
    /// through a gateway and core, both ways, with its own tone checks.
    @Test func theBuiltInDemoPhonesCallEachOtherThroughThePath() async throws {
        let stationPort = try freePort(udp: true)
        let path = try await GatewayPath.start(channels: [
            GatewayPath.channel(1, to: "bob", ringing: ["sip:door@127.0.0.1:\(stationPort)"]),
        ])
        let demo = try PeerProcess(try builtExecutable("symphony-bridge"), [
            "demo", "--gateway", "127.0.0.1:\(path.legacyPort)", "--core", "127.0.0.1:\(path.coreTLSPort)", "--ca", path.coreCAFile,
            "--domain", path.coreConfiguration.domain, "--user", "bob", "--password", "bob-pw", "--station", "127.0.0.1:\(stationPort)",
            "--number", GatewayPath.number(1), "--channel", "gw1-ch1", "--seconds", "2",
        ])
        let status = try await demo.wait(timeout: .seconds(40))
        #expect(status == 0, "the demo calls carried audio both ways:\n\(demo.text)")
        #expect(demo.text.components(separatedBy: "  ok").count - 1 == 4, "four tone checks passed:\n\(demo.text)")
        let records = try await path.records(atLeast: 2)
        #expect(Set(records.map(\.direction)) == [.legacyToCloud, .cloudToLegacy] && records.allSatisfy { $0.status == .answered })
        await path.stop()
    }

    @Test func aTrunkOverTCPCarriesCallsBothWays() async throws {
        let scratch = try ScratchDirectory()
        let doorTone = scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 650, seconds: 20, rate: 16000, channels: 1)
        let door = try GatewayPath.legacyStation("door", in: scratch, tone: doorTone)
        let path = try await GatewayPath.start(legacyTargets: ["sip:door@127.0.0.1:\(door.sipPort);transport=tcp"]) { config in
            config.legacyTransport = .tcp
        }
        let alice = try await path.startCloudClient("alice", frequency: 1300, seconds: 20)
        // The station calls its channel over TCP; then alice calls the channel and the gateway
        // reaches the station over TCP.
        try door.start(seconds: 30, command: path.dial(channel: 1, transport: "tcp"))
        try await path.eventually("the station's call connected") { await path.core.proxy.statistics.callsAnswered == 1 }
        try await Task.sleep(for: .seconds(4))
        try await door.command("hangup")
        _ = try await path.records(atLeast: 1)
        try await alice.command("dial", "sip:gw1-ch1@\(path.coreConfiguration.domain)")
        try await path.eventually("alice's call connected") { await path.core.proxy.statistics.callsAnswered == 2 }
        try await Task.sleep(for: .seconds(4))
        try await alice.command("hangup")
        let records = try await path.records(atLeast: 2)
        #expect(records.map(\.direction) == [.legacyToCloud, .cloudToLegacy] && records.allSatisfy { $0.status == .answered }, "\(records)")
        door.stop()
        alice.stop()
        try await Self.expectTone(door, 1300, from: "alice")
        try await Self.expectTone(alice, 650, from: "door")
        await path.stop()
    }
}
