public import NIOCore

/// A `multipart/*` body (RFC 2046 §5.1, as SIP uses it: RFC 3261 §7.4, RFC 5621): parts with
/// their own headers and bytes, binary content kept exactly.
public struct SIPMultipartBody: Sendable {
    public struct Part: Sendable {
        public var headers: SIPHeaders
        public var body: ByteBuffer

        public init(headers: SIPHeaders, body: ByteBuffer) {
            self.headers = headers
            self.body = body
        }

        public var contentType: String? {
            headers[.contentType].map { String($0.split(separator: ";").first ?? "").lowercased().filter { $0 != " " } }
        }
    }

    public var boundary: String
    public var parts: [Part]

    public init(boundary: String, parts: [Part]) {
        self.boundary = boundary
        self.parts = parts
    }

    /// Parses the body of `message`, whose Content-Type must be multipart with a boundary.
    public init(message: SIPMessage) throws(SIPParseError) {
        guard let type = message.headers[.contentType] else { throw SIPParseError("no Content-Type", at: 0) }
        var s = SIPScanner(type)
        let major = try s.token("media type").lowercased()
        try s.expect(UInt8(ascii: "/"), "'/'")
        _ = try s.token("media subtype")
        let parameters = try s.parameters()
        guard major == "multipart", let raw = parameters.value("boundary") ?? nil else {
            throw SIPParseError("not a multipart body with a boundary", at: 0)
        }
        let boundary = raw.hasPrefix("\"") ? String(raw.dropFirst().dropLast()) : raw
        try self.init(body: message.body, boundary: boundary)
    }

    public init(body: ByteBuffer, boundary: String) throws(SIPParseError) {
        self.boundary = boundary
        self.parts = []
        let bytes = Array(body.readableBytesView)
        let delimiter = Array(("--" + boundary).utf8)
        // Delimiters start a line: at offset 0 or after CRLF (RFC 2046 §5.1.1).
        var positions: [Int] = []
        var index = 0
        while let found = Self.find(delimiter, in: bytes, from: index) {
            if found == 0 || (found >= 2 && bytes[found - 2] == 0x0D && bytes[found - 1] == 0x0A) {
                positions.append(found)
            }
            index = found + delimiter.count
        }
        guard positions.count >= 2 else { throw SIPParseError("multipart body without delimiters", at: 0) }
        var closed = false
        for (number, start) in positions.enumerated() {
            let afterDelimiter = start + delimiter.count
            if afterDelimiter + 1 < bytes.count, bytes[afterDelimiter] == UInt8(ascii: "-"), bytes[afterDelimiter + 1] == UInt8(ascii: "-") {
                closed = true
                break
            }
            guard number + 1 < positions.count else { break }
            // The part runs from after the delimiter line to the CRLF before the next delimiter.
            guard let lineEnd = Self.find([0x0D, 0x0A], in: bytes, from: afterDelimiter) else {
                throw SIPParseError("multipart delimiter line not terminated", at: afterDelimiter)
            }
            let partStart = lineEnd + 2
            let partEnd = positions[number + 1] - 2
            guard partEnd >= partStart else { throw SIPParseError("empty multipart part", at: partStart) }
            parts.append(try Self.parsePart(Array(bytes[partStart..<partEnd]), offset: partStart))
        }
        guard closed else { throw SIPParseError("multipart body has no closing delimiter", at: bytes.count) }
    }

    private static func parsePart(_ bytes: [UInt8], offset: Int) throws(SIPParseError) -> Part {
        // Headers end at the first empty line; a part may have none (then it starts with CRLF).
        let headEnd: Int
        let bodyStart: Int
        if bytes.starts(with: [0x0D, 0x0A]) {
            headEnd = 0
            bodyStart = 2
        } else if let blank = find([0x0D, 0x0A, 0x0D, 0x0A], in: bytes, from: 0) {
            headEnd = blank + 2
            bodyStart = blank + 4
        } else {
            throw SIPParseError("multipart part without an empty line after its headers", at: offset)
        }
        var headers = SIPHeaders()
        for line in bytes[0..<headEnd].split(separator: 0x0A) {
            var text = String(decoding: line, as: UTF8.self)
            if text.hasSuffix("\r") { text.removeLast() }
            guard !text.isEmpty else { continue }
            guard let colon = text.firstIndex(of: ":") else {
                throw SIPParseError("multipart part header without ':'", at: offset)
            }
            let name = String(text[..<colon]).trimmingTrailingWhitespace
            let value = text[text.index(after: colon)...].trimmingCharacters(in: " \t")
            headers.add(SIPHeaderName(name), value)
        }
        return Part(headers: headers, body: ByteBuffer(bytes: bytes[bodyStart...]))
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
        var index = from
        let last = haystack.count - needle.count
        while index <= last {
            if haystack[index] == needle[0] {
                var match = true
                for offset in 1..<needle.count where haystack[index + offset] != needle[offset] {
                    match = false
                    break
                }
                if match { return index }
            }
            index += 1
        }
        return nil
    }

    /// The body bytes, with CRLF line ends and a closing delimiter.
    public func serialized() -> ByteBuffer {
        var out = ByteBuffer()
        for part in parts {
            out.writeString("--\(boundary)\r\n")
            for (name, value) in part.headers { out.writeString("\(name): \(value)\r\n") }
            out.writeString("\r\n")
            var body = part.body
            out.writeBuffer(&body)
            out.writeString("\r\n")
        }
        out.writeString("--\(boundary)--\r\n")
        return out
    }
}
