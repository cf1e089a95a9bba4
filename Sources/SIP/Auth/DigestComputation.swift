import Crypto

/// The digest arithmetic of RFC 7616 §3.4.1 (which RFC 8760 brings to SIP).
enum DigestComputation {
    static func hash(_ algorithm: DigestAlgorithm, _ text: String) -> String {
        switch algorithm {
        case .md5, .md5Session: hex(Insecure.MD5.hash(data: Array(text.utf8)))
        case .sha256, .sha256Session: hex(SHA256.hash(data: Array(text.utf8)))
        }
    }

    /// HA1 = H(user:realm:password), and for -sess H(H(user:realm:password):nonce:cnonce).
    static func ha1(_ algorithm: DigestAlgorithm, username: String, realm: String, password: String, nonce: String, cnonce: String?) -> String {
        let base = hash(algorithm, "\(username):\(realm):\(password)")
        guard algorithm.isSession else { return base }
        return hash(algorithm, "\(base):\(nonce):\(cnonce ?? "")")
    }

    /// response = H(HA1:nonce:nc:cnonce:qop:HA2) with qop, else H(HA1:nonce:HA2) (RFC 2069 style).
    static func response(
        _ algorithm: DigestAlgorithm, ha1: String, nonce: String, method: String, uri: String,
        qop: String?, nc: String?, cnonce: String?
    ) -> String {
        let ha2 = hash(algorithm, "\(method):\(uri)")
        if let qop {
            return hash(algorithm, "\(ha1):\(nonce):\(nc ?? ""):\(cnonce ?? ""):\(qop):\(ha2)")
        }
        return hash(algorithm, "\(ha1):\(nonce):\(ha2)")
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Compares without an early exit, so the time taken does not tell how much matched.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in 0..<x.count { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}
