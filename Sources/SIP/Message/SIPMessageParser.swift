public import NIOCore

/// Parses RFC 3261 messages from bytes: start line, header fields (compact forms, line folding,
/// case-insensitive names), body framing by Content-Length, and a syntax check of every header
/// this stack understands, so that a message it hands on is well-formed.
///
/// What a UAS does with a well-formed but unacceptable request (missing headers, unsupported
/// URI scheme or extension, duplicate single-value headers, …) is `SIPRequestValidator`'s job.
public struct SIPMessageParser: Sendable {
    /// How the message was delimited (RFC 3261 §18.3).
    public enum Framing: Sendable {
        /// One UDP datagram: Content-Length optional; bytes past it are discarded.
        case datagram
        /// Exactly one message cut from a stream by `SIPStreamFramer`: Content-Length required.
        case stream
    }

    public var limits: SIPParserLimits

    public init(limits: SIPParserLimits = .default) {
        self.limits = limits
    }

    public func parse(_ buffer: ByteBuffer, framing: Framing = .datagram) throws(SIPParseError) -> SIPMessage {
        let bytes = buffer.readableBytesView
        guard bytes.count <= limits.maxMessageSize else {
            throw SIPParseError("message of \(bytes.count) bytes exceeds the limit of \(limits.maxMessageSize)", at: limits.maxMessageSize)
        }
        var storage = [UInt8](bytes)
        return try parse(storage: &storage, bodySource: buffer, framing: framing)
    }

    public func parse(_ bytes: [UInt8], framing: Framing = .datagram) throws(SIPParseError) -> SIPMessage {
        guard bytes.count <= limits.maxMessageSize else {
            throw SIPParseError("message of \(bytes.count) bytes exceeds the limit of \(limits.maxMessageSize)", at: limits.maxMessageSize)
        }
        var storage = bytes
        return try parse(storage: &storage, bodySource: nil, framing: framing)
    }

    public func parse(_ text: String, framing: Framing = .datagram) throws(SIPParseError) -> SIPMessage {
        try parse(Array(text.utf8), framing: framing)
    }

    private func parse(storage: inout [UInt8], bodySource: ByteBuffer?, framing: Framing) throws(SIPParseError) -> SIPMessage {
        do {
            return try parseUnpositioned(storage: &storage, bodySource: bodySource, framing: framing)
        } catch {
            throw Self.positioned(error, in: storage)
        }
    }

    /// Fills in 1-based line and column from the byte offset.
    static func positioned(_ error: SIPParseError, in bytes: [UInt8]) -> SIPParseError {
        var error = error
        let offset = min(error.offset, bytes.count)
        var line = 1
        var lineStart = 0
        for index in 0..<offset where bytes[index] == 0x0A {
            line += 1
            lineStart = index + 1
        }
        error.line = line
        error.column = offset - lineStart + 1
        return error
    }

