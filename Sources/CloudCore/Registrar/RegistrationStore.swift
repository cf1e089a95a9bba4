import Foundation
import GRDB
import NIOCore
import SIP
import SIPTransport
import TOMLConfig

/// Registrations kept across a restart: the location service's changes written back to SQLite
/// (off the SIP event loop), and loaded again at start-up.
extension Directory {
    public func saveRegistrations(_ changes: [(aor: String, bindings: [LocationBinding])]) throws {
        guard !changes.isEmpty else { return }
        try database.write { db in try Self.saveRegistrations(changes, in: db) }
    }

    /// Inside a write the caller opened (the proxy's asynchronous write-back).
    static func saveRegistrations(_ changes: [(aor: String, bindings: [LocationBinding])], in db: Database) throws {
            for change in changes {
                try db.execute(sql: "DELETE FROM registration WHERE addressOfRecord = ?", arguments: [change.aor])
                for binding in change.bindings {
                    try db.execute(
                        sql: """
                            INSERT OR REPLACE INTO registration (addressOfRecord, contact, instance, regId, expiresAt, callId, cseq, transport, remote, localAddress, principal)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                            """,
                        arguments: [
                            binding.addressOfRecord, binding.contact.description, binding.instance, binding.regID, binding.expiresAt,
                            binding.callID, Int64(binding.cseq), binding.flow.transport.rawValue, binding.flow.remote.displayText,
                            binding.flow.local.displayText, binding.principal,
                        ])
                }
            }
    }

    /// Stored bindings; stream flows come back with connection id 0 (their connection is gone).
    /// The file is outside input too (docs/RELIABILITY.md): a row whose values do not decode —
    /// a number where text belongs, a REAL past Int64, NULL — is skipped, never a trap (GRDB's
    /// `row["column"]` subscripts trap on those; `decode` throws).
    public func loadRegistrations() throws -> [LocationBinding] {
        try database.read { db in try Row.fetchAll(db, sql: "SELECT * FROM registration") }.compactMap { row in
            try? Self.binding(row)
        }
    }

    private static func binding(_ row: Row) throws -> LocationBinding? {
        var scanner = SIPScanner(try row.decode(String.self, forColumn: "contact"))
        guard let contact = try? SIPNameAddress.parseSingle(&scanner, header: "Contact"),
            let transport = SIPTransportProtocol(token: try row.decode(String.self, forColumn: "transport")),
            let remote = SocketAddress(displayText: try row.decode(String.self, forColumn: "remote")),
            let local = SocketAddress(displayText: try row.decode(String.self, forColumn: "localAddress"))
        else { return nil }
        return LocationBinding(
            addressOfRecord: try row.decode(forColumn: "addressOfRecord"), contact: contact, instance: try row.decode(forColumn: "instance"),
            regID: try row.decode(forColumn: "regId"), expiresAt: try row.decode(forColumn: "expiresAt"), callID: try row.decode(forColumn: "callId"),
            cseq: UInt32(clamping: try row.decode(Int64.self, forColumn: "cseq")),
            flow: SIPFlow(transport: transport, local: local, remote: remote, connectionID: 0), principal: try row.decode(forColumn: "principal"))
    }
}

extension SocketAddress {
    /// Parses `1.2.3.4:5060` or `[::1]:5060` (the form `displayText` writes).
    init?(displayText text: String) {
        guard let parsed = HostPort(text), let address = try? SocketAddress(ipAddress: parsed.host, port: parsed.port) else { return nil }
        self = address
    }
}
