import FuzzDriver
import Glibc
import NIOCore
import SIP
import SIPTransport

// SIP over TCP/TLS as a peer sends it, cut into reads at points the fuzzer picks (`make fuzz`).
// The input's first byte says how many cut points follow (two bytes each); the rest is the
// stream. Properties checked on every input:
// - framing never traps and never grows past the message limit (it refuses instead);
// - the frames do not depend on where the stream was cut: the same frames come out of one read,
//   of the fuzzer's reads and of byte-by-byte reads, and an error comes at the same frame;
// - every framed message goes on through the parser as the endpoint would take it.

private enum Fixture {
    static let limits: SIPParserLimits = {
        var limits = SIPParserLimits()
        limits.maxMessageSize = 4096  // small, so that inputs of -max_len reach it
        return limits
    }()
    static let parser = SIPMessageParser(limits: limits)
}

/// The frames, and whether framing stopped with an error, for `stream` read in `reads`.
private func frames(_ stream: [UInt8], reads: [Int]) -> ([SIPStreamFrame], Bool) {
    var decoder = SIPStreamDecoder(limits: Fixture.limits)
    var buffer = ByteBuffer()
    var out: [SIPStreamFrame] = []
    var start = 0
    for end in reads + [stream.count] where end >= start {
        buffer.writeBytes(stream[start..<end])
        start = end
        do {
            while let frame = try decoder.decode(buffer: &buffer) { out.append(frame) }
        } catch {
            return (out, true)
        }
        precondition(buffer.readableBytes <= Fixture.limits.maxMessageSize + 4, "the decoder kept \(buffer.readableBytes) bytes buffered")
    }
    return (out, false)
}

private func describe(_ frame: SIPStreamFrame) -> String {
    switch frame {
    case .ping: "ping"
    case .pong: "pong"
    case .message(let bytes): "message(\(bytes.readableBytes): \(String(decoding: bytes.readableBytesView.prefix(12), as: UTF8.self).debugDescription))"
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let cutCount = Int(input.byte() % 16)
    var cuts: [Int] = []
    for _ in 0..<cutCount { cuts.append(Int(input.u16())) }
    // A letter at the end settles a trailing "\r\n\r", which would otherwise be a pong already in
    // byte-by-byte reads and still undecided (ping or pong) in one read.
    let stream = input.rest() + [0x5A]
    let reads = cuts.map { $0 % (stream.count + 1) }.sorted()

    // RFC 5626 framing cannot tell a ping split after its first CRLF from two pongs: a ping
    // counts as two pongs when comparing.
    func normalized(_ result: ([SIPStreamFrame], Bool)) -> ([SIPStreamFrame], Bool) {
        (result.0.flatMap { $0 == .ping ? [SIPStreamFrame.pong, .pong] : [$0] }, result.1)
    }
    let whole = frames(stream, reads: [])
    let cut = frames(stream, reads: reads)
    precondition(normalized(whole) == normalized(cut), "framing depends on where the stream was cut: \(whole.0.count) vs \(cut.0.count) frames")
    if stream.count <= 512 {
        let single = frames(stream, reads: Array(0..<stream.count))
        if normalized(single) != normalized(whole) {
            FuzzTrace.note("whole \(whole.0.map(describe)) error \(whole.1)")
            FuzzTrace.note("single \(single.0.map(describe)) error \(single.1)")
        }
        precondition(FuzzTrace.enabled || normalized(single) == normalized(whole), "byte-by-byte framing differs")
    }
    for frame in whole.0 {
        guard case .message(let bytes) = frame else { continue }
        precondition(bytes.readableBytes <= Fixture.limits.maxMessageSize, "a frame past the limit")
        if let message = try? Fixture.parser.parse(bytes, framing: .stream) {
            _ = message.callID
            _ = message.vias
            _ = message.cseq
        }
    }
    return 0
}

@main
enum FuzzMain {
    static func main() { exit(runFuzzTarget(fuzzOneInput)) }
}
