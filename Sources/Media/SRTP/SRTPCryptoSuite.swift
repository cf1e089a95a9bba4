/// The SRTP crypto suites the engine speaks, named as in SDES `a=crypto` lines (RFC 4568 §6.2,
/// RFC 7714 §14.2 for GCM). The order of `allCases` is the order of preference of an offer:
/// AES_CM_128_HMAC_SHA1_80 first (ARCHITECTURE.md), then _32, then AEAD_AES_128_GCM.
public enum SRTPCryptoSuite: String, Sendable, CaseIterable, Hashable {
    case aesCM128HMACSHA1_80 = "AES_CM_128_HMAC_SHA1_80"
    case aesCM128HMACSHA1_32 = "AES_CM_128_HMAC_SHA1_32"
    case aeadAES128GCM = "AEAD_AES_128_GCM"

    /// Master key length in bytes.
    public var keyLength: Int { 16 }

    /// Master salt length in bytes (RFC 3711 §8.2: 112 bits; RFC 7714 §12: 96 bits).
    public var saltLength: Int {
        switch self {
        case .aesCM128HMACSHA1_80, .aesCM128HMACSHA1_32: 14
        case .aeadAES128GCM: 12
        }
    }

    /// The bytes of key‖salt that an `inline:` key parameter carries.
    public var keyMaterialLength: Int { keyLength + saltLength }

    /// Authentication tag bytes added to each SRTP packet.
    public var rtpTagLength: Int {
        switch self {
        case .aesCM128HMACSHA1_80: 10
        case .aesCM128HMACSHA1_32: 4
        case .aeadAES128GCM: 16
        }
    }
}

/// One direction's master key and salt for a crypto suite, as SDES exchanges them.
public struct SRTPKeyMaterial: Sendable, Equatable {
    public let suite: SRTPCryptoSuite
    /// Master key followed by master salt.
    public let bytes: [UInt8]

    public enum KeyError: Error, Equatable, Sendable {
        case wrongLength(expected: Int, got: Int)
    }

    public init(suite: SRTPCryptoSuite, bytes: [UInt8]) throws(KeyError) {
        guard bytes.count == suite.keyMaterialLength else {
            throw .wrongLength(expected: suite.keyMaterialLength, got: bytes.count)
        }
        self.suite = suite
        self.bytes = bytes
    }

    /// Fresh key material from the system CSPRNG (`SystemRandomNumberGenerator` is getrandom(2)
    /// on Linux), as RFC 4568 §6.1 requires for every offer and answer.
    public static func random(_ suite: SRTPCryptoSuite) -> SRTPKeyMaterial {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<suite.keyMaterialLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        // Length is right by construction.
        return try! SRTPKeyMaterial(suite: suite, bytes: bytes)
    }
}

extension SRTPKeyMaterial: CustomStringConvertible, CustomDebugStringConvertible {
    /// Never prints the key itself: logs must not carry secrets.
    public var description: String { "SRTPKeyMaterial(\(suite.rawValue), \(bytes.count) bytes)" }
    public var debugDescription: String { description }
}