    private func parseUnpositioned(storage: inout [UInt8], bodySource: ByteBuffer?, framing: Framing) throws(SIPParseError) -> SIPMessage {
        let count = storage.count
        // RFC 3261 §7.5: ignore CRLFs before the start line.
        var index = 0
        while index < count, storage[index] == 0x0D || storage[index] == 0x0A { index += 1 }
        guard index < count else { throw SIPParseError("empty message", at: index) }

        let startEnd = try lineEnd(storage, from: index)
        let startLine = try parseStartLine(storage, index..<startEnd.content)
        index = startEnd.next

        // Header fields. Folded lines (CRLF followed by SP/HTAB) are blanked in place: the CRLF
        // becomes two spaces, which RFC 3261 §7.3.1 makes equivalent, and offsets do not move.
        var fields: [SIPHeaders.Field] = []
        fields.reserveCapacity(24)
        var headEnd = -1
        while index < count {
            let end = try lineEnd(storage, from: index)
            if end.content == index {  // empty line: end of the head
                headEnd = end.next
                break
            }
            let byte = storage[index]
            if byte == 0x20 || byte == 0x09 {
                throw SIPParseError("continuation line without a header field before it", at: index)
            }
            guard fields.count < limits.maxHeaderCount else {
                throw SIPParseError("more than \(limits.maxHeaderCount) header fields", at: index)
            }
            // field-name: token, then optional white space and ':'
            let nameStart = index
            var cursor = index
            while cursor < end.content, storage[cursor].isSIPToken { cursor += 1 }
            let nameEnd = cursor
            guard nameEnd > nameStart else { throw SIPParseError("expected a header name", at: nameStart) }
            while cursor < end.content, storage[cursor].isSIPWhitespace { cursor += 1 }
            guard cursor < end.content, storage[cursor] == UInt8(ascii: ":") else {
                throw SIPParseError("expected ':' after header name", at: cursor)
            }
            cursor += 1
            // Value, with continuation lines.
            var valueEnd = end.content
            var next = end.next
            while next < count, storage[next] == 0x20 || storage[next] == 0x09 {
                var indent = next
                while indent < count, storage[indent] == 0x20 || storage[indent] == 0x09 { indent += 1 }
                for blank in valueEnd..<indent { storage[blank] = 0x20 }
                let more = try lineEnd(storage, from: next)
                valueEnd = more.content
                next = more.next
            }
            guard valueEnd - nameStart <= limits.maxHeaderLength else {
                throw SIPParseError("header field longer than \(limits.maxHeaderLength) bytes", at: nameStart)
            }
            while cursor < valueEnd, storage[cursor].isSIPWhitespace { cursor += 1 }
            var trimmedEnd = valueEnd
            while trimmedEnd > cursor, storage[trimmedEnd - 1].isSIPWhitespace { trimmedEnd -= 1 }
            let name = storage.withUnsafeBytes { raw in
                SIPHeaderName(lookup: UnsafeRawBufferPointer(rebasing: raw[nameStart..<nameEnd]))
            }
            fields.append(SIPHeaders.Field(name: name, range: cursor..<trimmedEnd))
            index = next
        }
        if headEnd < 0 {
            // A datagram that ends right after a header line: the empty line was lost on the way
            // (some captures, RFC 4475 §3.1.2.15 `baddn`). The head is complete; there is no body.
            guard framing == .datagram else {
                throw SIPParseError("message ends inside the header section (no empty line)", at: count)
            }
            headEnd = count
        }

        // Body framing, RFC 3261 §18.3 and §20.14.
        let available = count - headEnd
        var bodyLength = available
        var lengthField: SIPHeaders.Field?
        for field in fields where field.name == .contentLength {
            guard lengthField == nil else {
                throw SIPParseError("more than one Content-Length (RFC 4475 §3.3.9)", at: field.range.lowerBound)
            }
            lengthField = field
        }
        if let field = lengthField {
            var scanner = SIPScanner(storage, range: field.range)
            let length = try scanner.number(max: UInt64(limits.maxMessageSize), "Content-Length")
            try scanner.expectEnd("Content-Length")
            guard length <= available else {
                throw SIPParseError("Content-Length \(length) is larger than the \(available) bytes of body present", at: field.range.lowerBound)
            }
            bodyLength = Int(length)
        } else if framing == .stream {
            throw SIPParseError("Content-Length is required on stream transports (RFC 3261 §18.3)", at: headEnd)
        }
        var body = ByteBuffer()
        if bodyLength > 0 {
            if let bodySource {
                body = bodySource.getSlice(at: bodySource.readerIndex + headEnd, length: bodyLength)!
            } else {
                body = ByteBuffer(bytes: storage[headEnd..<(headEnd + bodyLength)])
            }
        }
        // Only the head stays in the header storage.
        storage.removeSubrange(headEnd...)
        let message = SIPMessage(startLine: startLine, headers: SIPHeaders(storage: storage, fields: fields), body: body)
        try SIPHeaderSyntax.validate(message, limits: limits)
        return message
    }

