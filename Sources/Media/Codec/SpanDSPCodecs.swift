import CSpanDSP

/// G.722 at 64 kbit/s through spandsp: 16 kHz PCM, one byte per two samples.
public final class G722AudioEncoder: AudioEncoder {
    public let kind = AudioCodecKind.g722
    public let sampleRate = 16000
    private let state: OpaquePointer

    public init() throws(AudioCodecError) {
        guard let state = g722_encode_init(nil, 64000, 0) else { throw .create(codec: "G722", status: -1) }
        self.state = state
    }

    deinit { g722_encode_free(state) }

    public func encode(_ pcm: UnsafeBufferPointer<Int16>, into output: UnsafeMutableRawBufferPointer) throws(AudioCodecError) -> Int {
        // Buffers that do not fit are an error, never a trap (docs/RELIABILITY.md).
        guard output.count >= pcm.count / 2, !pcm.isEmpty, pcm.count <= Int(Int32.max) else { throw .encode(codec: "G722", status: -2) }
        return Int(g722_encode(state, output.baseAddress!.assumingMemoryBound(to: UInt8.self), pcm.baseAddress, Int32(pcm.count)))
    }
}

/// G.722 decoder with spandsp's packet loss concealment on the decoded PCM.
public final class G722AudioDecoder: AudioDecoder {
    public let kind = AudioCodecKind.g722
    public let sampleRate = 16000
    private let state: OpaquePointer
    private let plc: SpanDSPConcealment

    public init() throws(AudioCodecError) {
        guard let state = g722_decode_init(nil, 64000, 0) else { throw .create(codec: "G722", status: -1) }
        self.state = state
        self.plc = try SpanDSPConcealment()
    }

    deinit { g722_decode_free(state) }

    public func decode(_ payload: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Int16>) throws(AudioCodecError) -> Int {
        guard !payload.isEmpty else { return 0 }
        guard output.count >= payload.count * 2, payload.count <= Int(Int32.max) else { throw .decode(codec: "G722", status: -2) }
        let n = Int(g722_decode(state, output.baseAddress, payload.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(payload.count)))
        plc.received(UnsafeMutableBufferPointer(rebasing: output[..<n]))
        return n
    }

    public func conceal(into output: UnsafeMutableBufferPointer<Int16>, samples: Int) -> Int {
        plc.fill(UnsafeMutableBufferPointer(rebasing: output[..<min(max(samples, 0), output.count)]))
    }
}

/// G.711 A-law or µ-law (ITU-T G.711), spandsp's table-free conversions: 8 kHz, a byte a sample.
public enum G711Law: Sendable { case aLaw, muLaw }

public final class G711AudioEncoder: AudioEncoder {
    public let kind: AudioCodecKind
    public let sampleRate = 8000
    private let law: G711Law

    public init(law: G711Law) {
        self.law = law
        self.kind = law == .aLaw ? .pcma : .pcmu
    }

    public func encode(_ pcm: UnsafeBufferPointer<Int16>, into output: UnsafeMutableRawBufferPointer) throws(AudioCodecError) -> Int {
        guard output.count >= pcm.count else { throw .encode(codec: law == .aLaw ? "PCMA" : "PCMU", status: -2) }
        switch law {
        case .aLaw: for i in 0..<pcm.count { output[i] = linear_to_alaw(Int32(pcm[i])) }
        case .muLaw: for i in 0..<pcm.count { output[i] = linear_to_ulaw(Int32(pcm[i])) }
        }
        return pcm.count
    }
}

public final class G711AudioDecoder: AudioDecoder {
    public let kind: AudioCodecKind
    public let sampleRate = 8000
    private let law: G711Law
    private let plc: SpanDSPConcealment

    public init(law: G711Law) throws(AudioCodecError) {
        self.law = law
        self.kind = law == .aLaw ? .pcma : .pcmu
        self.plc = try SpanDSPConcealment()
    }

    public func decode(_ payload: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Int16>) throws(AudioCodecError) -> Int {
        guard output.count >= payload.count else { throw .decode(codec: law == .aLaw ? "PCMA" : "PCMU", status: -2) }
        switch law {
        case .aLaw: for i in 0..<payload.count { output[i] = alaw_to_linear(payload[i]) }
        case .muLaw: for i in 0..<payload.count { output[i] = ulaw_to_linear(payload[i]) }
        }
        plc.received(UnsafeMutableBufferPointer(rebasing: output[..<payload.count]))
        return payload.count
    }

    public func conceal(into output: UnsafeMutableBufferPointer<Int16>, samples: Int) -> Int {
        plc.fill(UnsafeMutableBufferPointer(rebasing: output[..<min(max(samples, 0), output.count)]))
    }
}

/// spandsp's packet loss concealment, with a guard around a bug of Debian's spandsp 0.0.6: when
/// concealment starts, `plc_fillin` rotates its history with an overlapping `memcpy` (undefined
/// behaviour; fixed upstream in FreeSWITCH's spandsp by memmove) unless the history starts at
/// offset 0, which it only does after a `plc_rx` of at least `PLC_HISTORY_LEN` (280) samples.
/// G.722 frames are 320 samples, but G.711's are 160, so before the first concealed frame this
/// hands spandsp the last 280 samples again: the same history, at offset 0. Found by the
/// MediaPacketFuzzer under AddressSanitizer.
final class SpanDSPConcealment {
    private let state: UnsafeMutablePointer<plc_state_t>
    static let historyLength = 280  // PLC_HISTORY_LEN = CORRELATION_SPAN + PLC_PITCH_MIN
    private var history: [Int16] = []
    private var concealing = false

    init() throws(AudioCodecError) {
        guard let state = plc_init(nil) else { throw .create(codec: "PLC", status: -1) }
        self.state = state
        history.reserveCapacity(2 * Self.historyLength)
    }

    deinit { plc_free(state) }

    /// A good frame: spandsp smooths its start after a loss and remembers it.
    func received(_ samples: UnsafeMutableBufferPointer<Int16>) {
        guard !samples.isEmpty else { return }
        plc_rx(state, samples.baseAddress, Int32(samples.count))
        concealing = false
        history.append(contentsOf: samples)
        if history.count > Self.historyLength { history.removeFirst(history.count - Self.historyLength) }
    }

    /// A lost frame, made up from the history.
    func fill(_ samples: UnsafeMutableBufferPointer<Int16>) -> Int {
        guard !samples.isEmpty else { return 0 }
        if !concealing, !history.isEmpty {
            // spandsp's history starts as silence: pad a short one the same way.
            var full = [Int16](repeating: 0, count: Self.historyLength - history.count) + history
            full.withUnsafeMutableBufferPointer { _ = plc_rx(state, $0.baseAddress, Int32(Self.historyLength)) }
        }
        concealing = true
        return Int(plc_fillin(state, samples.baseAddress, Int32(samples.count)))
    }
}
