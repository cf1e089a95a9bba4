public import DurableState
public import Foundation
public import GRDB
public import Logging
import NIOConcurrencyHelpers

/// One call through the gateway, as ../shared/ARCHITECTURE.md "Storage" lists it: start, answer,
/// end, direction, channel, peer, dial status, codec, reason. Written when the call starts
/// (`in-progress`, no end), again when it is answered and when it ends (docs/RELIABILITY.md
/// "No call record lost").
public struct GatewayCallRecord: Sendable, Equatable, Codable {
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
        /// Still going (the record of a call that has not ended).
        case inProgress = "in-progress"
        /// Open when the gateway stopped without ending it (a crash, kill -9, a power cut): closed
        /// at the next start with the last time the gateway was known alive.
        case interrupted
    }

    /// The database's row id (nil until read back).
    public var id: Int64?
    /// The gateway's own name for the record, unique across restarts: what a later write of the
    /// same call replaces.
    public var ref: String
    public var startedAt: Double
    public var answeredAt: Double?
    public var endedAt: Double?
    public var direction: Direction
    public var channel: Int
    /// The other party: the cloud target or caller, the legacy station, the mesh peer.
    public var peer: String
    public var status: Status
    /// The codecs of the two legs, "G722/opus" (transcoded) or "G722" (passthrough).
    public var codec: String?
    public var reason: String?

    public init(
        ref: String = GatewayCallRecord.newRef(), startedAt: Double, answeredAt: Double?, endedAt: Double?, direction: Direction, channel: Int,
        peer: String, status: Status, codec: String?, reason: String?
    ) {
        self.ref = ref
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

    public static func newRef() -> String { UUID().uuidString.lowercased() }

    /// A row read back. The file is outside input (an operator's copy, a disk's bit rot): a row
    /// whose values do not decode is skipped, never a trap.
    init?(row: Row) {
        // `try?` would flatten a NULL into a failure: an optional column decodes into `T??`.
        func optional<T: DatabaseValueConvertible>(_ type: T.Type, _ column: String) -> T?? {
            guard row.hasColumn(column) else { return .some(nil) }  // a file from before issue 18 has no `ref`
            do { return .some(try row.decode(T?.self, forColumn: column)) } catch { return nil }
        }
        guard let ref = optional(String.self, "ref"), let startedAt = try? row.decode(Double.self, forColumn: "startedAt"),
            let answeredAt = optional(Double.self, "answeredAt"), let endedAt = optional(Double.self, "endedAt"),
            let direction = (try? row.decode(String.self, forColumn: "direction")).flatMap(Direction.init(rawValue:)),
            let channel = try? row.decode(Int64.self, forColumn: "channel"), let peer = try? row.decode(String.self, forColumn: "peer"),
            let status = (try? row.decode(String.self, forColumn: "status")).flatMap(Status.init(rawValue:)),
            let codec = optional(String.self, "codec"), let reason = optional(String.self, "reason")
        else { return nil }
        self.init(
            ref: ref ?? "", startedAt: startedAt, answeredAt: answeredAt, endedAt: endedAt, direction: direction, channel: Int(clamping: channel),
            peer: peer, status: status, codec: codec, reason: reason)
        id = optional(Int64.self, "id") ?? nil
    }
}

extension GatewayCallRecord: QueuedRecord {
    public var queueKey: String { ref }
    public var statusText: String { status.rawValue }
    public var isFinal: Bool { endedAt != nil }
}

/// The gateway's call records in SQLite (`<state_dir>/calls.sqlite`), which calling does not
/// need (docs/RELIABILITY.md "Durable state"):
/// - a file that is not a database (or not ours) is moved aside as `calls.sqlite.corrupt-<time>`
///   and a new one made; one that cannot be opened at all (permissions, a full disk) leaves the
///   records queued in memory and is tried again every minute;
/// - records go through a `RecordWriter`: a failing write keeps them queued (bounded, oldest
///   summarised) until it succeeds;
/// - a heartbeat row says when the gateway was last alive; records a crash left open are closed
///   as `interrupted` with that time at the next start.
public final class GatewayCallRecords: Sendable {
    public let path: String?
    private let writer: RecordWriter<GatewayCallRecord>
    private let state: NIOLockedValueBox<State>
    private let logger: Logger

