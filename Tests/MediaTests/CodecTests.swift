import Testing
@testable import Media

/// Runs PCM through an encoder and a decoder, 20 ms at a time, as the bridge does.
func codecRoundTrip(_ pcm: [Int16], encoder: any AudioEncoder, decoder: any AudioDecoder, lose: (Int) -> Bool = { _ in false }) throws -> [Int16] {
    let frame = encoder.sampleRate / 50
    var out: [Int16] = []
    var payload = [UInt8](repeating: 0, count: 1500)
    var decoded = [Int16](repeating: 0, count: decoder.sampleRate / 50 * 3)
    var index = 0
    for start in stride(from: 0, through: pcm.count - frame, by: frame) {
        let n = try pcm[start..<(start + frame)].withUnsafeBufferPointer { input in
            try payload.withUnsafeMutableBytes { try encoder.encode(input, into: $0) }
        }
        let samples: Int
        if lose(index) {
            samples = decoded.withUnsafeMutableBufferPointer { decoder.conceal(into: $0, samples: decoder.sampleRate / 50) }
        } else {
            samples = try payload[..<n].withUnsafeBytes { bytes in
                try decoded.withUnsafeMutableBufferPointer { try decoder.decode(bytes, into: $0) }
            }
        }
        out += decoded[..<samples]
        index += 1
    }
    return out
}

@Suite("Codecs: G.722 and G.711 (spandsp), Opus (libopus)")
struct CodecTests {
    struct Case: Sendable, CustomStringConvertible {
        var kind: AudioCodecKind
        var sampleRate: Int
        var description: String { "\(kind.rawValue)@\(sampleRate)" }
    }

    static let cases = [
        Case(kind: .g722, sampleRate: 16000), Case(kind: .pcma, sampleRate: 8000), Case(kind: .pcmu, sampleRate: 8000),
        Case(kind: .opus, sampleRate: 16000), Case(kind: .opus, sampleRate: 48000), Case(kind: .opus, sampleRate: 8000),
    ]

    @Test("A 1 kHz tone keeps its frequency and level (±3 dB)", arguments: cases)
    func tone(_ c: Case) throws {
        let encoder = try c.kind.makeEncoder(sampleRate: c.sampleRate)
        let decoder = try c.kind.makeDecoder(sampleRate: c.sampleRate)
        #expect(encoder.sampleRate == c.sampleRate && decoder.sampleRate == c.sampleRate)
        let input = AudioAnalysis.tone(frequency: 1000, dBFS: -12, sampleRate: c.sampleRate, seconds: 1)
        let output = try codecRoundTrip(input, encoder: encoder, decoder: decoder)
        #expect(output.count == input.count)
        let steady = output[(c.sampleRate / 5)...]  // past the codec's start-up
        #expect(abs(AudioAnalysis.frequency(steady, sampleRate: c.sampleRate) - 1000) < 5)
        #expect(abs(AudioAnalysis.level(steady) - -12) < 3)
        #expect(AudioAnalysis.purity(steady, frequency: 1000, sampleRate: c.sampleRate) > 0.9)
    }

    @Test("DTMF digits survive the codec (spandsp's detector)", arguments: cases)
    func dtmf(_ c: Case) throws {
        let encoder = try c.kind.makeEncoder(sampleRate: c.sampleRate)
        let decoder = try c.kind.makeDecoder(sampleRate: c.sampleRate)
        let input = AudioAnalysis.dtmf("159*#0AD", sampleRate: c.sampleRate)
        let output = try codecRoundTrip(input, encoder: encoder, decoder: decoder)
        #expect(AudioAnalysis.detectDTMF(output, sampleRate: c.sampleRate) == "159*#0AD")
    }

    @Test("Lost frames are concealed: the tone goes on at its frequency, no silence", arguments: cases)
    func concealment(_ c: Case) throws {
        let encoder = try c.kind.makeEncoder(sampleRate: c.sampleRate)
        let decoder = try c.kind.makeDecoder(sampleRate: c.sampleRate)
        let input = AudioAnalysis.tone(frequency: 800, dBFS: -12, sampleRate: c.sampleRate, seconds: 1)
        let output = try codecRoundTrip(input, encoder: encoder, decoder: decoder, lose: { $0 == 25 })
        let frame = c.sampleRate / 50
        let concealed = output[(25 * frame)..<(26 * frame)]
        #expect(concealed.count == frame)
        #expect(AudioAnalysis.level(concealed) > -24, "the lost frame is filled, not silent")
        #expect(abs(AudioAnalysis.frequency(concealed, sampleRate: c.sampleRate) - 800) < 40)
    }

