/// Syntax checks of every header field the stack understands, run once by the parser so that
/// the typed views of a parsed message can be trusted (RFC 3261 §25.1 grammar; RFC 4475 §3.1.2
/// lists what must be refused).
enum SIPHeaderSyntax {
    static func validate(_ message: SIPMessage, limits: SIPParserLimits) throws(SIPParseError) {
        let headers = message.headers
        var firstCSeq: SIPCSeq?
        for index in 0..<headers.count {
            var s = headers.scanner(at: index)
            let name = headers.fields[index].name
            guard let known = name.known else { continue }
            switch known {
            case .via:
                _ = try SIPVia.parseList(&s)
            case .from, .to:
                try checkURILength(s, limits)
                _ = try SIPNameAddress.parseSingle(&s, header: name.description)
            case .contact:
                try checkURILength(s, limits)
                _ = try SIPContact.parse(&s)
            case .route, .recordRoute, .path, .serviceRoute:
                try checkURILength(s, limits)
                _ = try SIPNameAddress.parseList(&s, header: name.description)
            case .cseq:
                let cseq = try SIPCSeq.parse(&s)
                if firstCSeq == nil { firstCSeq = cseq }
            case .callID:
                try callID(&s)
            case .maxForwards:
                _ = try s.number(max: 255, "Max-Forwards")
                try s.expectEnd("Max-Forwards")
            case .contentLength:
                _ = try s.number(max: UInt64(limits.maxMessageSize), "Content-Length")
                try s.expectEnd("Content-Length")
            case .expires, .minExpires:
                // delta-seconds, RFC 3261 §25.1; values beyond 2^32-1 are refused (RFC 4475 §3.1.2.4).
                _ = try s.number(max: UInt64(UInt32.max), name.description)
                try s.expectEnd(name.description)
            case .retryAfter:
                // Retry-After = delta-seconds [ comment ] *( SEMI retry-param )
                _ = try s.number(max: UInt64(UInt32.max), "Retry-After")
            case .date:
                try SIPDate.validate(&s)
            case .contentType:
                try mediaType(&s)
            case .require, .proxyRequire, .supported, .unsupported, .allow, .contentEncoding:
                try tokenList(&s, header: name.description)
            default:
                continue
            }
        }
        // RFC 3261 §8.2 / RFC 4475 §3.1.2.17-18: the CSeq method must match the request method.
        if let line = message.requestLine, let cseq = firstCSeq, cseq.method != line.method {
            let at = headers.fields.first { $0.name == .cseq }?.range.lowerBound ?? 0
            throw SIPParseError("CSeq method \(cseq.method) does not match the request method \(line.method)", at: at)
        }
    }

    private static func checkURILength(_ s: SIPScanner, _ limits: SIPParserLimits) throws(SIPParseError) {
        // A header may hold several URIs; the bound is per URI, approximated per value.
        if s.end - s.index > limits.maxURILength * 4 {
            throw s.error("header value longer than the URI limit allows")
        }
    }

    /// callid = word [ "@" word ]
    private static func callID(_ s: inout SIPScanner) throws(SIPParseError) {
        let first = s.run(of: .word)
        guard !first.isEmpty else { throw s.error("empty Call-ID") }
        if s.peek == UInt8(ascii: "@") {
            s.index += 1
            guard !s.run(of: .word).isEmpty else { throw s.error("empty word after '@' in Call-ID") }
        }
        guard s.isAtEnd else { throw s.error("character not allowed in Call-ID") }
    }

    /// media-type = m-type SLASH m-subtype *(SEMI m-parameter)
    private static func mediaType(_ s: inout SIPScanner) throws(SIPParseError) {
        _ = try s.token("media type")
        try s.expect(UInt8(ascii: "/"), "'/' in media type")
        _ = try s.token("media subtype")
        _ = try s.parameters()
        try s.expectEnd("Content-Type")
    }

    /// option-tag lists and the like: token *(COMMA token); an empty value is allowed.
    private static func tokenList(_ s: inout SIPScanner, header: String) throws(SIPParseError) {
        s.skipWhitespace()
        if s.isAtEnd { return }
        repeat {
            _ = try s.token("token in \(header)")
        } while s.consume(UInt8(ascii: ","))
        try s.expectEnd(header)
    }
}