    private struct State {
        var database: (any DatabaseWriter)?
        /// Why the file is not in use, or what happened to the last one.
        var openingProblem: String?
        var backlog = RecordBacklog()
        var observer: (@Sendable () -> Void)?
    }

    /// How many records may wait for the disk before the oldest are summarised (a busy site's
    /// day: ~2,000 calls; each waiting record is ~300 bytes).
    public static let queueLimit = 10_000

    /// `path` nil keeps the records in memory (tests). Never throws: what cannot be opened is
    /// reported by `problem`.
    public init(path: String?, logger: Logger = Logger(label: "call-records"), now: Date = Date(), queueLimit: Int = GatewayCallRecords.queueLimit) {
        self.path = path
        self.logger = logger
        let state = NIOLockedValueBox(State())
        self.state = state
        writer = RecordWriter(
            database: nil, limit: queueLimit, logger: logger, apply: Self.write,
            onBacklog: { backlog in
                let observer = state.withLockedValue { state -> (@Sendable () -> Void)? in
                    state.backlog = backlog
                    return state.observer
                }
                observer?()
            },
            onBroken: { [path, logger] error in
                // The file broke under a running gateway: aside with it, write to a new one.
                guard let path, let fresh = try? Self.replace(path, because: "\(error)", logger: logger, now: Date()) else { return nil }
                let observer = state.withLockedValue { state -> (@Sendable () -> Void)? in
                    state.database = fresh.database
                    state.openingProblem = fresh.problem
                    return state.observer
                }
                observer?()
                return fresh.database
            })
        reopen(now: now)
    }

    /// Tries to open the file if it is not open (at start, then from the records' job every minute).
    public func reopen(now: Date = Date()) {
        guard state.withLockedValue({ $0.database == nil }) else { return }
        let opened: (database: (any DatabaseWriter)?, problem: String?)
        if let path {
            opened = Self.open(path, logger: logger, now: now)
        } else {
            opened = ((try? Self.prepare(DatabaseQueue(configuration: SQLiteFile.configuration()), now: now)), nil)
        }
        let observer = state.withLockedValue { state -> (@Sendable () -> Void)? in
            state.database = opened.database
            state.openingProblem = opened.problem
            return state.observer
        }
        if let database = opened.database { writer.use(database) }
        observer?()
    }

