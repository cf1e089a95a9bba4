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
}
