extension MediaBridge {
    /// Everything that makes one leg's output from the other leg's input: the output stream
    /// (SSRC/sequence/timestamp), the passthrough mapping, the telephone-event relay, digits
    /// waiting to be sent, and on the transcoding path the jitter buffer, the decoder of the
    /// input, a resampler when the two PCM rates differ, a PCM queue (packet times may differ)
    /// and the encoder of the output.
    struct Direction {
        var output: RTPOutputStream
        var mapping = RTPPassthroughMapping()
        var eventRelay: TelephoneEventRelay
        var pendingDigits: [TelephoneEventGenerator] = []
        var nextDigitPacketAt: UInt64?
        /// While the other leg sends nothing by agreement (held, `inactive`, `recvonly`): one
        /// packet time of encoded silence, sent at the output's pace so that the party still on
        /// the call keeps a stream (stations hang up on RTP timeouts).
        var silence: [UInt8]?
        var nextSilenceAt: UInt64?

        var jitterBuffer: JitterBuffer?
        private let decoder: (any AudioDecoder)?
        private let encoder: (any AudioEncoder)?
        private var resampler: HalfBandResampler?
        /// Decoded PCM at the decoder's rate, then resampled PCM at the encoder's rate.
        private var decoded: [Int16]
        private var queue: [Int16]
        private var queued = 0
        private let inputFrameSamples: Int
        private let outputFrameSamples: Int

        init(input: MediaLegConfiguration, output: MediaLegConfiguration, mode: Mode, jitterBufferMax: Duration) throws(AudioCodecError) {
            self.output = RTPOutputStream(clockRate: output.codec.rtpClockRate)
            self.eventRelay = TelephoneEventRelay(inputClockRate: input.eventClockRate, outputClockRate: output.eventClockRate)
            guard mode == .transcoding else {
                decoder = nil
                encoder = nil
                decoded = []
                queue = []
                inputFrameSamples = 0
                outputFrameSamples = 0
                return
            }
            // Opus works at the other side's rate, so only G.711 ↔ G.722 needs resampling.
            let decodeRate = input.codec == .opus
                ? (output.codec == .opus ? 48000 : output.codec.nativeSampleRate) : input.codec.nativeSampleRate
            let encodeRate = output.codec == .opus ? decodeRate : output.codec.nativeSampleRate
            decoder = try input.codec.makeDecoder(sampleRate: decodeRate)
            encoder = try output.codec.makeEncoder(sampleRate: encodeRate, options: output.codecOptions)
            if decodeRate != encodeRate {
                resampler = HalfBandResampler(encodeRate > decodeRate ? .up : .down)
            }
            jitterBuffer = JitterBuffer(clockRate: input.codec.rtpClockRate, frameTicks: input.frameTicks, maxDelay: jitterBufferMax)
            // Packet times are checked (10–120 ms, `MediaLegConfiguration.checked`), so these
            // sizes are bounded: at most 5,760 samples a frame.
            inputFrameSamples = decodeRate * input.ptime / 1000
            outputFrameSamples = encodeRate * output.ptime / 1000
            // Room for an Opus packet of up to 120 ms at 48 kHz.
            decoded = [Int16](repeating: 0, count: max(5760, inputFrameSamples * 3))
            // Room for the output's frames plus the largest packet the input may bring (120 ms,
            // `AudioCodecKind.maxPacketMilliseconds`) at the encoder's rate.
            let largestPacket = encodeRate * AudioCodecKind.maxPacketMilliseconds / 1000 + 2
            queue = [Int16](repeating: 0, count: max(outputFrameSamples, inputFrameSamples * 2) * 4 + largestPacket)
        }

        /// Passthrough: the output sequence number and timestamp of an input packet.
        mutating func mapPassthrough(_ header: RTPHeader, now: UInt64, frameTicks: Int) -> (UInt16, UInt32) {
            let mapped = mapping.map(
                sequence: header.sequenceNumber, timestamp: header.timestamp, ssrc: header.ssrc, output: &output, now: now, frameTicks: frameTicks)
            return (mapped.sequence, mapped.timestamp)
        }

        /// Decodes a payload into `decoded`; returns the samples, 0 when it would not decode
        /// (then the frame is concealed instead).
        mutating func decode(_ payload: [UInt8]) -> Int {
            guard let decoder else { return 0 }
            let n = payload.withUnsafeBytes { bytes in
                decoded.withUnsafeMutableBufferPointer { try? decoder.decode(bytes, into: $0) }
            }
            if let n, n > 0 { return n }
            return conceal(next: nil)
        }

        mutating func conceal(next: [UInt8]?) -> Int {
            guard let decoder else { return 0 }
            let samples = inputFrameSamples
            if let next, let n = next.withUnsafeBytes({ bytes in decoded.withUnsafeMutableBufferPointer { decoder.recover(lostFrameFrom: bytes, into: $0, samples: samples) } }) {
                return n
            }
            return decoded.withUnsafeMutableBufferPointer { decoder.conceal(into: $0, samples: samples) }
        }

        /// Moves `count` decoded samples into the queue, resampled if needed. False (and nothing
        /// queued) when they could never fit: more than the queue holds at all.
        mutating func enqueue(samples count: Int) -> Bool {
            guard count > 0, count <= decoded.count else { return false }
            let needed = resampler?.outputCount(for: count) ?? count
            guard needed <= queue.count else { return false }
            if queued + needed > queue.count {
                // The output side fell behind (should not happen at equal rates): drop the oldest.
                let drop = queued + needed - queue.count
                queue.withUnsafeMutableBufferPointer { q in
                    for i in 0..<(queued - drop) { q[i] = q[i + drop] }
                }
                queued -= drop
            }
            let start = queued
            decoded.withUnsafeBufferPointer { source in
                let input = UnsafeBufferPointer(rebasing: source[..<count])
                queue.withUnsafeMutableBufferPointer { q in
                    let target = UnsafeMutableBufferPointer(rebasing: q[start..<(start + needed)])
                    if resampler != nil {
                        _ = resampler!.process(input, into: target)
                    } else {
                        _ = target.initialize(fromContentsOf: input)
                    }
                }
            }
            queued += needed
            return true
        }

        var hasOutputFrame: Bool { outputFrameSamples > 0 && queued >= outputFrameSamples }

        /// Encodes one output frame from the queue into `payload`; returns its length (0 when
        /// the encoder failed: the frame is skipped).
        mutating func encodeFrame(into payload: UnsafeMutableRawBufferPointer) -> Int {
            guard let encoder, hasOutputFrame else { return 0 }
            let frame = outputFrameSamples
            let n = queue.withUnsafeBufferPointer { q in
                (try? encoder.encode(UnsafeBufferPointer(rebasing: q[..<frame]), into: payload)) ?? 0
            }
            queue.withUnsafeMutableBufferPointer { q in
                for i in 0..<(queued - frame) { q[i] = q[i + frame] }
            }
            queued -= frame
            return n
        }
    }
}