    /// Opens, moving a broken file aside; nil with the reason when the file cannot be used.
    static func open(_ path: String, logger: Logger, now: Date) -> (database: (any DatabaseWriter)?, problem: String?) {
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let pool = try DatabasePool(path: path, configuration: Self.configuration)
            try SQLiteFile.quickCheck(pool)
            return (try prepare(pool, now: now), nil)
        } catch where SQLiteFile.isBroken(error, whileOpening: true) {
            do {
                return try replace(path, because: "\(error)", logger: logger, now: now)
            } catch {
                let text = "call records \(path) is broken and could not be moved aside (\(error)): records are kept in memory"
                logger.error("\(text)")
                return (nil, text)
            }
        } catch {
            let text = "call records \(path) cannot be opened (\(SQLiteFile.describe(error))): records are kept in memory and written once it opens"
            logger.error("\(text)")
            return (nil, text)
        }
    }

    /// The records are written, rarely read: a small page cache (the default 2 MB per connection
    /// is memory a gateway holds for nothing).
    static var configuration: Configuration { SQLiteFile.configuration(cacheKiB: 256) }

    /// Moves the broken file aside and makes a new one.
    static func replace(_ path: String, because reason: String, logger: Logger, now: Date) throws -> (database: (any DatabaseWriter)?, problem: String?) {
        let aside = try SQLiteFile.moveAside(path, now: now)
        let text = "call records \(path) was broken (\(reason)): moved aside to \(aside), a new one started"
        logger.error("\(text)")
        let pool = try DatabasePool(path: path, configuration: Self.configuration)
        return (try prepare(pool, now: now), text)
    }

    /// Migrates, closes the records a crash left open and counts nothing else.
    static func prepare(_ database: some DatabaseWriter, now: Date) throws -> any DatabaseWriter {
        try migrator.migrate(database)
        try database.write { db in
            let alive = try Heartbeat.read(db, now: now.timeIntervalSince1970)
            try db.execute(
                sql: """
                    UPDATE call SET status = 'interrupted', endedAt = MAX(COALESCE(answeredAt, startedAt), COALESCE(?, 0)),
                      reason = 'the gateway stopped during the call; ended at the last time it was known alive'
                    WHERE endedAt IS NULL OR status = 'in-progress'
                    """, arguments: [alive])
            try Heartbeat.write(db, now: now.timeIntervalSince1970)
        }
        return database
    }

    static var migrator: DatabaseMigrator {
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
        // Issue 18: records written at the start of a call (no end yet), summaries of records
        // that waited too long for the disk, the heartbeat.
        migrator.registerMigration("v2-durable") { db in
            try db.execute(sql: """
                CREATE TABLE call_v2 (
                  id INTEGER PRIMARY KEY, ref TEXT UNIQUE, startedAt DOUBLE NOT NULL, answeredAt DOUBLE, endedAt DOUBLE,
                  direction TEXT NOT NULL, channel INTEGER NOT NULL, peer TEXT NOT NULL, status TEXT NOT NULL,
                  codec TEXT, reason TEXT);
                INSERT INTO call_v2 (id, startedAt, answeredAt, endedAt, direction, channel, peer, status, codec, reason)
                  SELECT id, startedAt, answeredAt, endedAt, direction, channel, peer, status, codec, reason FROM call;
                DROP TABLE call;
                ALTER TABLE call_v2 RENAME TO call;
                CREATE INDEX call_startedAt ON call(startedAt);
                """)
            try db.execute(sql: RecordSummary.createTable)
            try db.execute(sql: Heartbeat.createTable)
        }
        return migrator
    }

    private static func write(_ db: Database, _ records: [GatewayCallRecord], _ summary: RecordSummary?) throws {
        for r in records {
            try db.execute(
                sql: """
                    INSERT INTO call (ref, startedAt, answeredAt, endedAt, direction, channel, peer, status, codec, reason)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(ref) DO UPDATE SET answeredAt = excluded.answeredAt, endedAt = excluded.endedAt, status = excluded.status,
                      codec = excluded.codec, reason = excluded.reason, peer = excluded.peer, direction = excluded.direction,
                      channel = excluded.channel
                    """,
                arguments: [r.ref, r.startedAt, r.answeredAt, r.endedAt, r.direction.rawValue, r.channel, r.peer, r.status.rawValue, r.codec, r.reason])
        }
        try summary?.write(db)
    }

    // MARK: Writing

    /// Hands a record (new or changed: same `ref`) to the writer; returns at once.
    public func record(_ record: GatewayCallRecord) {
        writer.add(record)
    }

    /// Returns once every record handed to `record` so far is written, or a write has failed
    /// (then they stay queued; a graceful stop logs how many are lost).
    public func flush() async {
        await writer.flush()
    }

    /// Notes that the gateway is alive (the end time of records a crash leaves open).
    public func heartbeat(now: Date = Date()) {
        guard let database = state.withLockedValue({ $0.database }) else { return }
        database.asyncWriteWithoutTransaction { db in try? Heartbeat.write(db, now: now.timeIntervalSince1970) }
    }

    // MARK: Status

    /// Called when `problem` or the backlog changes.
    public func observe(_ observer: @escaping @Sendable () -> Void) {
        state.withLockedValue { $0.observer = observer }
    }

    public var backlog: RecordBacklog { writer.backlog }

    /// What an operator should know about the records, or nil.
    public var problem: String? {
        let (opening, open) = state.withLockedValue { ($0.openingProblem, $0.database != nil) }
        let backlog = writer.backlog
        var parts: [String] = []
        if let opening { parts.append(opening) }
        if let error = backlog.error, open { parts.append("call records not written (\(error)): \(backlog.waiting) waiting") }
        if backlog.summarised > 0 { parts.append("\(backlog.summarised) call records summarised while the disk could not take them") }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    // MARK: Reading and retention

    /// The open database (tests, reads).
    public var database: (any DatabaseWriter)? { state.withLockedValue { $0.database } }

    public func all() throws -> [GatewayCallRecord] {
        guard let database else { return [] }
        return try database.read { db in try Self.read(db, since: nil) }
    }

    static func read(_ db: Database, since: Double?) throws -> [GatewayCallRecord] {
        let rows = try Row.fetchAll(db, sql: "SELECT * FROM call WHERE startedAt >= ? ORDER BY startedAt, id", arguments: [since ?? -Double.greatestFiniteMagnitude])
        return rows.compactMap(GatewayCallRecord.init(row:))
    }

    /// Deletes the records (and summaries) that started more than `retentionDays` before `now`
    /// (a `RetentionClock`'s: a clock stepped forward deletes nothing young); returns how many.
    /// On GRDB's writer queue: the caller's thread is not held while a large delete runs.
    @discardableResult
    public func purge(retentionDays: Int, now: Date) async throws -> Int {
        guard let database else { return 0 }
        let cutoff = now.timeIntervalSince1970 - Double(retentionDays) * 86400
        return try await database.write { db in
            try db.execute(sql: "DELETE FROM call WHERE startedAt < ? AND endedAt IS NOT NULL", arguments: [cutoff])
            let calls = db.changesCount
            try db.execute(sql: "DELETE FROM callSummary WHERE lastStartedAt < ?", arguments: [cutoff])
            return calls
        }
    }
}

