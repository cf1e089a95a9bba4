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

    public var description: String {
        switch self {
        case .unknownCode: "unknown claiming code"
        case .alreadyUsed: "claiming code already used"
        case .expired: "claiming code expired"
        case .rateLimited(let seconds): "too many claiming attempts from this address; retry in \(seconds) s"
        case .badRequest(let what): what
        }
    }

    /// The HTTP status for the claiming endpoint.
    public var httpStatus: Int {
        switch self {
        case .unknownCode: 403
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

    /// Uses a code up: returns the device it was made for. Atomic: two claims racing with one
    /// code cannot both succeed.
    public func redeemClaimingCode(_ code: String, by source: String, now: Date = Date()) throws(ClaimError) -> String {
        let hash = Self.codeHash(code)
        let outcome: Result<String, ClaimError>
        do {
            outcome = try database.write { db -> Result<String, ClaimError> in
                guard let row = try Row.fetchOne(db, sql: """
                    SELECT device.name AS device, expiresAt, usedAt FROM claimingCode JOIN device ON device.id = deviceId WHERE codeHash = ?
                    """, arguments: [hash])
                else { return .failure(.unknownCode) }
                // Decoded with throws (a corrupt row is "directory unavailable", not a trap).
                if !(row["usedAt"] as DatabaseValue).isNull { return .failure(.alreadyUsed) }
                guard try row.decode(Double.self, forColumn: "expiresAt") > now.timeIntervalSince1970 else { return .failure(.expired) }
                let device = try row.decode(String.self, forColumn: "device")
                try db.execute(sql: "UPDATE claimingCode SET usedAt = ?, usedBy = ? WHERE codeHash = ?", arguments: [now.timeIntervalSince1970, source, hash])
                return .success(device)
            }
        } catch {
            throw .badRequest("directory unavailable")
        }
        return try outcome.get()
    }

    /// Upper case, no separators or spaces: what an installer types is forgiven its dashes.
    static func codeHash(_ code: String) -> String {
        let normalized = code.uppercased().filter { $0 != "-" && $0 != " " }
        return SHA256.hash(data: Data(normalized.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
