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
        precondition(output.count >= pcm.count / 2)
        return Int(g722_encode(state, output.baseAddress!.assumingMemoryBound(to: UInt8.self), pcm.baseAddress, Int32(pcm.count)))
    }
}

/// G.722 decoder with spandsp's packet loss concealment on the decoded PCM.
public final class G722AudioDecoder: AudioDecoder {
    public let kind = AudioCodecKind.g722
    public let sampleRate = 16000
    private let state: OpaquePointer
    private let plc: UnsafeMutablePointer<plc_state_t>

    public init() throws(AudioCodecError) {
        guard let state = g722_decode_init(nil, 64000, 0), let plc = plc_init(nil) else { throw .create(codec: "G722", status: -1) }
        self.state = state
        self.plc = plc
    }

    deinit {
        g722_decode_free(state)
        plc_free(plc)
    }

    public func decode(_ payload: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Int16>) throws(AudioCodecError) -> Int {
        guard !payload.isEmpty else { return 0 }
        precondition(output.count >= payload.count * 2)
        let n = g722_decode(state, output.baseAddress, payload.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(payload.count))
        plc_rx(plc, output.baseAddress, n)
        return Int(n)
    }

    public func conceal(into output: UnsafeMutableBufferPointer<Int16>, samples: Int) -> Int {
        Int(plc_fillin(plc, output.baseAddress, Int32(min(samples, output.count))))
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
        precondition(output.count >= pcm.count)
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
    private let plc: UnsafeMutablePointer<plc_state_t>

    public init(law: G711Law) throws(AudioCodecError) {
        guard let plc = plc_init(nil) else { throw .create(codec: "G711", status: -1) }
        self.law = law
        self.kind = law == .aLaw ? .pcma : .pcmu
        self.plc = plc
    }

    deinit { plc_free(plc) }

    public func decode(_ payload: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Int16>) throws(AudioCodecError) -> Int {
        precondition(output.count >= payload.count)
        switch law {
        case .aLaw: for i in 0..<payload.count { output[i] = alaw_to_linear(payload[i]) }
        case .muLaw: for i in 0..<payload.count { output[i] = ulaw_to_linear(payload[i]) }
        }
        plc_rx(plc, output.baseAddress, Int32(payload.count))
        return payload.count
    }

    public func conceal(into output: UnsafeMutableBufferPointer<Int16>, samples: Int) -> Int {
        Int(plc_fillin(plc, output.baseAddress, Int32(min(samples, output.count))))
    }
}
