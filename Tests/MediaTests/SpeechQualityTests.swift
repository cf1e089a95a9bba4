import Foundation
import NIOCore
import PeerTestSupport
import Testing
@testable import Media

/// Test speech: espeak-ng, resampled to 16 kHz mono by sox.
func makeSpeech(in scratch: ScratchDirectory) async throws -> [Int16] {
    let text = "The door station in the north entrance is calling. Please press five to open the door, "
        + "or hang up to ignore the visitor. Deliveries are accepted between eight and six on weekdays."
    try await runCommand("espeak-ng", ["-v", "en-us", "-s", "150", "-w", scratch.path("speech-raw.wav"), text])
    try await runCommand("sox", [scratch.path("speech-raw.wav"), "-r", "16000", "-c", "1", "-b", "16", scratch.path("reference.wav")])
    return try wavSamples(scratch.url.appendingPathComponent("reference.wav"))
}

func writeWAV(_ samples: [Int16], sampleRate: Int, to path: String) throws {
    var bytes: [UInt8] = []
    func u32(_ v: Int) { bytes += withUnsafeBytes(of: UInt32(v).littleEndian, Array.init) }
    func u16(_ v: Int) { bytes += withUnsafeBytes(of: UInt16(v).littleEndian, Array.init) }
    bytes += Array("RIFF".utf8); u32(36 + samples.count * 2); bytes += Array("WAVEfmt ".utf8)
    u32(16); u16(1); u16(1); u32(sampleRate); u32(sampleRate * 2); u16(2); u16(16)
    bytes += Array("data".utf8); u32(samples.count * 2)
    for s in samples { bytes += withUnsafeBytes(of: s.littleEndian, Array.init) }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Wideband PESQ (P.862.2) through scripts/pesq-wb, in the venv scripts/bootstrap made.
func widebandPESQ(reference: String, degraded: String) async throws -> Double {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let python = root.appendingPathComponent(".venv/bin/python").path
    guard FileManager.default.isExecutableFile(atPath: python) else {
        throw PeerError("\(python) is missing: run scripts/bootstrap (it installs pesq from PyPI into .venv)")
    }
    let output = try await runCommand(python, [root.appendingPathComponent("scripts/pesq-wb").path, reference, degraded])
    guard let mos = Double(output.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw PeerError("pesq-wb printed: \(output)") }
    return mos
}

/// Collects what a bridge sends, and forwards one leg's output into another bridge.
final class ChainSink: MediaPacketSink {
    var onPacket: ([UInt8], MediaLegSide) -> Void = { _, _ in }
    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp: Bool) {
        guard !rtcp, RTPDemultiplexer.classify(packet) == .rtp else { return }
        onPacket(Array(packet), leg)
    }
}

@Suite("Speech quality (wideband PESQ)")
struct SpeechQualityTests {
    static let local = try! SocketAddress(ipAddress: "127.0.0.1", port: 4000)

    /// Runs speech from a G.722 phone through `hops` bridges on a simulated clock and decodes it
    /// at a G.722 phone at the end. Each hop is a bridge between two legs with the given codecs.
    static func run(_ speech: [Int16], hops: [(AudioCodecKind, UInt8, AudioCodecKind, UInt8)]) throws -> [Int16] {
        let source = try TestPhone(codec: .g722, payloadType: 9)
        let sink = try TestPhone(codec: .g722, payloadType: 9)
        var bridges: [MediaBridge] = []
        var sinks: [ChainSink] = []
        var now: UInt64 = 1_000_000_000
        var delivered: [[UInt8]] = []
        for hop in hops {
            let chain = ChainSink()
            let a = MediaLegConfiguration(codec: hop.0, payloadType: hop.1, dtmf: .sipInfo, remote: local)
            let b = MediaLegConfiguration(codec: hop.2, payloadType: hop.3, dtmf: .sipInfo, remote: local)
            bridges.append(try MediaBridge(a: a, b: b, sink: chain, now: now))
            sinks.append(chain)
        }
        for (index, chain) in sinks.enumerated() {
            chain.onPacket = { packet, leg in
                guard leg == .b else { return }
                if index + 1 < bridges.count {
                    var buffer = packet + [UInt8](repeating: 0, count: SRTPSession.maxTrailer)
                    buffer.withUnsafeMutableBytes { bridges[index + 1].receive($0, length: packet.count, from: local, on: .a, now: now) }
                } else {
                    delivered.append(packet)
                }
            }
        }
        // Half a second of silence after the speech flushes every buffer.
        for packet in try source.audioPackets(speech + [Int16](repeating: 0, count: 8000)) {
            var buffer = packet + [UInt8](repeating: 0, count: SRTPSession.maxTrailer)
            buffer.withUnsafeMutableBytes { bridges[0].receive($0, length: packet.count, from: local, on: .a, now: now) }
            now += 20_000_000
            for bridge in bridges { bridge.tick(now: now) }
        }
        return Array(try sink.receive(delivered).pcm.prefix(speech.count))
    }

    @Test("G.722 passthrough and G.722 → Opus → G.722 keep wideband speech quality")
    func pesq() async throws {
        let scratch = try ScratchDirectory()
        let speech = try await makeSpeech(in: scratch)
        #expect(speech.count > 16000 * 5, "espeak-ng made \(speech.count) samples")

        let passthrough = try Self.run(speech, hops: [(.g722, 9, .g722, 9)])
        try writeWAV(passthrough, sampleRate: 16000, to: scratch.path("passthrough.wav"))
        let viaOpus = try Self.run(speech, hops: [(.g722, 9, .opus, 111), (.opus, 111, .g722, 9)])
        try writeWAV(viaOpus, sampleRate: 16000, to: scratch.path("via-opus.wav"))

        // The baseline: G.722 itself, encoded and decoded once without any bridge.
        let codecOnly = try codecRoundTrip(speech, encoder: try AudioCodecKind.g722.makeEncoder(), decoder: try AudioCodecKind.g722.makeDecoder())
        try writeWAV(codecOnly, sampleRate: 16000, to: scratch.path("codec-only.wav"))

        let reference = scratch.path("reference.wav")
        let mosCodec = try await widebandPESQ(reference: reference, degraded: scratch.path("codec-only.wav"))
        let mosPassthrough = try await widebandPESQ(reference: reference, degraded: scratch.path("passthrough.wav"))
        let mosOpus = try await widebandPESQ(reference: reference, degraded: scratch.path("via-opus.wav"))
        print("PESQ-WB MOS-LQO: G.722 codec alone \(mosCodec), G.722 passthrough \(mosPassthrough), G.722→Opus→G.722 \(mosOpus)")
        // Passthrough adds nothing to the codec; the Opus hop costs some, within what the
        // same chain made of ffmpeg's encoders scores on this speech (2.66, docs/PERFORMANCE.md).
        #expect(abs(mosPassthrough - mosCodec) < 0.05)
        #expect(mosCodec > 2.8)
        #expect(mosOpus > 2.3 && mosOpus < mosPassthrough)
    }
}
