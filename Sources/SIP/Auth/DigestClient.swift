/// The UAC side of digest authentication (RFC 3261 §22.2 - §22.3): answers a 401/407 challenge
/// with an Authorization / Proxy-Authorization value.
public struct DigestClient: Sendable {
    public var username: String
    public var password: String
    /// Algorithms this client accepts, in order of preference (RFC 8760 §2.4: the strongest offered).
    public var algorithms: [DigestAlgorithm]
    private var nonceCounts: [String: UInt32] = [:]

    public init(username: String, password: String, algorithms: [DigestAlgorithm] = [.sha256, .md5]) {
        self.username = username
        self.password = password
        self.algorithms = algorithms
    }

    public enum ClientError: Error, Equatable, Sendable {
        case noUsableChallenge
    }

    /// Builds the header to add to the retried request for the response `challengeResponse`
    /// (401 → Authorization, 407 → Proxy-Authorization).
    public mutating func authorize(
        _ challengeResponse: SIPMessage, method: SIPMethod, uri: String, cnonce: String
    ) throws(ClientError) -> (name: SIPHeaderName, value: String) {
        let isProxy = challengeResponse.statusCode == 407
        let challenges = challengeResponse.headers.values(isProxy ? .proxyAuthenticate : .wwwAuthenticate)
            .compactMap { try? DigestParameters.parse($0) }
            .filter { $0.scheme.lowercased() == "digest" }
        // Pick the challenge with the most preferred algorithm we support.
        var chosen: (DigestParameters, DigestAlgorithm)?
        for algorithm in algorithms {
            if let challenge = challenges.first(where: { DigestAlgorithm(parameter: $0["algorithm"]) == algorithm }) {
                chosen = (challenge, algorithm)
                break
            }
        }
        guard let (challenge, algorithm) = chosen, let realm = challenge["realm"], let nonce = challenge["nonce"] else {
            throw .noUsableChallenge
        }
        let offeredQop = challenge["qop"]?.split(separator: ",").map { $0.trimmingCharacters(in: " \t").lowercased() }
        let qop = offeredQop.map { $0.contains("auth") ? "auth" : nil } ?? nil
        if offeredQop != nil, qop == nil { throw .noUsableChallenge }  // only auth-int offered
        let count = (nonceCounts[nonce] ?? 0) + 1
        nonceCounts = [nonce: count]
        let nc = qop == nil ? nil : Self.nonceCount(count)
        let cnonceValue = qop == nil && !algorithm.isSession ? nil : cnonce
        let ha1 = DigestComputation.ha1(algorithm, username: username, realm: realm, password: password, nonce: nonce, cnonce: cnonceValue)
        let response = DigestComputation.response(
            algorithm, ha1: ha1, nonce: nonce, method: method.rawValue, uri: uri, qop: qop, nc: nc, cnonce: cnonceValue)
        var pairs: [(String, String)] = [
            ("username", username), ("realm", realm), ("nonce", nonce), ("uri", uri), ("response", response),
            ("algorithm", algorithm.rawValue),
        ]
        if let cnonceValue { pairs.append(("cnonce", cnonceValue)) }
        if let opaque = challenge["opaque"] { pairs.append(("opaque", opaque)) }
        if let qop, let nc {
            pairs.append(("qop", qop))
            pairs.append(("nc", nc))
        }
        let value = DigestParameters.render(scheme: "Digest", pairs, unquoted: ["algorithm", "qop", "nc"])
        return (isProxy ? .proxyAuthorization : .authorization, value)
    }

    static func nonceCount(_ count: UInt32) -> String {
        let hex = String(count, radix: 16)
        return String(repeating: "0", count: max(0, 8 - hex.count)) + hex
    }
}

/// Credentials to answer digest challenges with (the gateway's `[cloud] auth = "digest"`); never logged.
public struct DigestCredentials: Sendable, Equatable {
    /// Nil: each request authenticates as the user it is from (one subscriber per AOR).
    public var username: String?
    public var password: String

    public init(username: String?, password: String) {
        self.username = username
        self.password = password
    }
}
