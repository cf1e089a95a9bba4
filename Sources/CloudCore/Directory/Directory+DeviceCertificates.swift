import Crypto
public import DeviceTrust
public import Foundation
import GRDB

/// Device certificates in the directory (issue 17): each device has one current certificate,
/// pinned by serial — only it authenticates the device, at the core and (through the
/// revocation list) on the mesh. A new claim, a renewal or deleting the device revokes the
/// previous one until it would have expired anyway.
extension Directory {
    /// Where `device` belongs, as its certificates say (company and site names).
    public func binding(ofDevice device: String) throws -> DeviceBinding? {
        try database.read { db in try Self.binding(ofDevice: device, db) }
    }

    static func binding(ofDevice device: String, _ db: Database) throws -> DeviceBinding? {
        guard let row = try Row.fetchOne(db, sql: """
            SELECT company.name AS company, site.name AS site FROM device JOIN site ON site.id = device.siteId
            JOIN project ON project.id = site.projectId JOIN company ON company.id = project.companyId WHERE device.name = ?
            """, arguments: [device])
        else { return nil }
        return DeviceBinding(company: try row.decode(String.self, forColumn: "company"), site: try row.decode(String.self, forColumn: "site"), device: device)
    }

    /// The key of a CSR, as a claim remembers it (SHA-256 of the public key's DER).
    public static func keyHash(_ publicKeyDER: [UInt8]) -> String {
        SHA256.hash(data: publicKeyDER).map { String(format: "%02x", $0) }.joined()
    }

    /// A certificate just issued: what the directory pins.
    public struct IssuedCertificate: Sendable {
        public var pem: String
        public var serial: String
        public var notAfter: Date

        public init(pem: String, serial: String, notAfter: Date) {
            self.pem = pem
            self.serial = serial
            self.notAfter = notAfter
        }
    }

    /// Redeems a claiming code for the key `keyHash` and pins the certificate `issue` makes — in
    /// one transaction, so a code is never spent without a certificate to show for it. The same
    /// code with the same key again, within the code's lifetime, gets the same certificate (the
    /// gateway lost the first answer); with another key it is "already used".
    public func claim(
        code: String, keyHash: String, source: String, now: Date, issue: (DeviceBinding) throws -> IssuedCertificate
    ) throws(ClaimError) -> (device: String, certificate: String) {
        let hash = Self.codeHash(code)
        let outcome: Result<(String, String), ClaimError>
        do {
            outcome = try database.write { db -> Result<(String, String), ClaimError> in
                guard let row = try Row.fetchOne(db, sql: """
                    SELECT device.name AS device, expiresAt, usedAt, csrKeyHash, certificate FROM claimingCode JOIN device ON device.id = deviceId
                    WHERE codeHash = ?
                    """, arguments: [hash])
                else { return .failure(.unknownCode) }
                let device = try row.decode(String.self, forColumn: "device")
                guard try row.decode(Double.self, forColumn: "expiresAt") > now.timeIntervalSince1970 else { return .failure(.expired) }
                if !(row["usedAt"] as DatabaseValue).isNull {
                    // A retry of the same claim: the certificate it was given, if it is still the pinned one.
                    let current = try String.fetchOne(db, sql: "SELECT certificatePEM FROM device WHERE name = ?", arguments: [device])
                    guard try row.decode(String?.self, forColumn: "csrKeyHash") == keyHash, let certificate = try row.decode(String?.self, forColumn: "certificate"),
                        certificate == current
                    else { return .failure(.alreadyUsed) }
                    return .success((device, certificate))
                }
                guard let binding = try Self.binding(ofDevice: device, db) else { return .failure(.unknownCode) }
                let issued: IssuedCertificate
                do { issued = try issue(binding) } catch { return .failure(.badRequest("\(error)")) }
                try db.execute(
                    sql: "UPDATE claimingCode SET usedAt = ?, usedBy = ?, csrKeyHash = ?, certificate = ? WHERE codeHash = ?",
                    arguments: [now.timeIntervalSince1970, source, keyHash, issued.pem, hash])
                try Self.pin(issued, binding: binding, now: now, why: "device claimed again", db)
                return .success((device, issued.pem))
            }
        } catch {
            throw .badRequest("directory unavailable")
        }
        defer { pinnedSerials.removeAll() }
        return try outcome.get()
    }