    /// The end of the line starting at `from`: where its content ends (before CR LF or LF) and
    /// where the next line starts. A line that never ends is an error.
    @inline(__always)
    private func lineEnd(_ bytes: [UInt8], from: Int) throws(SIPParseError) -> (content: Int, next: Int) {
        var index = from
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            if byte == 0x0A {
                let content = index > from && bytes[index - 1] == 0x0D ? index - 1 : index
                return (content, index + 1)
            }
            if byte == 0x0D, index + 1 < count, bytes[index + 1] != 0x0A {
                throw SIPParseError("bare CR in the message head", at: index)
            }
            index += 1
        }
        throw SIPParseError("message ends inside a line (no CRLF)", at: count)
    }

    // MARK: Start line

    private func parseStartLine(_ bytes: [UInt8], _ range: Range<Int>) throws(SIPParseError) -> SIPStartLine {
        var s = SIPScanner(bytes, range: range)
        if range.count >= 4, bytes[range.lowerBound].asciiLowercased == UInt8(ascii: "s"),
            bytes[range.lowerBound + 1].asciiLowercased == UInt8(ascii: "i"),
            bytes[range.lowerBound + 2].asciiLowercased == UInt8(ascii: "p"),
            bytes[range.lowerBound + 3] == UInt8(ascii: "/")
        {
            // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
            let version = try parseVersion(&s)
            guard s.peek == 0x20 else { throw s.error("expected one space after the SIP version") }
            s.index += 1
            let codeStart = s.index
            while s.index < s.end, s.bytes[s.index].isSIPDigit { s.index += 1 }
            guard s.index - codeStart == 3 else {
                throw SIPParseError("status code must be three digits (RFC 3261 §7.2)", at: codeStart)
            }
            let code = Int(s.string(codeStart..<s.index))!
            guard code >= 100 else { throw SIPParseError("status code below 100", at: codeStart) }
            var reason = ""
            if !s.isAtEnd {
                guard s.peek == 0x20 else { throw s.error("expected a space after the status code") }
                s.index += 1
                // Reason-Phrase: any text but CR/LF, UTF-8 allowed (RFC 4475 §3.1.1.12).
                for index in s.index..<s.end where bytes[index] < 0x20 && bytes[index] != 0x09 {
                    throw SIPParseError("control character in the reason phrase", at: index)
                }
                reason = s.string(s.index..<s.end)
            }
            return .response(SIPStatusLine(version: version, statusCode: code, reasonPhrase: reason))
        }
        // Request-Line = Method SP Request-URI SP SIP-Version CRLF (exactly one SP each).
        let methodStart = s.index
        while s.index < s.end, s.bytes[s.index].isSIPToken { s.index += 1 }
        guard s.index > methodStart else { throw s.error("expected a method or 'SIP/' at the start of the message") }
        let method = SIPMethod(s.string(methodStart..<s.index))
        guard s.peek == 0x20 else { throw s.error("expected one space after the method") }
        s.index += 1
        guard let uriEnd = bytes[s.index..<s.end].firstIndex(of: 0x20) else {
            throw s.error("expected Request-URI and SIP version")
        }
        guard uriEnd - s.index <= limits.maxURILength else {
            throw s.error("Request-URI longer than \(limits.maxURILength) bytes")
        }
        var uriScanner = SIPScanner(bytes, range: s.index..<uriEnd)
        let uri = try SIPURIParser.parse(&uriScanner, context: .requestURI)
        s.index = uriEnd + 1
        let version = try parseVersion(&s)
        guard s.isAtEnd else { throw s.error("unexpected characters after the SIP version") }
        return .request(SIPRequestLine(method: method, uri: uri, version: version))
    }

    /// SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT (RFC 3261 §7.1; "SIP" case-insensitive).
    private func parseVersion(_ s: inout SIPScanner) throws(SIPParseError) -> SIPVersion {
        guard s.end - s.index >= 4,
            s.bytes[s.index].asciiLowercased == UInt8(ascii: "s"),
            s.bytes[s.index + 1].asciiLowercased == UInt8(ascii: "i"),
            s.bytes[s.index + 2].asciiLowercased == UInt8(ascii: "p"),
            s.bytes[s.index + 3] == UInt8(ascii: "/")
        else { throw s.error("expected 'SIP/' version") }
        s.index += 4
        let major = try s.number(max: 999, "SIP major version")
        guard s.peek == UInt8(ascii: ".") else { throw s.error("expected '.' in the SIP version") }
        s.index += 1
        let minor = try s.number(max: 999, "SIP minor version")
        return SIPVersion(major: Int(major), minor: Int(minor))
    }
}
