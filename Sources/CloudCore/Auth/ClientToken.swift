import BoundedJSON
public import Crypto
import Foundation

/// Client tokens: JWTs (RFC 7519) signed with ES256 (RFC 7518 §3.4: ECDSA P-256 with SHA-256,
/// the signature as R‖S), presented as SIP `Authorization: Bearer` (RFC 8898). The verifier pins
/// the algorithm — a token whose header says anything but ES256, `none` included, is refused
/// before its signature is looked at (RFC 8725 §3.1) — and checks expiry, not-before and
/// audience with a small clock-skew leeway. Refusals carry a reason for the log only; what the
/// client gets is a bare 401/403.
public struct ClientTokenClaims: Sendable, Equatable, Codable {
    /// The user the token is for (`sub`).
    public var subject: String
    public var audience: String
    public var issuedAt: Int
    public var expiresAt: Int
    public var notBefore: Int?
    public var tokenID: String?

    enum CodingKeys: String, CodingKey {
        case subject = "sub", audience = "aud", issuedAt = "iat", expiresAt = "exp", notBefore = "nbf", tokenID = "jti"
    }

    public init(subject: String, audience: String, issuedAt: Int, expiresAt: Int, notBefore: Int? = nil, tokenID: String? = nil) {
        self.subject = subject
        self.audience = audience
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.notBefore = notBefore
        self.tokenID = tokenID
    }
}

public enum ClientTokenError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformed(String)
    case algorithmNotAllowed(String)
    case badSignature
    case expired(at: Int)
    case notYetValid(until: Int)
    case wrongAudience(String)

    /// For the log: precise, never sent to the client.
    public var description: String {
        switch self {
        case .malformed(let why): "malformed token: \(why)"
        case .algorithmNotAllowed(let alg): "token algorithm \"\(alg)\" refused (only ES256 is accepted)"
        case .badSignature: "token signature does not verify"
        case .expired(let at): "token expired at \(at)"
        case .notYetValid(let until): "token not valid before \(until)"
        case .wrongAudience(let aud): "token audience \"\(aud)\" is not this core"
        }
    }
}

enum Base64URL {
    static func encode(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: Substring) -> Data? {
        guard text.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}

/// Issues client tokens (`symphony-cloud-core admin token`).
public struct ClientTokenSigner: Sendable {
    /// The key's raw bytes (swift-crypto's key types are not Sendable on Linux).
    private let keyBytes: Data

    public init(key: P256.Signing.PrivateKey) { self.keyBytes = key.rawRepresentation }

    public func token(for claims: ClientTokenClaims) throws -> String {
        let header = Base64URL.encode(Data(#"{"alg":"ES256","typ":"JWT"}"#.utf8))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let payload = Base64URL.encode(try encoder.encode(claims))
        let signingInput = "\(header).\(payload)"
        let key = try P256.Signing.PrivateKey(rawRepresentation: keyBytes)
        let signature = try key.signature(for: Data(signingInput.utf8))
        return "\(signingInput).\(Base64URL.encode(signature.rawRepresentation))"
    }
}

/// Verifies client tokens against the core's public key.
public struct ClientTokenVerifier: Sendable {
    private let keyBytes: Data
    public let audience: String
    /// Clock skew tolerated on `exp` and `nbf`, seconds.
    public let leeway: Int

    public init(key: P256.Signing.PublicKey, audience: String, leeway: Int = 30) {
        self.keyBytes = key.rawRepresentation
        self.audience = audience
        self.leeway = leeway
    }

    /// The claims of a good token; `now` is Unix seconds (injected, for tests and clocks).
    public func verify(_ token: String, now: Int) throws(ClientTokenError) -> ClientTokenClaims {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformed("\(parts.count) parts, not 3") }
        guard let headerData = Base64URL.decode(parts[0]),
            let header = try? BoundedJSON.object(from: headerData) as? [String: Any]
        else { throw .malformed("header is not base64url JSON") }
        // RFC 8725 §3.1: the algorithm is ours to choose, not the token's.
        guard let alg = header["alg"] as? String else { throw .malformed("no alg") }
        guard alg == "ES256" else { throw .algorithmNotAllowed(alg) }
        guard let signatureData = Base64URL.decode(parts[2]), signatureData.count == 64,
            let signature = try? P256.Signing.ECDSASignature(rawRepresentation: signatureData)
        else { throw .badSignature }
        let signingInput = Data("\(parts[0]).\(parts[1])".utf8)
        guard let key = try? P256.Signing.PublicKey(rawRepresentation: keyBytes), key.isValidSignature(signature, for: signingInput) else {
            throw .badSignature
        }
        guard let payloadData = Base64URL.decode(parts[1]),
            let claims = try? BoundedJSON.decode(ClientTokenClaims.self, from: payloadData)
        else { throw .malformed("payload lacks sub, aud, iat or exp") }
        // The claims are numbers from outside (signed, but by whom is not the point): compare
        // without adding to them, so `exp` near Int.max cannot overflow.
        guard now - leeway <= claims.expiresAt else { throw .expired(at: claims.expiresAt) }
        if let nbf = claims.notBefore, now + leeway < nbf { throw .notYetValid(until: nbf) }
        guard claims.audience == audience else { throw .wrongAudience(claims.audience) }
        return claims
    }
}
