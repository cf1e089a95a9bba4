import CMallocCounter
import NIOCore
import SIP

#if canImport(Glibc)
import Glibc
#endif

// `make bench`: SIP message figures, printed for docs/PERFORMANCE.md.
//
// * parse, serialize, and parse + serialize of a typical 1 KB INVITE with SDP, in messages per
//   second on one core (this process is single-threaded), median of several runs;
// * heap allocations per parse and per serialize (malloc calls, counted by CMallocCounter).
// The baseline in the same run is a memchr-style scan of the same bytes for CRLFs, which bounds
// what any parser can do on this machine at that moment.

let invite = """
    INVITE sip:channel-07@gateway.site-12.symphony.example SIP/2.0\r
    Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK776asdhds-4711;rport\r
    Max-Forwards: 70\r
    To: "Door 7" <sip:channel-07@gateway.site-12.symphony.example>\r
    From: "Alice Mobile" <sips:alice@cloud.symphony.example>;tag=1928301774\r
    Call-ID: a84b4c76e66710@pc33.cloud.symphony.example\r
    CSeq: 314159 INVITE\r
    Contact: <sips:alice@192.0.2.10:5061;transport=tls>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"\r
    Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r
    Supported: outbound, replaces\r
    User-Agent: Symphony Cloud Client/1.4\r
    Content-Type: application/sdp\r
    Content-Length: 331\r
    \r
    v=0\r
    o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r
    s=-\r
    c=IN IP4 192.0.2.10\r
    t=0 0\r
    m=audio 49170 RTP/SAVP 111 9 8 0 101\r
    a=rtpmap:111 opus/48000/2\r
    a=fmtp:111 useinbandfec=1\r
    a=rtpmap:9 G722/8000\r
    a=rtpmap:101 telephone-event/8000\r
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyAoc2VxID0=\r
    a=ptime:20\r
    a=sendrecv\r

    """

let bytes = ByteBuffer(string: invite)
let parser = SIPMessageParser()
let parsed = try! parser.parse(bytes)
precondition(parsed.body.readableBytes == 331, "benchmark message body must frame exactly")

func now() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

@inline(never) func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

/// Hides a value from the optimizer, so that work on it cannot be hoisted out of the loop.
@inline(never) func opaque<T>(_ value: T) -> T { value }

/// The floor: copy the bytes out of the buffer (as the parser does) and find every line end.
@inline(never) func copyAndCountLines(_ buffer: ByteBuffer) -> Int {
    let bytes = [UInt8](buffer.readableBytesView)
    var count = 0
    for byte in bytes where byte == 0x0A { count += 1 }
    return count
}

/// Runs `body` `iterations` times, `rounds` rounds; returns the median operations per second.
let defaultIterations = Int(getenv("BENCH_ITERATIONS").map { String(cString: $0) } ?? "") ?? 200_000

func measure(_ name: String, iterations: Int = defaultIterations, rounds: Int = 7, _ body: () -> Void) -> Double {
    for _ in 0..<iterations / 10 { body() }  // warm-up
    var rates: [Double] = []
    for _ in 0..<rounds {
        let start = now()
        for _ in 0..<iterations { body() }
        let elapsed = Double(now() - start) / 1e9
        rates.append(Double(iterations) / elapsed)
    }
    rates.sort()
    let median = rates[rates.count / 2]
    print(pad(name, 44) + pad(String(Int(median)), 12, left: true) + " /s" + pad(String(format1(1e6 / median)), 10, left: true) + " µs")
    return median
}

func allocations(_ body: () -> Void) -> Double {
    let runs = 1000
    let before = symphony_malloc_count()
    for _ in 0..<runs { body() }
    return Double(symphony_malloc_count() - before) / Double(runs)
}

func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
    let padding = String(repeating: " ", count: max(0, width - text.count))
    return left ? padding + text : text + padding
}

func format1(_ value: Double) -> String {
    let scaled = (value * 100).rounded() / 100
    return String(scaled)
}

print("SIP message benchmark: \(bytes.readableBytes)-byte INVITE with SDP, one core")
let baseline = measure("baseline: copy the bytes, find the lines") {
    blackHole(copyAndCountLines(opaque(bytes)))
}
let parseRate = measure("parse") { blackHole(try! parser.parse(bytes)) }
let serializeRate = measure("serialize") { blackHole(SIPMessageSerializer.serialize(parsed)) }
let bothRate = measure("parse + serialize") {
    let message = try! parser.parse(bytes)
    blackHole(SIPMessageSerializer.serialize(message))
}
let typedRate = measure("parse + typed Via/From/To/CSeq/Call-ID") {
    let message = try! parser.parse(bytes)
    blackHole((message.topVia, message.from, message.to, message.cseq, message.callID))
}
print("allocations per parse:                 \(format1(allocations { blackHole(try! parser.parse(bytes)) }))")
print("allocations per serialize:             \(format1(allocations { blackHole(SIPMessageSerializer.serialize(parsed)) }))")
print("parse cost relative to the baseline:    \(format1(baseline / parseRate))×")
