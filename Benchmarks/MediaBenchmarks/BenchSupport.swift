import Media
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Monotonic nanoseconds.
func nowNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// CPU time of the calling thread, nanoseconds (user + system: includes its socket syscalls).
func threadCPUNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func format(_ value: Double, _ digits: Int = 1) -> String {
    var s = String(Int((value * pow(10, Double(digits))).rounded()))
    guard digits > 0 else { return s }
    let negative = s.hasPrefix("-")
    if negative { s.removeFirst() }
    while s.count <= digits { s = "0" + s }
    s.insert(".", at: s.index(s.endIndex, offsetBy: -digits))
    return (negative ? "-" : "") + s
}

/// Speech-like test audio at 16 kHz: a few harmonics with a syllable-rate envelope and a little
/// noise, so the codecs work as hard as on voice (silence would flatter Opus).
func testSignal(seconds: Int, sampleRate: Int = 16000) -> [Int16] {
    var generator = SystemRandomNumberGenerator()
    return (0..<(seconds * sampleRate)).map { n in
        let t = Double(n) / Double(sampleRate)
        let envelope = 0.55 + 0.45 * sin(2 * .pi * 4 * t)
        let f0 = 140 + 30 * sin(2 * .pi * 0.5 * t)
        var x = 0.0
        for h in 1...8 { x += sin(2 * .pi * f0 * Double(h) * t) / Double(h) }
        x = x * 0.25 * envelope + Double.random(in: -0.02...0.02, using: &generator)
        return Int16(max(-32767, min(32767, x * 32767 * 0.5)))
    }
}

/// Pre-built RTP packets of one stream.
struct PacketStream {
    var packets: [[UInt8]]
    var ssrc: UInt32
}

/// Encodes `pcm` into 20 ms RTP packets (SRTP-protected when `key` is given).
func makeStream(_ pcm: [Int16], codec: AudioCodecKind, payloadType: UInt8, sampleRate: Int, key: SRTPKeyMaterial?, options: AudioCodecOptions = .init()) throws -> PacketStream {
    let encoder = try codec.makeEncoder(sampleRate: sampleRate, options: options)
    let session = try key.map { try SRTPSession(key: $0, direction: .outbound) }
    let frame = sampleRate / 50
    let ssrc = UInt32.random(in: 1 ... .max)
    var packets: [[UInt8]] = []
    var payload = [UInt8](repeating: 0, count: 1500)
    for (index, start) in stride(from: 0, through: pcm.count - frame, by: frame).enumerated() {
        let n = try pcm[start..<(start + frame)].withUnsafeBufferPointer { p in try payload.withUnsafeMutableBytes { try encoder.encode(p, into: $0) } }
        var bytes = [UInt8](repeating: 0, count: 12 + n + SRTPSession.maxTrailer)
        var length = 12 + n
        try bytes.withUnsafeMutableBytes { raw in
            RTPHeader(payloadType: payloadType, sequenceNumber: UInt16(truncatingIfNeeded: index), timestamp: UInt32(index * codec.timestampTicks(milliseconds: 20)), ssrc: ssrc).writeFixed(into: raw)
            raw.baseAddress!.advanced(by: 12).copyMemory(from: payload, byteCount: n)
            if let session { length = try session.protect(raw, length: length) }
        }
        packets.append(Array(bytes[..<length]))
    }
    return PacketStream(packets: packets, ssrc: ssrc)
}

final class NullSink: MediaPacketSink {
    var count = 0
    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp: Bool) { count += 1 }
}

/// Prints a line and flushes, so a long run shows its progress through a pipe.
func say(_ line: String) {
    print(line)
    fflush(nil)
}
