public import NIOCore
public import SIP

/// What a stream connection carries: messages, and the RFC 5626 §3.5.1 CRLF keepalives.
public enum SIPStreamFrame: Sendable, Equatable {
    /// One whole message (head and Content-Length bytes of body).
    case message(ByteBuffer)
    /// CRLFCRLF from the peer: answer with a pong.
    case ping
    /// A single CRLF answering our ping.
    case pong
}

/// Cuts a TCP/TLS byte stream into SIP messages by the empty line and Content-Length
/// (RFC 3261 §18.3), whatever way the bytes are split or coalesced into reads.
public struct SIPStreamDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = SIPStreamFrame

    public enum DecodingError: Error, Equatable, CustomStringConvertible {
        case headTooLarge(Int)
        case badContentLength
        case messageTooLarge(Int)

        public var description: String {
            switch self {
            case .headTooLarge(let limit): "no end of the message head within \(limit) bytes"
            case .badContentLength: "Content-Length is missing a number or out of range"
            case .messageTooLarge(let limit): "message larger than \(limit) bytes"
            }
        }
    }

    public let limits: SIPParserLimits

    public init(limits: SIPParserLimits = .default) {
        self.limits = limits
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> SIPStreamFrame? {
        let view = buffer.readableBytesView
        guard let first = view.first else { return nil }
        if first == 0x0D || first == 0x0A {
            // Keepalives sit between messages (RFC 5626 §3.5.1).
            if view.starts(with: [0x0D, 0x0A, 0x0D, 0x0A]) {
                buffer.moveReaderIndex(forwardBy: 4)
                return .ping
            }
            if view.starts(with: [0x0D, 0x0A]) {
                // A lone CRLF is a pong, delivered at once (the keepalive timer waits for it).
                // Peers write a ping's four bytes in one go; a ping split after its first CRLF
                // would read as two pongs, which RFC 5626 framing cannot tell apart.
                if view.count == 2 || view.dropFirst(2).first != 0x0D {
                    buffer.moveReaderIndex(forwardBy: 2)
                    return .pong
                }
                return nil  // "\r\n\r" so far: wait for the ping's last byte
            }
            if view.count == 1, first == 0x0D { return nil }  // wait for the LF
            buffer.moveReaderIndex(forwardBy: 1)  // stray LF or CR
            return try decode(buffer: &buffer)
        }
        guard let headEnd = Self.endOfHead(view, limit: limits.maxMessageSize) else {
            if view.count > limits.maxMessageSize { throw DecodingError.headTooLarge(limits.maxMessageSize) }
            return nil
        }
        let bodyLength = try Self.contentLength(view, headEnd: headEnd)
        let total = headEnd + bodyLength
        guard total <= limits.maxMessageSize else { throw DecodingError.messageTooLarge(limits.maxMessageSize) }
        guard view.count >= total else { return nil }
        return .message(buffer.readSlice(length: total)!)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> SIPStreamFrame? {
        try decode(buffer: &buffer)
    }

    /// Offset just past the CRLFCRLF (or LFLF) ending the head.
    static func endOfHead(_ view: ByteBufferView, limit: Int) -> Int? {
        var index = view.startIndex
        let end = view.endIndex
        var newlines = 0
        while index < end {
            let byte = view[index]
            if byte == 0x0A {
                newlines += 1
                if newlines == 2 { return index - view.startIndex + 1 }
            } else if byte != 0x0D {
                newlines = 0
            }
            index += 1
            if index - view.startIndex > limit { return nil }
        }
        return nil
    }

    /// Finds Content-Length (or its compact form `l`) in the head; 0 when absent (the parser then
    /// refuses the message, since streams require it).
    static func contentLength(_ view: ByteBufferView, headEnd: Int) throws -> Int {
        var lineStart = view.startIndex
        let end = view.startIndex + headEnd
        var index = lineStart
        while index < end {
            if view[index] == 0x0A {
                if let value = try lengthValue(view[lineStart..<index]) { return value }
                lineStart = index + 1
            }
            index += 1
        }
        return 0
    }

    private static func lengthValue(_ line: ByteBufferView.SubSequence) throws -> Int? {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        var nameEnd = colon
        while nameEnd > line.startIndex, line[nameEnd - 1] == 0x20 || line[nameEnd - 1] == 0x09 { nameEnd -= 1 }
        let name = line[line.startIndex..<nameEnd]
        let isLength: Bool
        if name.count == 1 {
            isLength = name.first! | 0x20 == UInt8(ascii: "l")
        } else if name.count == 14 {
            isLength = zip(name, "content-length".utf8).allSatisfy { $0 | 0x20 == $1 }
        } else {
            isLength = false
        }
        guard isLength else { return nil }
        var value = 0
        var digits = 0
        for byte in line[(colon + 1)...] {
            if byte >= 0x30 && byte <= 0x39 {
                value = value * 10 + Int(byte - 0x30)
                digits += 1
                guard digits <= 9 else { throw DecodingError.badContentLength }
            } else if byte == 0x20 || byte == 0x09 || byte == 0x0D {
                continue
            } else {
                throw DecodingError.badContentLength
            }
        }
        guard digits > 0 else { throw DecodingError.badContentLength }
        return value
    }
}
