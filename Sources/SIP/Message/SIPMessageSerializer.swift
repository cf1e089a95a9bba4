public import NIOCore

/// Writes messages to bytes: canonical header names, `Name: value` with one space, CRLF line
/// ends, and a Content-Length that always matches the body (RFC 3261 §7.3.1, §20.14).
public enum SIPMessageSerializer {
    /// Appends `message` to `buffer` as it goes on the wire.
    public static func write(_ message: SIPMessage, into buffer: inout ByteBuffer) {
        writeStartLine(message.startLine, into: &buffer)
        var wroteLength = false
        message.headers.storage.withUnsafeBytes { storage in
            for field in message.headers.fields {
                if field.name == .contentLength {
                    guard !wroteLength else { continue }
                    wroteLength = true
                    buffer.writeStaticString("Content-Length: ")
                    buffer.writeString(String(message.body.readableBytes))
                    buffer.writeStaticString("\r\n")
                    continue
                }
                buffer.writeString(field.name.description)
                buffer.writeStaticString(": ")
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: storage[field.range]))
                buffer.writeStaticString("\r\n")
            }
        }
        if !wroteLength {
            buffer.writeStaticString("Content-Length: ")
            buffer.writeString(String(message.body.readableBytes))
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
        var body = message.body
        buffer.writeBuffer(&body)
    }

    public static func serialize(_ message: SIPMessage) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(message.headers.storage.count + message.body.readableBytes + 64)
        write(message, into: &buffer)
        return buffer
    }

    /// The message as text (the body decoded as UTF-8, invalid bytes replaced).
    public static func string(_ message: SIPMessage) -> String {
        String(buffer: serialize(message))
    }

    /// A normalized rendering for people (`sip-check`): structured headers rewritten in their
    /// canonical form (`<…>` around URIs, no optional white space, one Via per line), others
    /// with folding removed and runs of white space collapsed.
    public static func normalized(_ message: SIPMessage) -> ByteBuffer {
        var copy = message
        var headers = SIPHeaders()
        for index in 0..<message.headers.count {
            let name = message.headers.name(at: index)
            var s = message.headers.scanner(at: index)
            switch name {
            case .via:
                if let vias = try? SIPVia.parseList(&s) {
                    for via in vias { headers.add(name, via.description) }
                    continue
                }
            case .from, .to:
                if let value = try? SIPNameAddress.parseSingle(&s, header: name.description) {
                    headers.add(name, value.description)
                    continue
                }
            case .contact:
                if case .addresses(let list)? = try? SIPContact.parse(&s) {
                    for value in list { headers.add(name, value.description) }
                    continue
                }
            case .route, .recordRoute, .path, .serviceRoute:
                if let list = try? SIPNameAddress.parseList(&s, header: name.description) {
                    for value in list { headers.add(name, value.description) }
                    continue
                }
            case .cseq:
                if let cseq = try? SIPCSeq.parse(&s) {
                    headers.add(name, cseq.description)
                    continue
                }
            case .maxForwards, .expires, .minExpires:
                if let number = UInt64(message.headers.value(at: index)) {
                    headers.add(name, String(number))
                    continue
                }
            default:
                break
            }
            headers.add(name, collapsingWhitespace(message.headers.value(at: index)))
        }
        copy.headers = headers
        return serialize(copy)
    }

    static func collapsingWhitespace(_ value: String) -> String {
        var out = ""
        var lastWasSpace = false
        var inQuotes = false
        var escaped = false
        for char in value {
            if inQuotes {
                out.append(char)
                if escaped { escaped = false } else if char == "\\" { escaped = true } else if char == "\"" { inQuotes = false }
                continue
            }
            if char == " " || char == "\t" {
                if !lastWasSpace { out.append(" ") }
                lastWasSpace = true
                continue
            }
            if char == "\"" { inQuotes = true }
            lastWasSpace = false
            out.append(char)
        }
        return out
    }

    static func writeStartLine(_ line: SIPStartLine, into buffer: inout ByteBuffer) {
        switch line {
        case .request(let request):
            buffer.writeString(request.method.rawValue)
            buffer.writeStaticString(" ")
            buffer.writeString(request.uri.description)
            buffer.writeStaticString(" ")
            buffer.writeString(request.version.description)
        case .response(let status):
            buffer.writeString(status.version.description)
            buffer.writeStaticString(" ")
            buffer.writeString(String(status.statusCode))
            buffer.writeStaticString(" ")
            buffer.writeString(status.reasonPhrase)
        }
        buffer.writeStaticString("\r\n")
    }
}
