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
///
/// Bounds (docs/RELIABILITY.md): no recursion; every byte is looked at once however slowly it
/// arrives (the scan of a head goes on where the last read left it, and a complete head is not
/// scanned again while its body arrives); a head must end, and a message fit, within
/// `limits.maxMessageSize`, else the connection is closed (its framing is lost). Stray CR/LF
/// between messages are skipped in a loop, any number of them.
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

    /// Where the framing of the message at the reader index stands; offsets count from it.
    private struct Scan {
        /// Bytes of the head looked at so far.
        var scanned = 0
        /// Start of the line being scanned.
        var lineStart = 0
        /// Line ends in a row (CR between them ignored): two end the head.
        var newlines = 0
        var contentLength: Int?
        /// Set once the head is complete: the whole message's length.
        var total: Int?
    }

    private var scan = Scan()

    public init(limits: SIPParserLimits = .default) {
        self.limits = limits
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> SIPStreamFrame? {
        if scan.scanned == 0 {
            // Between messages: keepalives (RFC 5626 §3.5.1) and stray line ends.
            while let first = buffer.readableBytesView.first, first == 0x0D || first == 0x0A {
                let view = buffer.readableBytesView
                if view.starts(with: [0x0D, 0x0A, 0x0D, 0x0A]) {
                    buffer.moveReaderIndex(forwardBy: 4)
                    return .ping
                }
                if view.starts(with: [0x0D, 0x0A]) {
                    // A lone CRLF is a pong, delivered at once (the keepalive timer waits for it).
                    // Peers write a ping's four bytes in one go; a ping split after its first
                    // CRLF would read as two pongs, which RFC 5626 framing cannot tell apart.
                    // "\r\n\r" waits for one more byte; anything but LF there makes it a pong.
                    if view.count == 3, view.last == 0x0D { return nil }
                    buffer.moveReaderIndex(forwardBy: 2)
                    return .pong
                }
                if view.count == 1, first == 0x0D { return nil }  // wait for the LF
                buffer.moveReaderIndex(forwardBy: 1)  // stray LF or CR
            }
            guard buffer.readableBytes > 0 else { return nil }
        }
        if scan.total == nil {
            try scanHead(buffer.readableBytesView)
        }
        guard let total = scan.total, buffer.readableBytes >= total else { return nil }
        scan = Scan()
        return .message(buffer.readSlice(length: total)!)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> SIPStreamFrame? {
        try decode(buffer: &buffer)
    }

    /// Goes on scanning the head from where the last call stopped: line by line, Content-Length
    /// (or its compact form `l`) taken from its line as the line ends, the head ending at
    /// CRLFCRLF (or LFLF). Sets `scan.total` once the head is complete.
    private mutating func scanHead(_ view: ByteBufferView) throws {
        let limit = limits.maxMessageSize
        var index = view.startIndex + scan.scanned
        let end = view.endIndex
        while index < end {
            let byte = view[index]
            let offset = index - view.startIndex
            if byte == 0x0A {
                if scan.newlines == 0, scan.contentLength == nil {
                    scan.contentLength = try Self.lengthValue(view[(view.startIndex + scan.lineStart)..<index])
                }
                scan.newlines += 1
                scan.lineStart = offset + 1
                if scan.newlines == 2 {
                    let headLength = offset + 1
                    let total = headLength + (scan.contentLength ?? 0)
                    guard total <= limit else { throw DecodingError.messageTooLarge(limit) }
                    scan.scanned = headLength
                    scan.total = total
                    return
                }
            } else if byte != 0x0D {
                scan.newlines = 0
            }
            index += 1
            if offset + 1 > limit { throw DecodingError.headTooLarge(limit) }
        }
        scan.scanned = index - view.startIndex
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
