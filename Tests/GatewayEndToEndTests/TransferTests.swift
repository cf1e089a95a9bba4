import Foundation
import Gateway
import PeerTestSupport
import Testing

/// Blind transfer from the cloud leg (REFER, RFC 3515) with baresip as the cloud clients: the
/// station that called alice ends up talking with bob; a Refer-To outside the cloud's domain is
/// refused and the call goes on.
@Suite("Gateway transfer", .serialized)
struct TransferTests {
    @Test func aCloudClientTransfersTheStationToAnotherUser() async throws {
        let path = try await GatewayPath.start()
        let doorTone = path.scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 700, seconds: 30, rate: 16000, channels: 1)
        let alice = try await path.startCloudClient("alice", frequency: 1200, seconds: 30, codec: "G722/16000/1")
        let bob = try await path.startCloudClient("bob", frequency: 1500, seconds: 30, codec: "G722/16000/1")
        let door = try GatewayPath.legacyStation("door", in: path.scratch, tone: doorTone)
        try door.start(seconds: 16, command: path.dial(channel: 1))
        try await path.eventually("the call connected", timeout: .seconds(15)) { await path.core.proxy.statistics.callsAnswered == 1 }
        try await Task.sleep(for: .seconds(1))
        try await alice.command("transfer", "sip:bob@\(path.coreConfiguration.domain)")
        try await path.eventually("bob answered the transferred call", timeout: .seconds(15)) { path.logs.contains("transferred to bob") }
        try await path.eventually("alice's leg ended") { alice.output.contains("terminated") || alice.output.contains("Call transfered") }
        _ = try await door.process?.wait(timeout: .seconds(30))
        let records = try await path.records(atLeast: 1)
        alice.stop()
        bob.stop()
        // The station hears bob at the end (it was alice before the transfer).
        let pcm = try await door.decodedAudio()
        let tail = pcm.suffix(16000 * 3).prefix(16000 * 2)
        let measured = ToneMeasurement.frequency(tail, sampleRate: 16000)
        #expect(abs(measured - 1500) < 15, "the station hears bob's 1500 Hz tone at the end: \(measured) Hz")
        let bobHeard = try await bob.decodedAudio()
        #expect(abs(ToneMeasurement.frequency(bobHeard.suffix(16000 * 2), sampleRate: 16000) - 700) < 15, "bob hears the station")
        #expect(records.count == 1 && records.first?.status == .answered && records.first?.peer == "alice → bob", "\(records)")
        await path.stop()
    }

    /// baresip 1.0 hangs up itself when its transfer is refused; what matters here is that the
    /// gateway refused (403, nothing accepted and dropped) and called nobody.
    @Test func aReferToAnotherDomainIsRefusedWith403AndNobodyIsCalled() async throws {
        let path = try await GatewayPath.start()
        let doorTone = path.scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 700, seconds: 20, rate: 16000, channels: 1)
        let alice = try await path.startCloudClient("alice", frequency: 1200, seconds: 20, codec: "G722/16000/1")
        let door = try GatewayPath.legacyStation("door", in: path.scratch, tone: doorTone)
        try door.start(seconds: 10, command: path.dial(channel: 1))
        try await path.eventually("the call connected", timeout: .seconds(15)) { await path.core.proxy.statistics.callsAnswered == 1 }
        try await alice.command("transfer", "sip:mallory@evil.example")
        try await path.eventually("the REFER was refused") { path.logs.contains("REFER refused") }
        try await path.eventually("alice saw the 403") { alice.output.contains("403") }
        _ = try await path.records(atLeast: 1)
        #expect(await path.core.proxy.statistics.callsRouted == 1, "no call to the Refer-To")
        #expect(!path.logs.contains("transfer to"), "no transfer was started")
        door.stop()
        alice.stop()
        await path.stop()
    }
}
