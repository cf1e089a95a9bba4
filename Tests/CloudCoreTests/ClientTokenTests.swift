import Crypto
import Foundation
import Testing
@testable import CloudCore

@Suite("Client tokens (JWT ES256)")
struct ClientTokenTests {
    let key = P256.Signing.PrivateKey()
    let now = 1_800_000_000
    var verifier: ClientTokenVerifier { ClientTokenVerifier(key: key.publicKey, audience: "sips:core.symphony.example") }

    func claims(expiresIn: Int = 3600, audience: String = "sips:core.symphony.example", notBefore: Int? = nil) -> ClientTokenClaims {
        ClientTokenClaims(subject: "alice", audience: audience, issuedAt: now, expiresAt: now + expiresIn, notBefore: notBefore, tokenID: "t1")
    }

    @Test("A good token verifies and gives its claims")
    func good() throws {
        let token = try ClientTokenSigner(key: key).token(for: claims())
        #expect(try verifier.verify(token, now: now + 10) == claims())
    }

    @Test("Expired (past the leeway), not yet valid, wrong audience, wrong key, tampered: each refused with its reason")
    func refused() throws {
        let signer = ClientTokenSigner(key: key)
        #expect(throws: ClientTokenError.expired(at: now + 60)) { try verifier.verify(try signer.token(for: claims(expiresIn: 60)), now: now + 91) }
        #expect(try verifier.verify(try signer.token(for: claims(expiresIn: 60)), now: now + 89).subject == "alice", "within the 30 s leeway")
        #expect(throws: ClientTokenError.notYetValid(until: now + 600)) { try verifier.verify(try signer.token(for: claims(notBefore: now + 600)), now: now) }
        #expect(throws: ClientTokenError.wrongAudience("sips:other.example")) { try verifier.verify(try signer.token(for: claims(audience: "sips:other.example")), now: now) }
        let stranger = ClientTokenSigner(key: P256.Signing.PrivateKey())
        #expect(throws: ClientTokenError.badSignature) { try verifier.verify(try stranger.token(for: claims()), now: now) }
        // Change the subject without re-signing.
        let parts = try signer.token(for: claims()).split(separator: ".")
        let forged = Base64URL.encode(Data(#"{"aud":"sips:core.symphony.example","exp":9999999999,"iat":1,"sub":"admin"}"#.utf8))
        #expect(throws: ClientTokenError.badSignature) { try verifier.verify("\(parts[0]).\(forged).\(parts[2])", now: now) }
    }

    @Test("Claims at the ends of Int (exp, nbf) are compared without arithmetic on them: no overflow trap")
    func extremeClaims() throws {
        let signer = ClientTokenSigner(key: key)
        let forever = ClientTokenClaims(subject: "alice", audience: "sips:core.symphony.example", issuedAt: now, expiresAt: .max, tokenID: "t1")
        #expect(try verifier.verify(try signer.token(for: forever), now: now).subject == "alice")
        let past = ClientTokenClaims(subject: "alice", audience: "sips:core.symphony.example", issuedAt: now, expiresAt: .min, tokenID: "t1")
        #expect(throws: ClientTokenError.expired(at: .min)) { try verifier.verify(try signer.token(for: past), now: now) }
        let never = ClientTokenClaims(subject: "alice", audience: "sips:core.symphony.example", issuedAt: now, expiresAt: now + 60, notBefore: .max, tokenID: "t1")
        #expect(throws: ClientTokenError.notYetValid(until: .max)) { try verifier.verify(try signer.token(for: never), now: now) }
    }

    @Test("The algorithm is pinned: alg none and HS256 (the public key as an HMAC secret) are refused")
    func algorithmPinned() throws {
        let payload = Base64URL.encode(try JSONEncoder().encode(claims()))
        let none = Base64URL.encode(Data(#"{"alg":"none","typ":"JWT"}"#.utf8))
        #expect(throws: ClientTokenError.algorithmNotAllowed("none")) { try verifier.verify("\(none).\(payload).", now: now) }
        let hs = Base64URL.encode(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let secret = SymmetricKey(data: key.publicKey.x963Representation)
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(hs).\(payload)".utf8), using: secret)
        #expect(throws: ClientTokenError.algorithmNotAllowed("HS256")) { try verifier.verify("\(hs).\(payload).\(Base64URL.encode(Data(mac)))", now: now) }
    }

    @Test("Malformed tokens are refused, never crash", arguments: ["", "a.b", "a.b.c.d", "!!.??.##", "e30.e30.", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"])
    func malformed(token: String) {
        #expect(throws: ClientTokenError.self) { try verifier.verify(token, now: now) }
    }
}
