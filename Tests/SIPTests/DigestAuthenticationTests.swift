import SIP
import Testing

@Suite("Digest authentication (RFC 8760)")
struct DigestAuthenticationTests {
    static let register = try! parseSIP(
        """
        REGISTER sip:example.com SIP/2.0
        Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKr1
        Max-Forwards: 70
        To: <sip:alice@example.com>
        From: <sip:alice@example.com>;tag=r1
        Call-ID: reg-1@192.0.2.7
        CSeq: 1 REGISTER
        Contact: <sip:alice@192.0.2.7>
        Content-Length: 0


        """)

    /// RFC 7616 §3.9.1 test vector (HTTP, but the arithmetic is the same for SIP).
    @Test(arguments: [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ])
    func rfc7616Vectors(_ algorithm: String, _ expected: String) throws {
        var response = SIPMessage.response(401)
        response.headers.add(
            .wwwAuthenticate,
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=\(algorithm), nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        )
        var client = DigestClient(username: "Mufasa", password: "Circle of Life", algorithms: [DigestAlgorithm(parameter: algorithm)!])
        let header = try client.authorize(response, method: "GET", uri: "/dir/index.html", cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
        let parameters = try DigestParameters.parse(header.value)
        #expect(header.name == .authorization)
        #expect(parameters["response"] == expected)
        #expect(parameters["nc"] == "00000001")
        #expect(parameters["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
    }

    @Test(arguments: [DigestAlgorithm.sha256, .md5, .sha256Session])
    func challengeAnswerVerify(_ algorithm: DigestAlgorithm) throws {
        let server = DigestServer(realm: "example.com", algorithms: [algorithm])
        guard case .challenge = server.verify(Self.register, password: { _ in "pw" }, now: 100) else {
            Issue.record("unauthenticated request must be challenged")
            return
        }
        let challenge = server.challengeResponse(to: Self.register, stale: false, toTag: "t", now: 100)
        #expect(challenge.statusCode == 401)
        var client = DigestClient(username: "alice", password: "pw", algorithms: [algorithm])
        let header = try client.authorize(challenge, method: .register, uri: "sip:example.com", cnonce: "c1")
        var retry = Self.register
        retry.headers.add(header.name, header.value)
        #expect(server.verify(retry, password: { $0 == "alice" ? "pw" : nil }, now: 110) == .authenticated(username: "alice"))
        // Wrong password, unknown user, expired nonce:
        #expect(server.verify(retry, password: { _ in "other" }, now: 110) == .challenge(reason: "wrong response digest", stale: false))
        #expect(server.verify(retry, password: { _ in nil }, now: 110) == .challenge(reason: "unknown user", stale: false))
        #expect(server.verify(retry, password: { _ in "pw" }, now: 100 + 301) == .challenge(reason: "nonce expired", stale: true))
    }

    @Test func clientPrefersSHA256WhenBothAreOffered() throws {
        let server = DigestServer(realm: "example.com", algorithms: [.md5, .sha256])
        let challenge = server.challengeResponse(to: Self.register, stale: false, toTag: "t", now: 0)
        #expect(challenge.headers.values(.wwwAuthenticate).count == 2)
        var client = DigestClient(username: "alice", password: "pw")
        let header = try client.authorize(challenge, method: .register, uri: "sip:example.com", cnonce: "c")
        #expect(try DigestParameters.parse(header.value)["algorithm"] == "SHA-256")
    }

    @Test func forgedNonceIsRefused() throws {
        let server = DigestServer(realm: "example.com")
        let other = DigestServer(realm: "example.com")
        let challenge = other.challengeResponse(to: Self.register, stale: false, toTag: "t", now: 0)
        var client = DigestClient(username: "alice", password: "pw")
        let header = try client.authorize(challenge, method: .register, uri: "sip:example.com", cnonce: "c")
        var retry = Self.register
        retry.headers.add(header.name, header.value)
        #expect(server.verify(retry, password: { _ in "pw" }, now: 1) == .challenge(reason: "nonce not issued by this server", stale: false))
    }

    @Test func proxyChallengeUsesProxyHeaders() throws {
        let server = DigestServer(realm: "example.com")
        let challenge = server.challengeResponse(to: Self.register, stale: false, proxy: true, toTag: "t", now: 0)
        #expect(challenge.statusCode == 407)
        var client = DigestClient(username: "alice", password: "pw")
        let header = try client.authorize(challenge, method: .register, uri: "sip:example.com", cnonce: "c")
        #expect(header.name == .proxyAuthorization)
    }
}