    /// A new certificate for a device that proved its current one (`serial`), for the key
    /// `keyHash`: pinned, and the old one revoked. A retry after a lost answer — the previous
    /// certificate with the same key — gets the same new certificate again.
    public func renew(
        device: String, presentedSerial serial: String, keyHash: String, now: Date, issue: (DeviceBinding) throws -> IssuedCertificate
    ) throws -> String {
        defer { pinnedSerials.removeAll() }
        let presented = DeviceCertificateName.canonicalSerial(serial)
        return try database.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT certificateSerial, previousSerial, renewalKeyHash, certificatePEM FROM device WHERE name = ?", arguments: [device])
            else { throw DirectoryError("no device \(device)") }
            let pinned = try row.decode(String?.self, forColumn: "certificateSerial").map(DeviceCertificateName.canonicalSerial)
            if pinned != presented {
                guard try row.decode(String?.self, forColumn: "previousSerial").map(DeviceCertificateName.canonicalSerial) == presented,
                    try row.decode(String?.self, forColumn: "renewalKeyHash") == keyHash, let pem = try row.decode(String?.self, forColumn: "certificatePEM")
                else { throw DirectoryError("device \(device): the certificate presented is not its current one") }
                return pem
            }
            guard let binding = try Self.binding(ofDevice: device, db) else { throw DirectoryError("no device \(device)") }
            let issued = try issue(binding)
            try Self.pin(issued, binding: binding, now: now, why: "certificate renewed", db)
            try db.execute(sql: "UPDATE device SET previousSerial = ?, renewalKeyHash = ? WHERE name = ?", arguments: [pinned, keyHash, device])
            return issued.pem
        }
    }

    /// Makes `issued` the device's current certificate; the one before it is revoked, listed
    /// under the site it named (a gateway's list holds its own site's revocations).
    private static func pin(_ issued: IssuedCertificate, binding: DeviceBinding, now: Date, why: String, _ db: Database) throws {
        let device = binding.device
        if let previous = try Row.fetchOne(db, sql: "SELECT certificateSerial, certificateNotAfter, siteKey FROM device WHERE name = ?", arguments: [device]),
            let serial = try previous.decode(String?.self, forColumn: "certificateSerial"), serial != issued.serial
        {
            let notAfter = try previous.decode(Double?.self, forColumn: "certificateNotAfter") ?? now.timeIntervalSince1970 + 3650 * 86400
            try db.execute(
                sql: "INSERT OR IGNORE INTO revokedCertificate (serial, device, notAfter, revokedAt, why, site) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [serial, device, notAfter, now.timeIntervalSince1970, why, try previous.decode(String?.self, forColumn: "siteKey")])
        }
        try db.execute(
            sql: """
                UPDATE device SET claimedAt = coalesce(claimedAt, ?), certificateSerial = ?, certificateNotAfter = ?, certificatePEM = ?,
                  previousSerial = NULL, renewalKeyHash = NULL, siteKey = ? WHERE name = ?
                """,
            arguments: [now.timeIntervalSince1970, issued.serial, issued.notAfter.timeIntervalSince1970, issued.pem, binding.siteKey, device])
    }

    /// Whether `serial` is the current certificate of `device` (the device exists, and this is
    /// the certificate its last claim or renewal pinned). Cached for 2 s like the other
    /// call-path lookups.
    public func isCurrentCertificate(device: String, serial: String) -> Bool {
        guard Self.couldBeName(device) else { return false }
        let pinned = pinnedSerials.value(device) {
            let stored = try? database.read { db in
                try String.fetchOne(db.cachedStatement(sql: "SELECT certificateSerial FROM device WHERE name = ?"), arguments: [device])
            }
            return stored.flatMap { $0 }.map(DeviceCertificateName.canonicalSerial)
        }
        return pinned != nil && pinned == DeviceCertificateName.canonicalSerial(serial)
    }

    /// Serials revoked and not yet expired — those of `site` (a `DeviceBinding.siteKey`; the
    /// mesh refuses other sites' certificates anyway) and those whose site is not known, or all
    /// when `site` is nil — newest first, at most `RevocationList.maxEntries`. Expired ones are
    /// forgotten on the way.
    public func revokedSerials(now: Date, site: String? = nil) throws -> [String] {
        try database.write { db in
            try db.execute(sql: "DELETE FROM revokedCertificate WHERE notAfter < ?", arguments: [now.timeIntervalSince1970])
            return try String.fetchAll(
                db, sql: "SELECT serial FROM revokedCertificate WHERE ?1 IS NULL OR site IS NULL OR site = ?1 ORDER BY revokedAt DESC LIMIT ?2",
                arguments: [site, RevocationList.maxEntries]
            ).map(DeviceCertificateName.canonicalSerial)
        }
    }
}
