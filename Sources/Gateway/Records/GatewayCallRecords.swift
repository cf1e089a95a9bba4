public import Foundation
public import GRDB

/// One call through the gateway, as ../shared/ARCHITECTURE.md "Storage" lists it: start, answer,
/// end, direction, channel, peer, dial status, codec, reason.
public struct GatewayCallRecord: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "call"

    public enum Direction: String, Sendable, Codable, CaseIterable {
        /// A legacy station called a channel; the call went to the cloud.
        case legacyToCloud = "legacy-to-cloud"
        /// The cloud called a channel; its legacy stations rang.
        case cloudToLegacy = "cloud-to-legacy"
        /// A legacy call placed on the mesh (the cloud being unreachable), or a mesh peer's call.
        case legacyToMesh = "legacy-to-mesh"
        case meshToLegacy = "mesh-to-legacy"
    }

    public enum Status: String, Sendable, Codable, CaseIterable {
        case answered, missed, busy, declined, failed, cancelled
    }

    public var id: Int64?
    public var startedAt: Double
    public var answeredAt: Double?
    public var endedAt: Double
    public var direction: Direction
    public var channel: Int
    /// The other party: the cloud target or caller, the legacy station, the mesh peer.
    public var peer: String
    public var status: Status
    /// The codecs of the two legs, "G722/opus" (transcoded) or "G722" (passthrough).
    public var codec: String?
    public var reason: String?

    public init(
        startedAt: Double, answeredAt: Double?, endedAt: Double, direction: Direction, channel: Int, peer: String, status: Status,
        codec: String?, reason: String?
    ) {
        self.startedAt = startedAt
        self.answeredAt = answeredAt
        self.endedAt = endedAt
        self.direction = direction
        self.channel = channel
        self.peer = peer
        self.status = status
        self.codec = codec
        self.reason = reason
    }
}

/// The gateway's call records in SQLite (`<state_dir>/calls.sqlite`, WAL, synchronous=NORMAL).
/// Writes go to GRDB's writer queue and never block a call; a failing disk is reported to the
/// caller's completion (status degrades), the call goes on. Rows older than the retention are
/// deleted by `purge`, which the daemon runs periodically.
public final class GatewayCallRecords: Sendable {
    public let database: any DatabaseWriter

    /// `path` nil keeps the records in memory (tests).
    public init(path: String?) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        if let path {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            database = try DatabasePool(path: path, configuration: configuration)
        } else {
            database = try DatabaseQueue(configuration: configuration)
        }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE call (
                  id INTEGER PRIMARY KEY, startedAt DOUBLE NOT NULL, answeredAt DOUBLE, endedAt DOUBLE NOT NULL,
                  direction TEXT NOT NULL, channel INTEGER NOT NULL, peer TEXT NOT NULL, status TEXT NOT NULL,
                  codec TEXT, reason TEXT);
                CREATE INDEX call_startedAt ON call(startedAt);
                """)
        }
        try migrator.migrate(database)
    }

    public func record(_ record: GatewayCallRecord, completion: @escaping @Sendable ((any Error)?) -> Void = { _ in }) {
        database.asyncWrite({ db in try record.insert(db) }, completion: { _, result in
            if case .failure(let error) = result { completion(error) } else { completion(nil) }
        })
    }

    /// Returns once every record handed to `record` so far is written (a graceful stop).
    public func flush() throws {
        try database.barrierWriteWithoutTransaction { _ in }
    }

    public func all() throws -> [GatewayCallRecord] {
        try database.read { db in try GatewayCallRecord.order(Column("startedAt"), Column("id")).fetchAll(db) }
    }

    /// Deletes the records that started more than `retentionDays` before `now`; returns how many.
    /// On GRDB's writer queue: the caller's thread (a cooperative one, which the router's actor
    /// needs too) is not held while a large delete runs.
    @discardableResult
    public func purge(retentionDays: Int, now: Date) async throws -> Int {
        let cutoff = now.timeIntervalSince1970 - Double(retentionDays) * 86400
        return try await database.write { db in
            try db.execute(sql: "DELETE FROM call WHERE startedAt < ?", arguments: [cutoff])
            return db.changesCount
        }
    }
}
