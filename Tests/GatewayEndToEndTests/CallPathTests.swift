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
        let pcm = try await phone.decodedAudio()
        #expect(pcm.count >= 16000 * 3, "\(phone.name) decoded at least 3 s from \(peer): \(pcm.count) samples", sourceLocation: sourceLocation)
        let middle = pcm.dropFirst(16000).prefix(16000 * 2)
        let measured = ToneMeasurement.frequency(middle, sampleRate: 16000)
        #expect(abs(measured - frequency) < 15, "\(phone.name) hears \(peer)'s \(Int(frequency)) Hz tone: \(measured) Hz", sourceLocation: sourceLocation)
        #expect(ToneMeasurement.level(middle) > -20, "\(phone.name) hears it loud enough: \(ToneMeasurement.level(middle)) dBFS", sourceLocation: sourceLocation)
    }

    @Test func aLegacyStationCallsItsChannelAndTalksWithAnOpusClientDigitsBothWays() async throws {
        let path = try await GatewayPath.start()
        let doorTone = path.scratch.path("door.wav"), aliceTone = path.scratch.path("alice.wav")
        try await Baresip.tone(doorTone, frequency: 800, seconds: 14, rate: 16000, channels: 1)
        try await Baresip.tone(aliceTone, frequency: 1200, seconds: 14, rate: 48000, channels: 2)
        let alice = try path.cloudClient("alice", tone: aliceTone)
        try alice.start(seconds: 30)
        try await path.eventually("alice registered") { await !path.core.proxy.contacts(of: "alice").isEmpty }

        let door = try GatewayPath.legacyStation("door", in: path.scratch, tone: doorTone)
        try door.start(seconds: 10, command: "/dial sip:\(GatewayPath.number(1))@127.0.0.1:\(path.legacyPort)")
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
        await path.stop()
    }
}
