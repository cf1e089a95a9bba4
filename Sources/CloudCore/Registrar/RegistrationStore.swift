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
    public func loadRegistrations() throws -> [LocationBinding] {
        try database.read { db in try Row.fetchAll(db, sql: "SELECT * FROM registration") }.compactMap { row in
            var scanner = SIPScanner(row["contact"] as String)
            guard let contact = try? SIPNameAddress.parseSingle(&scanner, header: "Contact"),
                let transport = SIPTransportProtocol(token: row["transport"]),
                let remote = SocketAddress(displayText: row["remote"]), let local = SocketAddress(displayText: row["localAddress"])
            else { return nil }
            return LocationBinding(
                addressOfRecord: row["addressOfRecord"], contact: contact, instance: row["instance"], regID: row["regId"],
                expiresAt: row["expiresAt"], callID: row["callId"], cseq: UInt32(clamping: row["cseq"] as Int64),
                flow: SIPFlow(transport: transport, local: local, remote: remote, connectionID: 0), principal: row["principal"])
        }
    }
}

extension SocketAddress {
    /// Parses `1.2.3.4:5060` or `[::1]:5060` (the form `displayText` writes).
    init?(displayText text: String) {
        guard let parsed = HostPort(text), let address = try? SocketAddress(ipAddress: parsed.host, port: parsed.port) else { return nil }
        self = address
    }
}