    @Test("Opus in-band FEC recovers a lost frame from the next packet")
    func opusFEC() throws {
        let encoder = try AudioCodecKind.opus.makeEncoder(sampleRate: 16000, options: .init(opusExpectedLossPercent: 20))
        let decoder = try AudioCodecKind.opus.makeDecoder(sampleRate: 16000)
        let input = AudioAnalysis.tone(frequency: 600, dBFS: -12, sampleRate: 16000, seconds: 0.6)
        var payloads: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 1500)
        for start in stride(from: 0, to: input.count, by: 320) {
            let n = try input[start..<(start + 320)].withUnsafeBufferPointer { pcm in try buffer.withUnsafeMutableBytes { try encoder.encode(pcm, into: $0) } }
            payloads.append(Array(buffer[..<n]))
        }
        var pcm = [Int16](repeating: 0, count: 960)
        for payload in payloads[..<20] {
            _ = try payload.withUnsafeBytes { bytes in try pcm.withUnsafeMutableBufferPointer { try decoder.decode(bytes, into: $0) } }
        }
        // Frame 20 is lost; frame 21 carries it.
        let recovered = payloads[21].withUnsafeBytes { bytes in pcm.withUnsafeMutableBufferPointer { decoder.recover(lostFrameFrom: bytes, into: $0, samples: 320) } }
        #expect(recovered == 320)
        #expect(abs(AudioAnalysis.frequency(pcm[..<320], sampleRate: 16000) - 600) < 20)
        #expect(AudioAnalysis.level(pcm[..<320]) > -20)
    }

    @Test("Sample rate and RTP clock rate stay apart")
    func rates() throws {
        #expect(AudioCodecKind.g722.nativeSampleRate == 16000 && AudioCodecKind.g722.rtpClockRate == 8000)
        #expect(AudioCodecKind.g722.timestampTicks(milliseconds: 20) == 160)
        #expect(AudioCodecKind.opus.timestampTicks(milliseconds: 20) == 960)
        #expect(throws: AudioCodecError.unsupportedSampleRate(44100)) { try AudioCodecKind.opus.makeEncoder(sampleRate: 44100) }
        // 20 ms of G.722 is 320 samples in 160 bytes.
        let encoder = try AudioCodecKind.g722.makeEncoder()
        var out = [UInt8](repeating: 0, count: 400)
        let pcm = [Int16](repeating: 0, count: 320)
        #expect(try pcm.withUnsafeBufferPointer { p in try out.withUnsafeMutableBytes { try encoder.encode(p, into: $0) } } == 160)
    }

    @Test("Resampling 8 ↔ 16 kHz keeps a tone's frequency and level and rejects the image")
    func resampler() {
        var up = HalfBandResampler(.up)
        var down = HalfBandResampler(.down)
        let input = AudioAnalysis.tone(frequency: 1000, dBFS: -10, sampleRate: 8000, seconds: 1)
        var wide: [Int16] = []
        var narrow: [Int16] = []
        var buffer = [Int16](repeating: 0, count: 640)
        for start in stride(from: 0, to: input.count, by: 160) {
            let n = input[start..<(start + 160)].withUnsafeBufferPointer { i in buffer.withUnsafeMutableBufferPointer { up.process(i, into: $0) } }
            #expect(n == 320)
            wide += buffer[..<n]
            let m = wide[(wide.count - 320)...].withUnsafeBufferPointer { i in buffer.withUnsafeMutableBufferPointer { down.process(i, into: $0) } }
            narrow += buffer[..<m]
        }
        #expect(abs(AudioAnalysis.frequency(wide[1600...], sampleRate: 16000) - 1000) < 2)
        #expect(abs(AudioAnalysis.level(wide[1600...]) - -10) < 0.5)
        // The 7 kHz image of up-sampling is at least 40 dB down.
        #expect(AudioAnalysis.purity(wide[1600...], frequency: 7000, sampleRate: 16000) < 1e-4)
        #expect(abs(AudioAnalysis.frequency(narrow[800...], sampleRate: 8000) - 1000) < 2)
        #expect(abs(AudioAnalysis.level(narrow[800...]) - -10) < 0.5)
    }
}
