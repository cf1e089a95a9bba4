import Crypto
public import Foundation
import GRDB

/// Why a claiming code was refused. The wording goes back to the gateway (so that an installer
/// sees what to fix) and into the log.
public enum ClaimError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownCode
    case alreadyUsed
    case expired
    case rateLimited(retryAfter: Int)
    case badRequest(String)
    /// Renewal and the revocation list: no current device certificate.
    case notAuthorized(String)

    public var description: String {
        switch self {
        case .unknownCode: "unknown claiming code"
        case .alreadyUsed: "claiming code already used"
        case .expired: "claiming code expired"
        case .rateLimited(let seconds): "too many claiming attempts from this address; retry in \(seconds) s"
        case .badRequest(let what): what
        case .notAuthorized(let what): what
        }
    }

    /// The HTTP status for the claiming endpoint.
    public var httpStatus: Int {
        switch self {
        case .unknownCode, .notAuthorized: 403
        case .alreadyUsed, .expired: 410
        case .rateLimited: 429
        case .badRequest: 400
        }
    }
}

/// One-time claiming codes: 16 characters from an alphabet without look-alikes, shown as
/// `XXXX-XXXX-XXXX-XXXX` (80 bits). Only a SHA-256 of the normalized code is stored; a code works
/// once, before its expiry.
extension Directory {
    static let codeAlphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")

    /// Creates a code for `device`, valid for `lifetime` seconds.
    public func createClaimingCode(device: String, lifetime: TimeInterval, now: Date = Date()) throws -> String {
        guard deviceExists(device) else { throw DirectoryError("no device \(device)") }
        var generator = SystemRandomNumberGenerator()
        let characters = (0..<16).map { _ in Self.codeAlphabet[Int(generator.next(upperBound: UInt32(Self.codeAlphabet.count)))] }
        let code = stride(from: 0, to: 16, by: 4).map { String(characters[$0..<$0 + 4]) }.joined(separator: "-")
        try database.write { db in
            try db.execute(
                sql: "INSERT INTO claimingCode (codeHash, deviceId, createdAt, expiresAt) VALUES (?, (SELECT id FROM device WHERE name = ?), ?, ?)",
                arguments: [Self.codeHash(code), device, now.timeIntervalSince1970, now.timeIntervalSince1970 + lifetime])
        }
        return code
    }

    /// Upper case, no separators or spaces: what an installer types is forgiven its dashes.
    static func codeHash(_ code: String) -> String {
        let normalized = code.uppercased().filter { $0 != "-" && $0 != " " }
        return SHA256.hash(data: Data(normalized.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
