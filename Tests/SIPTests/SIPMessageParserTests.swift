import NIOCore
import SIP
import Testing

@Suite("Message parser and serializer")
struct SIPMessageParserTests {
    static let register = """
        REGISTER sip:registrar.example.com SIP/2.0
        v: SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bK-reg1;rport;received=2001:db8::9:255
        Max-Forwards: 70
        t: Bob <sip:bob@example.com>
        f: "Bob" <sip:bob@example.com>;tag=456248
        i: 843817637684230@998sdasdh09
        CSeq: 1826 REGISTER
        m: <sip:bob@[2001:db8::10]:5070;transport=tcp>;expires=3600;+sip.instance="<urn:uuid:1>";reg-id=1
        l: 0


        """

    @Test func compactFormsAndIPv6ViaParse() throws {
        let message = try parseSIP(Self.register)
        #expect(message.requestLine?.method == .register)
        let via = try #require(message.topVia)
        #expect(via.host == "2001:db8::9:1")
        #expect(via.port == 5070)
        #expect(via.rport == .some(nil))
        #expect(via.received == "2001:db8::9:255")
        #expect(via.sentBy == "[2001:db8::9:1]:5070")
        #expect(message.to?.sipURI?.user == "bob")
        #expect(message.from?.tag == "456248")
        #expect(message.callID == "843817637684230@998sdasdh09")
        #expect(message.cseq == SIPCSeq(1826, .register))
        let contact = try #require(message.contacts.first)
        #expect(contact.sipURI?.host == "2001:db8::10")
        #expect(contact.sipURI?.transport == "tcp")
        #expect(contact.parameters.value("+sip.instance") == "\"<urn:uuid:1>\"")
        #expect(contact.parameters.value("expires") == "3600")
    }

    @Test func serializedFormUsesLongNamesAndReparsesEqual() throws {
        let message = try parseSIP(Self.register)
        let text = SIPMessageSerializer.string(message)
        #expect(text.hasPrefix("REGISTER sip:registrar.example.com SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9:1]:5070;"))
        #expect(text.contains("\r\nTo: Bob <sip:bob@example.com>\r\n"))
        #expect(text.contains("\r\nCall-ID: 843817637684230@998sdasdh09\r\n"))
        #expect(text.hasSuffix("Content-Length: 0\r\n\r\n"))
        let again = try SIPMessageParser().parse(text, framing: .stream)
        #expect(again.topVia == message.topVia)
        #expect(again.contacts == message.contacts)
    }

    @Test func foldedHeaderValuesUnfoldToOneLine() throws {
        let message = try parseSIP(
            """
            OPTIONS sip:a@example.com SIP/2.0
            Via: SIP/2.0/UDP h.example.com
             ;branch=z9hG4bK1
            Subject: first
            \tsecond
            To: <sip:a@example.com>
            From: <sip:b@example.com>;tag=1
            Call-ID: 1
            CSeq: 1 OPTIONS
            Content-Length: 0


            """)
        #expect(message.topVia?.branch == "z9hG4bK1")
        #expect(message.headers[.subject]?.split(separator: " ").joined(separator: " ") == "first second")
        #expect(!SIPMessageSerializer.string(message).contains("\r\n\t"))
    }

    @Test func errorsNameLineAndColumn() {
        do {
            _ = try parseSIP("INVITE sip:a@example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCSeq: x INVITE\n\n")
            Issue.record("must not parse")
        } catch {
            #expect(error.line == 3)
            #expect(error.column == 7)
            #expect(error.reason.contains("CSeq"))
        }
    }

    @Test func streamFramingRequiresContentLength() {
        #expect(throws: SIPParseError.self) {
            try parseSIP("OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\n\n", framing: .stream)
        }
    }

    @Test func datagramBodyIsCutAtContentLength() throws {
        let message = try parseSIP("MESSAGE sip:a@b SIP/2.0\nCSeq: 1 MESSAGE\nContent-Length: 5\n\nHello, and more")
        #expect(message.body == ByteBuffer(string: "Hello"))
    }

    @Test func datagramWithoutContentLengthTakesTheRest() throws {
        let message = try parseSIP("MESSAGE sip:a@b SIP/2.0\nCSeq: 1 MESSAGE\n\nall of it")
        #expect(message.body == ByteBuffer(string: "all of it"))
    }

    // MARK: Limits

    @Test func oversizedMessageIsRefused() {
        var limits = SIPParserLimits()
        limits.maxMessageSize = 1000
        let text = "OPTIONS sip:a@b SIP/2.0\r\nSubject: " + String(repeating: "x", count: 2000) + "\r\n\r\n"
        #expect(throws: SIPParseError.self) { try SIPMessageParser(limits: limits).parse(text) }
    }

    @Test func tooManyHeadersAreRefused() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\n" + String(repeating: "X-A: 1\r\n", count: 300) + "\r\n"
        do {
            _ = try SIPMessageParser().parse(text)
            Issue.record("300 headers must be refused")
        } catch {
            #expect(error.reason.contains("header fields"))
        }
    }

    @Test func overlongHeaderIsRefused() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nX-Long: " + String(repeating: "y", count: 9000) + "\r\n\r\n"
        do {
            _ = try SIPMessageParser().parse(text)
            Issue.record("a 9000-byte header must be refused")
        } catch {
            #expect(error.reason.contains("longer than"))
        }
    }

    @Test func overlongRequestURIIsRefused() {
        var limits = SIPParserLimits()
        limits.maxURILength = 100
        let text = "OPTIONS sip:" + String(repeating: "u", count: 200) + "@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n"
        do {
            _ = try SIPMessageParser(limits: limits).parse(text)
            Issue.record("a 200-byte Request-URI must be refused with a 100-byte limit")
        } catch {
            #expect(error.reason.contains("Request-URI longer"))
        }
    }

    @Test func garbageNeverCrashes() {
        var generator = SplitMix64(seed: 42)
        let base = Array(Self.register.replacingLF().utf8)
        for _ in 0..<2000 {
            var bytes = base
            for _ in 0..<Int(generator.next() % 8) + 1 {
                let index = Int(generator.next() % UInt64(bytes.count))
                bytes[index] = UInt8(truncatingIfNeeded: generator.next())
            }
            if let message = try? SIPMessageParser().parse(bytes) {
                _ = SIPMessageSerializer.serialize(message)
            }
        }
    }

    // MARK: Multipart (RFC 4475 §3.1.1.11)

    @Test func multipartBodyKeepsBinaryPartsExact() throws {
        let message = try SIPMessageParser().parse(try Fixtures.bytes("rfc4475/mpart01.dat"))
        let multipart = try SIPMultipartBody(message: message)
        #expect(multipart.parts.count == 2)
        #expect(multipart.parts[0].contentType == "text/plain")
        #expect(multipart.parts[0].body == ByteBuffer(string: "Hello"))
        #expect(multipart.parts[1].contentType == "application/octet-stream")
        #expect(multipart.parts[1].body.getInteger(at: multipart.parts[1].body.readerIndex, as: UInt8.self) == 0x30)  // DER SEQUENCE
        // Re-serialized, it parses to the same parts.
        let again = try SIPMultipartBody(body: multipart.serialized(), boundary: multipart.boundary)
        #expect(again.parts.map(\.body) == multipart.parts.map(\.body))
    }
}

/// A small deterministic generator for the mutation test.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
