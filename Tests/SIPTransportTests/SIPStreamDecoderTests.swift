import NIOCore
import NIOEmbedded
import NIOTestUtils
import SIP
import SIPTransport
import Testing

@Suite("Stream framing (RFC 3261 §18.3, RFC 5626 §3.5.1)")
struct SIPStreamDecoderTests {
    static let first = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello"
    static let second = "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"

    /// NIO's verifier feeds the input whole, byte by byte and in random splits and checks that
    /// the same frames come out every time.
    @Test func framesSurviveSplitAndCoalescedReads() throws {
        let input = ByteBuffer(string: Self.first + Self.second + Self.first)
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [
                (input, [.message(ByteBuffer(string: Self.first)), .message(ByteBuffer(string: Self.second)), .message(ByteBuffer(string: Self.first))])
            ],
            decoderFactory: { SIPStreamDecoder() })
    }

    @Test func keepalivesBetweenMessagesAreRecognised() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder()))
        try channel.writeInbound(ByteBuffer(string: Self.first + "\r\n\r\n"))
        try channel.writeInbound(ByteBuffer(string: Self.second))
        try channel.writeInbound(ByteBuffer(string: "\r\n"))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == .message(ByteBuffer(string: Self.first)))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == .ping)
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == .message(ByteBuffer(string: Self.second)))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == .pong)
    }

    @Test func twoMessagesInOneReadComeOutAsTwo() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder()))
        try channel.writeInbound(ByteBuffer(string: Self.first + Self.second))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == .message(ByteBuffer(string: Self.first)))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == .message(ByteBuffer(string: Self.second)))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == nil)
    }

    @Test func bodyWaitsForAllContentLengthBytes() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder()))
        try channel.writeInbound(ByteBuffer(string: String(Self.first.dropLast(3))))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == nil)
        try channel.writeInbound(ByteBuffer(string: "llo"))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == .message(ByteBuffer(string: Self.first)))
    }

    @Test func endlessHeadIsRefused() {
        var limits = SIPParserLimits()
        limits.maxMessageSize = 1024
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder(limits: limits)))
        #expect(throws: SIPStreamDecoder.DecodingError.headTooLarge(1024)) {
            try channel.writeInbound(ByteBuffer(string: "OPTIONS sip:a@b SIP/2.0\r\nX: " + String(repeating: "a", count: 2000)))
        }
    }

    @Test func badContentLengthIsRefused() {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder()))
        #expect(throws: SIPStreamDecoder.DecodingError.badContentLength) {
            try channel.writeInbound(ByteBuffer(string: "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -5\r\n\r\n"))
        }
    }

    @Test("256 KiB of bare line feeds (and of bare CRs) in one read are skipped in a loop, then a message decodes (was: a stack overflow, one frame per byte)")
    func strayLineEndsInBulk() throws {
        for stray in ["\n", "\r"] {
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder()))
            try channel.writeInbound(ByteBuffer(string: String(repeating: stray, count: 256 * 1024) + "\n" + Self.first))
            var frames: [SIPStreamFrame] = []
            while let frame = try channel.readInbound(as: SIPStreamFrame.self) { frames.append(frame) }
            #expect(frames.last == .message(ByteBuffer(string: Self.first)), "\(frames.count) frames, last \(String(describing: frames.last))")
        }
    }

    @Test("\"\\r\\n\\r\" followed by anything but LF is a pong and the rest framed on, not a freeze that buffers every later byte")
    func crlfCrThenOther() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder()))
        try channel.writeInbound(ByteBuffer(string: "\r\n\r"))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == nil, "waits for the ping's last byte")
        try channel.writeInbound(ByteBuffer(string: "X" + Self.first))
        #expect(try channel.readInbound(as: SIPStreamFrame.self) == .pong)
        // The stray CR, then "X…" is a head that never ends: refused at the limit, not buffered.
        var limits = SIPParserLimits()
        limits.maxMessageSize = 4096
        let limited = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder(limits: limits)))
        try limited.writeInbound(ByteBuffer(string: "\r\n\rX"))
        #expect(throws: SIPStreamDecoder.DecodingError.headTooLarge(4096)) {
            for _ in 0..<10 { try limited.writeInbound(ByteBuffer(string: String(repeating: "y", count: 1000))) }
        }
        let fresh = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder()))
        try fresh.writeInbound(ByteBuffer(string: "\r\n\r\r\n" + Self.second))
        #expect(try fresh.readInbound(as: SIPStreamFrame.self) == .pong)
        #expect(try fresh.readInbound(as: SIPStreamFrame.self) == .pong)
        #expect(try fresh.readInbound(as: SIPStreamFrame.self) == .message(ByteBuffer(string: Self.second)))
    }

    @Test("A message that arrives a byte at a time frames the same, up to the size limit (the head scan goes on where it stopped)")
    func byteByByteNearTheLimit() throws {
        let padding = String(repeating: "a", count: 60_000)
        let big = "OPTIONS sip:a@b SIP/2.0\r\nX-Pad: \(padding)\r\nContent-Length: 3\r\n\r\nabc"
        var decoder = SIPStreamDecoder()
        var buffer = ByteBuffer()
        var frames: [SIPStreamFrame] = []
        for byte in big.utf8 {
            buffer.writeInteger(byte)
            while let frame = try decoder.decode(buffer: &buffer) { frames.append(frame) }
        }
        #expect(frames == [.message(ByteBuffer(string: big))])
    }

    @Test("Content-Length is found in any header line, compact or long, and a message past the limit is refused once its head is complete")
    func contentLengthAndLimit() throws {
        var limits = SIPParserLimits()
        limits.maxMessageSize = 1024
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder(limits: limits)))
        #expect(throws: SIPStreamDecoder.DecodingError.messageTooLarge(1024)) {
            try channel.writeInbound(ByteBuffer(string: "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 999999999\r\n\r\n"))
        }
        #expect(throws: SIPStreamDecoder.DecodingError.badContentLength) {
            let other = EmbeddedChannel(handler: ByteToMessageHandler(SIPStreamDecoder()))
            try other.writeInbound(ByteBuffer(string: "OPTIONS sip:a@b SIP/2.0\r\nl: 9999999999\r\n\r\n"))
        }
    }
}
