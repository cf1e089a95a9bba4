import CloudCore
import Foundation
import PeerTestSupport
import Testing

/// Two baresip softphones (TLS, SDES-SRTP, Opus) register with digest and call each other
/// through the core; the core only routes signalling, so the tone one sends must arrive at the
/// other end intact.
@Suite("baresip through the core", .serialized)
struct BaresipThroughCoreTests {
    /// One baresip with its own config directory, playing a 1 kHz tone into every call and
    /// dumping what it decodes (module sndfile).
    final class Phone: @unchecked Sendable {
        let user: String
        let directory: String
        var process: PeerProcess?

        init(_ user: String, core: CoreHarness, tone: String) throws {
            self.user = user
            directory = core.scratch.path("baresip-\(user)")
            try FileManager.default.createDirectory(atPath: directory + "/snd", withIntermediateDirectories: true)
            try """
                poll_method epoll
                sip_listen 127.0.0.1:\(try freePort())
                sip_cafile \(core.server.configuration.resolvedCACertificateFile)
                module_path /usr/lib/baresip/modules
                module opus.so
                module srtp.so
                module aufile.so
                module sndfile.so
                module_app account.so
                module_app menu.so
                audio_source aufile,\(tone)
                audio_player aufile,/dev/null
                snd_path \(directory)/snd
                rtp_ports 31000-31999

                """.write(toFile: directory + "/config", atomically: true, encoding: .utf8)
            try """
                <sip:\(user)@symphony.local;transport=tls>;auth_pass=\(user)-pw;outbound="sip:127.0.0.1:\(core.port(.tls));transport=tls";regint=300;mediaenc=srtp-mand;audio_codecs=opus/48000/2;answermode=auto

                """.write(toFile: directory + "/accounts", atomically: true, encoding: .utf8)
        }

        func start(seconds: Int, command: String? = nil) throws {
            var arguments = ["-f", directory, "-t", String(seconds)]
            if let command { arguments += ["-e", command] }
            process = try PeerProcess("baresip", arguments, directory: URL(fileURLWithPath: directory))
        }

        /// What this phone decoded, as 16 kHz mono (sox makes it from the stereo 48 kHz dump).
        func decodedAudio() async throws -> [Int16] {
            let dumps = try FileManager.default.contentsOfDirectory(atPath: directory + "/snd").filter { $0.hasSuffix("-dec.wav") }
            guard let dump = dumps.first else { throw PeerError("\(user): no decoded audio dump; output:\n\(process?.text.suffix(2000) ?? "")") }
            let mono = directory + "/received.wav"
            _ = try await runCommand("sox", [directory + "/snd/" + dump, "-c", "1", "-r", "16000", mono, "remix", "1"])
            return try wavSamples(URL(fileURLWithPath: mono))
        }
    }

    @Test func twoSoftphonesCallEachOtherOverTLSWithSRTPAndOpus() async throws {
        let core = try await CoreHarness.start()
        let tone = core.scratch.path("tone.wav")
        _ = try await runCommand("sox", ["-n", "-r", "48000", "-c", "2", "-b", "16", tone, "synth", "8", "sine", "1000", "vol", "0.5"])
        let bob = try Phone("bob", core: core, tone: tone)
        let alice = try Phone("alice", core: core, tone: tone)
        try bob.start(seconds: 16)
        try await core.eventually("bob registered") { await !core.server.proxy.contacts(of: "bob").isEmpty }
        try alice.start(seconds: 7, command: "/dial sip:bob@symphony.local")
        try await core.eventually("answered", timeout: .seconds(10)) { await core.server.proxy.statistics.callsAnswered == 1 }
        _ = try await alice.process?.wait(timeout: .seconds(20))
        bob.process?.stop()

        for (phone, peer) in [(bob, "alice"), (alice, "bob")] {
            let pcm = try await phone.decodedAudio()
            #expect(pcm.count >= 16000 * 3, "\(phone.user) decoded at least 3 s from \(peer)")
            let middle = pcm.dropFirst(16000).prefix(16000 * 2)
            let frequency = ToneMeasurement.frequency(middle, sampleRate: 16000)
            #expect(abs(frequency - 1000) < 10, "\(phone.user) hears \(peer)'s 1 kHz tone: \(frequency) Hz")
            #expect(ToneMeasurement.level(middle) > -15, "\(phone.user) hears it loud: \(ToneMeasurement.level(middle)) dBFS")
        }
        let records = try await core.records()
        #expect(records.map(\.status) == [.answered] && records.first?.caller == "alice" && records.first?.answeredBy == "bob")
        await core.stop()
    }
}