/// The records of a `calls.sqlite` file as `symphony-bridge calls` shows them, read-only (the
/// gateway may be writing: WAL lets both go on).
public enum GatewayCallRecordFile {
    public struct Contents: Sendable {
        public var records: [GatewayCallRecord]
        public var summaries: [(firstStartedAt: Double, lastStartedAt: Double, calls: Int, statuses: String)]
        /// Rows that did not decode.
        public var unreadable: Int
    }

    public static func read(_ path: String, since: Double?) throws -> Contents {
        let queue = try DatabaseQueue(path: path, configuration: SQLiteFile.configuration(readonly: true))
        return try queue.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM call WHERE startedAt >= ? ORDER BY startedAt, id", arguments: [since ?? -Double.greatestFiniteMagnitude])
            let records = rows.compactMap(GatewayCallRecord.init(row:))
            var summaries: [(Double, Double, Int, String)] = []
            if try db.tableExists("callSummary") {
                for row in try Row.fetchAll(db, sql: "SELECT * FROM callSummary WHERE lastStartedAt >= ? ORDER BY firstStartedAt", arguments: [since ?? -Double.greatestFiniteMagnitude]) {
                    guard let first = try? row.decode(Double.self, forColumn: "firstStartedAt"), let last = try? row.decode(Double.self, forColumn: "lastStartedAt"),
                        let calls = try? row.decode(Int64.self, forColumn: "calls"), let statuses = try? row.decode(String.self, forColumn: "statuses")
                    else { continue }
                    summaries.append((first, last, Int(clamping: calls), statuses))
                }
            }
            return Contents(records: records, summaries: summaries, unreadable: rows.count - records.count)
        }
    }
}
