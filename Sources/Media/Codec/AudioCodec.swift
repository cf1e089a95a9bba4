/// The audio codecs of the engine. Each keeps two rates apart (the lesson of baresip's
/// `struct aucodec`): `sampleRate`, at which PCM goes in and out, and `rtpClockRate`, at which
/// RTP timestamps count. G.722 samples at 16 kHz but counts 8 kHz (RFC 3551 §4.5.2); Opus counts
/// 48 kHz whatever rate it codes at (RFC 7587 §4.1), so the engine runs it at the rate of the
/// other leg and never resamples for it.
public enum AudioCodecKind: String, Sendable, CaseIterable, Hashable {
    case opus, g722, pcma, pcmu

    public var rtpClockRate: Int { self == .opus ? 48000 : 8000 }

    /// The PCM rate the codec works at. Opus: the rate it is created with (see `makeEncoder`).
    public var nativeSampleRate: Int {
        switch self {
        case .opus: 48000
        case .g722: 16000
        case .pcma, .pcmu: 8000
        }
    }

    /// RTP timestamp ticks for a frame of `milliseconds`.
    public func timestampTicks(milliseconds: Int) -> Int { rtpClockRate * milliseconds / 1000 }

    /// The longest packet the engine takes or makes: 120 ms (RFC 7587 §4.2, the longest Opus
    /// packet; RFC 3551 §4.2 for the others).
    public static let maxPacketMilliseconds = 120

    /// Packet times (ms) the engine frames this codec in, 10–120. Opus encodes only 10, 20, 40
    /// and 60 ms frames and packets of up to three 40 ms frames (RFC 6716 §2.1.4, §3.2.5).
    public func isUsablePacketTime(_ milliseconds: Int) -> Bool {
        guard (10...Self.maxPacketMilliseconds).contains(milliseconds) else { return false }
        return self != .opus || [10, 20, 40, 60, 80, 100, 120].contains(milliseconds)
    }

    /// The packet time a leg runs at when asked for `milliseconds`: that, when usable, else the
    /// 20 ms default (a ptime is a hint: RFC 4566 §6).
    public func usablePacketTime(_ milliseconds: Int) -> Int { isUsablePacketTime(milliseconds) ? milliseconds : 20 }

    /// The largest payload (bytes) a packet of this codec may carry to be decoded: 120 ms of
    /// G.711 (8 bit/sample at 8 kHz) or G.722 (64 kbit/s) is 960 bytes; an Opus frame is at most
    /// 1275 bytes (RFC 6716 §3.4 R2) and a packet on our links one MTU. Longer payloads are
    /// dropped and counted, never decoded.
    public var maxPayloadBytes: Int {
        switch self {
        case .opus: 1500
        case .g722, .pcma, .pcmu: 8 * Self.maxPacketMilliseconds
        }
    }

    public func makeEncoder(sampleRate: Int? = nil, options: AudioCodecOptions = .init()) throws(AudioCodecError) -> any AudioEncoder {
        switch self {
        case .opus: try OpusAudioEncoder(sampleRate: sampleRate ?? 48000, options: options)
        case .g722: try G722AudioEncoder()
        case .pcma: G711AudioEncoder(law: .aLaw)
        case .pcmu: G711AudioEncoder(law: .muLaw)
        }
    }

    public func makeDecoder(sampleRate: Int? = nil) throws(AudioCodecError) -> any AudioDecoder {
        switch self {
        case .opus: try OpusAudioDecoder(sampleRate: sampleRate ?? 48000)
        case .g722: try G722AudioDecoder()
        case .pcma: try G711AudioDecoder(law: .aLaw)
        case .pcmu: try G711AudioDecoder(law: .muLaw)
        }
    }
}

public struct AudioCodecOptions: Sendable, Equatable {
    /// Opus complexity 0–10 (libopus OPUS_SET_COMPLEXITY).
    public var opusComplexity: Int
    /// Opus target bit rate in bit/s.
    public var opusBitrate: Int
    /// Expected packet loss in percent; with in-band FEC on, Opus spends bits on it (RFC 7587 §3.3).
    public var opusExpectedLossPercent: Int
    public var opusInbandFEC: Bool

    public init(opusComplexity: Int = 5, opusBitrate: Int = 32000, opusExpectedLossPercent: Int = 5, opusInbandFEC: Bool = true) {
        self.opusComplexity = opusComplexity
        self.opusBitrate = opusBitrate
        self.opusExpectedLossPercent = opusExpectedLossPercent
        self.opusInbandFEC = opusInbandFEC
    }
}

public enum AudioCodecError: Error, Sendable, Equatable {
    case create(codec: String, status: Int32)
    case unsupportedSampleRate(Int)
    case decode(codec: String, status: Int32)
    case encode(codec: String, status: Int32)
}

/// Encodes PCM frames (mono, `sampleRate`) into RTP payloads. Not thread-safe: one per stream.
public protocol AudioEncoder: AnyObject {
    var kind: AudioCodecKind { get }
    var sampleRate: Int { get }
    /// Encodes one frame; returns the payload length written to `output`.
    func encode(_ pcm: UnsafeBufferPointer<Int16>, into output: UnsafeMutableRawBufferPointer) throws(AudioCodecError) -> Int
}

/// Decodes RTP payloads into PCM (mono, `sampleRate`) and conceals lost frames. One per stream.
public protocol AudioDecoder: AnyObject {
    var kind: AudioCodecKind { get }
    var sampleRate: Int { get }
    /// Decodes one payload; returns the samples written.
    func decode(_ payload: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Int16>) throws(AudioCodecError) -> Int
    /// Makes up `samples` samples for a lost frame (packet loss concealment).
    func conceal(into output: UnsafeMutableBufferPointer<Int16>, samples: Int) -> Int
    /// Recovers a lost frame from the in-band FEC of the packet after it, if the codec can
    /// (Opus only); returns the samples written, or nil when there is nothing to recover.
    func recover(lostFrameFrom next: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Int16>, samples: Int) -> Int?
}

extension AudioDecoder {
    public func recover(lostFrameFrom next: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Int16>, samples: Int) -> Int? { nil }
}
