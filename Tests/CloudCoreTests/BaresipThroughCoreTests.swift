import CloudCore
import Foundation
import PeerTestSupport
import Testing

/// Two baresip softphones (TLS, SDES-SRTP, Opus) register with digest and call each other
/// through the core; the core only routes signalling, so the tone one sends must arrive at the
/// other end intact.
@Suite("baresip through the core", .serialized)
struct BaresipThroughCoreTests {
    /// A softphone of the directory: TLS to the core with digest, SDES-SRTP mandatory, Opus.
    static func phone(_ user: String, core: CoreHarness, tone: String) throws -> Baresip {
        try Baresip(
            user, in: core.scratch, modules: ["opus.so", "srtp.so"],
            account: "<sip:\(user)@symphony.local;transport=tls>;auth_pass=\(user)-pw;outbound=\"sip:127.0.0.1:\(core.port(.tls));transport=tls\";regint=300;mediaenc=srtp-mand;audio_codecs=opus/48000/2;answermode=auto",
            tone: tone, caFile: core.server.configuration.resolvedCACertificateFile, rtpPorts: 31000...31999)
    }

    @Test func twoSoftphonesCallEachOtherOverTLSWithSRTPAndOpus() async throws {
        let core = try await CoreHarness.start()
        let tone = core.scratch.path("tone.wav")
        try await Baresip.tone(tone, frequency: 1000, seconds: 8, rate: 48000, channels: 2)
        let bob = try Self.phone("bob", core: core, tone: tone)
        let alice = try Self.phone("alice", core: core, tone: tone)
        try bob.start(seconds: 16)
        try await core.eventually("bob registered") { await !core.server.proxy.contacts(of: "bob").isEmpty }
        try alice.start(seconds: 7, command: "/dial sip:bob@symphony.local")
        try await core.eventually("answered", timeout: .seconds(10)) { await core.server.proxy.statistics.callsAnswered == 1 }
        _ = try await alice.process?.wait(timeout: .seconds(20))
        bob.stop()

        for (phone, peer) in [(bob, "alice"), (alice, "bob")] {
            let pcm = try await phone.decodedAudio()
            #expect(pcm.count >= 16000 * 3, "\(phone.name) decoded at least 3 s from \(peer)")
            let middle = pcm.dropFirst(16000).prefix(16000 * 2)
            let frequency = ToneMeasurement.frequency(middle, sampleRate: 16000)
            #expect(abs(frequency - 1000) < 10, "\(phone.name) hears \(peer)'s 1 kHz tone: \(frequency) Hz")
            #expect(ToneMeasurement.level(middle) > -15, "\(phone.name) hears it loud: \(ToneMeasurement.level(middle)) dBFS")
        }
        let records = try await core.records()
        #expect(records.map(\.status) == [.answered] && records.first?.caller == "alice" && records.first?.answeredBy == "bob")
        await core.stop()
    }
}
