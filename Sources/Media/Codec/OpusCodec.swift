import COpus

/// Opus through libopus (RFC 6716, RTP payload RFC 7587), mono, VoIP application, at the PCM rate
/// of the other leg (8, 12, 16, 24 or 48 kHz) while RTP counts 48 kHz.
public final class OpusAudioEncoder: AudioEncoder {
    public let kind = AudioCodecKind.opus
    public let sampleRate: Int
    private let encoder: OpaquePointer

    static let rates: Set<Int> = [8000, 12000, 16000, 24000, 48000]

    public init(sampleRate: Int, options: AudioCodecOptions) throws(AudioCodecError) {
        guard Self.rates.contains(sampleRate) else { throw .unsupportedSampleRate(sampleRate) }
        var status: Int32 = 0
        guard let encoder = opus_encoder_create(Int32(sampleRate), 1, OPUS_APPLICATION_VOIP, &status), status == OPUS_OK else {
            throw .create(codec: "opus", status: status)
        }
        self.encoder = encoder
        self.sampleRate = sampleRate
        let settings: [(Int32, Int32)] = [
            (OPUS_SET_COMPLEXITY_REQUEST, Int32(max(0, min(10, options.opusComplexity)))),
            (OPUS_SET_BITRATE_REQUEST, Int32(options.opusBitrate)),
            (OPUS_SET_INBAND_FEC_REQUEST, options.opusInbandFEC ? 1 : 0),
            (OPUS_SET_PACKET_LOSS_PERC_REQUEST, Int32(max(0, min(100, options.opusExpectedLossPercent)))),
            (OPUS_SET_SIGNAL_REQUEST, OPUS_SIGNAL_VOICE),
        ]
        for (request, value) in settings {
            let result = symphony_opus_encoder_set(encoder, request, value)
            guard result == OPUS_OK else {
                opus_encoder_destroy(encoder)
                throw .create(codec: "opus", status: result)
            }
        }
    }

    deinit { opus_encoder_destroy(encoder) }

    public func encode(_ pcm: UnsafeBufferPointer<Int16>, into output: UnsafeMutableRawBufferPointer) throws(AudioCodecError) -> Int {
        let n = opus_encode(encoder, pcm.baseAddress!, Int32(pcm.count), output.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(output.count))
        guard n > 0 else { throw .encode(codec: "opus", status: n) }
        return Int(n)
    }
}

public final class OpusAudioDecoder: AudioDecoder {
    public let kind = AudioCodecKind.opus
    public let sampleRate: Int
    private let decoder: OpaquePointer

    public init(sampleRate: Int) throws(AudioCodecError) {
        guard OpusAudioEncoder.rates.contains(sampleRate) else { throw .unsupportedSampleRate(sampleRate) }
        var status: Int32 = 0
        guard let decoder = opus_decoder_create(Int32(sampleRate), 1, &status), status == OPUS_OK else {
            throw .create(codec: "opus", status: status)
        }
        self.decoder = decoder
        self.sampleRate = sampleRate
    }

    deinit { opus_decoder_destroy(decoder) }

    public func decode(_ payload: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Int16>) throws(AudioCodecError) -> Int {
        // An empty packet would be libopus's concealment of a whole `output` (up to 720 ms at
        // 8 kHz): nothing to decode, the caller conceals one frame instead.
        guard !payload.isEmpty, payload.count <= 65_535 else { return 0 }
        let n = opus_decode(decoder, payload.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(payload.count), output.baseAddress!, Int32(output.count), 0)
        guard n >= 0 else { throw .decode(codec: "opus", status: n) }
        return Int(n)
    }

    /// libopus's own concealment (a NULL packet), sized to the lost frame.
    public func conceal(into output: UnsafeMutableBufferPointer<Int16>, samples: Int) -> Int {
        let n = opus_decode(decoder, nil, 0, output.baseAddress!, Int32(min(max(samples, 0), output.count)), 0)
        return max(0, Int(n))
    }

    /// In-band FEC (RFC 6716 §2.1.7): the next packet carries a low-rate copy of this one.
    public func recover(lostFrameFrom next: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Int16>, samples: Int) -> Int? {
        let n = opus_decode(decoder, next.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(next.count), output.baseAddress!, Int32(min(max(samples, 0), output.count)), 1)
        return n > 0 ? Int(n) : nil
    }
}
