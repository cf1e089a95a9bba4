import Crypto

/// The UAS / registrar side of digest authentication (RFC 3261 §22.1, §22.4; RFC 8760).
///
/// Nonces are stateless: `hex(time) "." hex(HMAC-SHA256(secret, time:realm))`, so any instance
/// with the same secret can check them and nothing grows per challenge; a nonce older than
/// `nonceLifetime` gets a fresh challenge with `stale=true` (RFC 7616 §3.3).
public struct DigestServer: Sendable {
    public var realm: String
    /// Algorithms challenged with, one WWW-Authenticate each, preferred first (RFC 8760 §2.4).
    public var algorithms: [DigestAlgorithm]
    public var nonceLifetime: UInt64
    private let secret: [UInt8]

    public init(realm: String, algorithms: [DigestAlgorithm] = [.sha256, .md5], nonceLifetime: UInt64 = 300, secret: [UInt8]? = nil) {
        self.realm = realm
        self.algorithms = algorithms
        self.nonceLifetime = nonceLifetime
        self.secret = secret ?? SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    public enum Outcome: Sendable, Equatable {
        case authenticated(username: String)
        /// Answer 401 (or 407) with a challenge; `reason` is for the log only.
        case challenge(reason: String, stale: Bool)
    }

    /// Checks the request's credentials. `password` looks a user's password up (nil: unknown
    /// user). `now` is seconds since any fixed epoch (the injected clock).
    public func verify(
        _ request: SIPMessage, proxy: Bool = false, password: (String) -> String?, now: UInt64
    ) -> Outcome {
        verify(request, proxy: proxy, now: now) { username, algorithm in
            password(username).map { DigestComputation.hash(algorithm, "\(username):\(realm):\($0)") }
        }
    }

    /// The same check against stored HA1 values, H(username:realm:password) per base algorithm
    /// (MD5 or SHA-256), so that a registrar need not keep passwords (Kamailio's `ha1`/`ha1b`
    /// columns). `ha1` returns nil for an unknown user.
    public func verify(
        _ request: SIPMessage, proxy: Bool = false, now: UInt64, ha1: (String, DigestAlgorithm) -> String?
    ) -> Outcome {
        let header: SIPHeaderName = proxy ? .proxyAuthorization : .authorization
        let values = request.headers.values(header)
        guard !values.isEmpty else { return .challenge(reason: "no credentials", stale: false) }
        var lastReason = "no Digest credentials for realm \(realm)"
        var stale = false
        for value in values {
            guard let credentials = try? DigestParameters.parse(value) else {
                lastReason = "unparsable credentials"
                continue
            }
            guard credentials.scheme.lowercased() == "digest" else {
                lastReason = "unsupported scheme \(credentials.scheme)"
                continue
            }
            guard credentials["realm"] == realm else { continue }
            switch check(credentials, method: request.method?.rawValue ?? "", ha1: ha1, now: now) {
            case .success(let username): return .authenticated(username: username)
            case .failure(let failure):
                lastReason = failure.reason
                stale = stale || failure.stale
            }
        }
        return .challenge(reason: lastReason, stale: stale)
    }

    struct Failure: Error {
        var reason: String
        var stale = false
    }

    private func check(_ c: DigestParameters, method: String, ha1 storedHA1: (String, DigestAlgorithm) -> String?, now: UInt64) -> Result<String, Failure> {
        guard let username = c["username"], let nonce = c["nonce"], let uri = c["uri"], let response = c["response"] else {
            return .failure(Failure(reason: "credentials lack username, nonce, uri or response"))
        }
        guard let algorithm = DigestAlgorithm(parameter: c["algorithm"]), algorithms.contains(algorithm) else {
            return .failure(Failure(reason: "algorithm \(c["algorithm"] ?? "MD5") not offered"))
        }
        guard let issued = nonceTime(nonce) else {
            return .failure(Failure(reason: "nonce not issued by this server"))
        }
        guard now >= issued, now - issued <= nonceLifetime else {
            return .failure(Failure(reason: "nonce expired", stale: true))
        }
        guard let base = storedHA1(username, algorithm.base) else {
            return .failure(Failure(reason: "unknown user"))
        }
        let qop = c["qop"]
        if let qop, qop.lowercased() != "auth" { return .failure(Failure(reason: "qop \(qop) not offered")) }
        if qop != nil, c["nc"] == nil || c["cnonce"] == nil {
            return .failure(Failure(reason: "qop without nc or cnonce"))
        }
        // RFC 7616 §3.4.2: for -sess, HA1 = H(H(user:realm:password):nonce:cnonce).
        let ha1 = algorithm.isSession ? DigestComputation.hash(algorithm, "\(base):\(nonce):\(c["cnonce"] ?? "")") : base
        let expected = DigestComputation.response(
            algorithm, ha1: ha1, nonce: nonce, method: method, uri: uri, qop: qop, nc: c["nc"], cnonce: c["cnonce"])
        guard DigestComputation.constantTimeEqual(expected, response.lowercased()) else {
            return .failure(Failure(reason: "wrong response digest"))
        }
        return .success(username)
    }

    /// H(username:realm:password) for a base algorithm: what a user store keeps instead of the password.
    public static func ha1(_ algorithm: DigestAlgorithm, username: String, realm: String, password: String) -> String {
        DigestComputation.hash(algorithm.base, "\(username):\(realm):\(password)")
    }

    /// A fresh nonce for time `now`.
    public func makeNonce(now: UInt64) -> String {
        let time = String(now, radix: 16)
        return time + "." + DigestComputation.hex(HMAC<SHA256>.authenticationCode(for: Array("\(time):\(realm)".utf8), using: SymmetricKey(data: secret)))
    }

    private func nonceTime(_ nonce: String) -> UInt64? {
        let parts = nonce.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let time = UInt64(parts[0], radix: 16) else { return nil }
        let expected = DigestComputation.hex(HMAC<SHA256>.authenticationCode(for: Array("\(parts[0]):\(realm)".utf8), using: SymmetricKey(data: secret)))
        return DigestComputation.constantTimeEqual(expected, String(parts[1])) ? time : nil
    }

    /// The 401 (or 407) with one challenge per algorithm.
    public func challengeResponse(to request: SIPMessage, stale: Bool, proxy: Bool = false, toTag: String?, now: UInt64) -> SIPMessage {
        var response = SIPResponseFactory.response(to: request, status: proxy ? 407 : 401, toTag: toTag)
        let nonce = makeNonce(now: now)
        for algorithm in algorithms {
            var pairs: [(String, String)] = [("realm", realm), ("nonce", nonce), ("algorithm", algorithm.rawValue), ("qop", "auth")]
            if stale { pairs.append(("stale", "true")) }
            response.headers.add(
                proxy ? .proxyAuthenticate : .wwwAuthenticate,
                DigestParameters.render(scheme: "Digest", pairs, unquoted: ["algorithm", "stale"]))
        }
        return response
    }
}
