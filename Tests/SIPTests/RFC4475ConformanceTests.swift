import NIOCore
import SIP
import Testing

/// Every message of RFC 4475 ("SIP Torture Test Messages") gets the verdict MANIFEST.tsv names.
@Suite("RFC 4475 torture messages")
struct RFC4475ConformanceTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var file: String
        var section: String
        var expected: String
        var note: String
        var testDescription: String { "\(file) (§\(section)) → \(expected)" }
    }

    static let cases: [Case] = {
        guard let bytes = try? Fixtures.bytes("rfc4475/MANIFEST.tsv") else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#") else { return nil }
            let columns = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard columns.count >= 4 else { return nil }
            return Case(file: columns[0], section: columns[1], expected: columns[2], note: columns[3])
        }
    }()

    @Test func manifestHasAll49Messages() {
        #expect(Self.cases.count == 49)
    }

    /// What a UAS does with the message: the response code (nil for "processed normally" and
    /// for a response, which is never answered), or a parse error.
    static func uasVerdict(_ bytes: [UInt8]) -> Result<SIPMessage, SIPParseError> {
        Result { () throws(SIPParseError) in try SIPMessageParser().parse(bytes) }
    }

    @Test(arguments: cases)
    func verdict(_ item: Case) throws {
        let bytes = try Fixtures.bytes("rfc4475/" + item.file)
        let parsed = Self.uasVerdict(bytes)
        let validator = SIPRequestValidator()
        switch item.expected {
        case "reject":
            guard case .failure(let error) = parsed else {
                Issue.record("\(item.file) parsed, but must be refused: \(item.note)")
                return
            }
            #expect(error.line >= 1 && error.column >= 1, "error has a position: \(error)")
        case "parse", "compat":
            let message = try parsed.get()
            try expectRoundTrip(message, item.file)
            if let line = message.requestLine {
                let rejection = validator.check(message)
                if validator.allowedMethods.contains(line.method) {
                    #expect(rejection == nil, "\(item.file): \(String(describing: rejection))")
                } else {
                    // RFC 4475 §3.1.1.2, §3.1.1.5: an unknown method gets 501 from a UAS; one it
                    // recognizes but does not allow (MESSAGE, §3.1.1.11) 405 (RFC 3261 §8.2.1).
                    #expect(rejection?.statusCode == (SIPMethod.standard.contains(line.method) ? 405 : 501), "\(item.file)")
                    #expect(rejection?.headers.contains { $0.name == "Allow" } == true)
                }
            }
        default:
            #expect(item.expected.hasPrefix("code:"))
            let code = Int(item.expected.dropFirst(5))
            let message = try parsed.get()
            if let rejection = validator.check(message) {
                #expect(rejection.statusCode == code, "\(item.file): \(rejection.reason)")
            } else {
                // Only an authentication failure is left for the registrar to find.
                #expect(code == 401)
                let registrar = DigestServer(realm: "example.com", algorithms: [.sha256, .md5])
                let outcome = registrar.verify(message, password: { _ in "secret" }, now: 0)
                guard case .challenge(_, let stale) = outcome else {
                    Issue.record("registrar accepted \(item.file)")
                    return
                }
                let response = registrar.challengeResponse(to: message, stale: stale, toTag: "t1", now: 0)
                #expect(response.statusCode == 401)
                #expect(response.headers.contains(.wwwAuthenticate))
            }
        }
    }

    /// serialize(parse(x)) parses again to the same start line, headers and body.
    func expectRoundTrip(_ message: SIPMessage, _ file: String) throws {
        let wire = SIPMessageSerializer.serialize(message)
        let again = try SIPMessageParser().parse(wire, framing: .stream)
        #expect(again.startLine == message.startLine, "\(file) start line survives")
        #expect(again.headers.count == message.headers.count + (message.headers.contains(.contentLength) ? 0 : 1))
        for index in 0..<message.headers.count {
            #expect(again.headers.name(at: index) == message.headers.name(at: index))
        }
        #expect(again.body == message.body, "\(file) body survives")
        let normalized = SIPMessageSerializer.normalized(message)
        _ = try SIPMessageParser().parse(normalized, framing: .stream)
    }
}
