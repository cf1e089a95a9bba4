public import Foundation
public import GRDB

/// How both daemons open their SQLite files (docs/RELIABILITY.md "Durable state"): WAL with
/// synchronous=NORMAL, a busy timeout on every connection (an `admin` command or a backup holding
/// the write lock makes a daemon's write wait, not fail), and what to do with a file that is not
/// a database any more.
public enum SQLiteFile {
    /// How long a connection waits for another one's lock before its statement fails with
    /// SQLITE_BUSY. Writes run on GRDB's writer queue, never on an event loop: waiting is safe.
    public static let busyTimeout: TimeInterval = 5

    /// WAL, synchronous=NORMAL (a power cut may lose the last commits, never corrupt the file:
    /// SQLite's advice for WAL), the busy timeout; foreign keys when asked.
    /// `cacheKiB` bounds each connection's page cache (SQLite's default is 2,000 KiB).
    public static func configuration(foreignKeys: Bool = false, readonly: Bool = false, cacheKiB: Int? = nil) -> Configuration {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = foreignKeys
        configuration.busyMode = .timeout(busyTimeout)
        configuration.readonly = readonly
        configuration.prepareDatabase { db in
            if !readonly { try db.execute(sql: "PRAGMA synchronous = NORMAL") }
            if let cacheKiB { try db.execute(sql: "PRAGMA cache_size = -\(max(64, cacheKiB))") }
        }
        return configuration
    }

    /// The error says the file's content is broken (not a database, corrupt pages, a schema we
    /// cannot read), as opposed to a disk that is full, busy or not writable: only such a file is
    /// moved aside. `DatabaseMigrator` failures on a readable file count as broken too (a table
    /// of the same name with other columns).
    public static func isBroken(_ error: any Error, whileOpening: Bool) -> Bool {
        guard let error = error as? DatabaseError else { return error is SchemaMismatch }
        switch error.resultCode {
        case .SQLITE_CORRUPT, .SQLITE_NOTADB, .SQLITE_FORMAT: return true
        // "no such column", "table already exists" from a foreign schema while migrating.
        case .SQLITE_ERROR, .SQLITE_SCHEMA: return whileOpening
        default: return false
        }
    }

    /// SQLite's words for the common failures, without GRDB's statement dump.
    public static func describe(_ error: any Error) -> String {
        guard let error = error as? DatabaseError else { return "\(error)" }
        switch error.resultCode {
        case .SQLITE_FULL: return "disk full"
        case .SQLITE_BUSY, .SQLITE_LOCKED: return "database busy (locked by another process)"
        case .SQLITE_READONLY: return "database read-only"
        case .SQLITE_IOERR: return "disk I/O error"
        default: return error.message ?? "SQLite error \(error.resultCode.rawValue)"
        }
    }

    /// A readable file whose tables are not ours.
    public struct SchemaMismatch: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Checks the file's structure (`PRAGMA quick_check`: pages, indexes' order, not the
    /// rows' contents); throws `SchemaMismatch` naming the first problem.
    public static func quickCheck(_ database: any DatabaseReader) throws {
        let result = try database.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check(1)") }
        guard result == ["ok"] else { throw SchemaMismatch("quick_check: \(result.first ?? "no answer")") }
    }

    /// Renames `path` (and its `-wal` and `-shm`) to `<path>.<label>-<UTC time>`, keeping what was
    /// in it for whoever wants to look; returns the new name. The directory is synced, so that a
    /// power cut right after does not bring the broken file back under its old name.
    public static func moveAside(_ path: String, label: String = "corrupt", now: Date = Date()) throws -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        var aside = "\(path).\(label)-\(formatter.string(from: now))"
        var n = 1
        while FileManager.default.fileExists(atPath: aside) {
            n += 1
            aside = "\(path).\(label)-\(formatter.string(from: now))-\(n)"
        }
        try FileManager.default.moveItem(atPath: path, toPath: aside)
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try? FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
        }
        syncDirectory(of: path)
        return aside
    }

    static func syncDirectory(of path: String) {
        let fd = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}

/// The last moment a daemon was known alive, kept in its database (`heartbeat` table, one row):
/// the end time of records a crash left open. Written every minute and at a graceful stop.
public enum Heartbeat {
    public static let createTable = "CREATE TABLE IF NOT EXISTS heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), aliveAt DOUBLE NOT NULL)"

    public static func write(_ db: Database, now: Double) throws {
        try db.execute(sql: "INSERT INTO heartbeat (id, aliveAt) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET aliveAt = excluded.aliveAt", arguments: [now])
    }

    /// The stored time, if it is one (the file is outside input: NaN, text or a value far
    /// from `now` are no time).
    public static func read(_ db: Database, now: Double) throws -> Double? {
        guard let row = try Row.fetchOne(db, sql: "SELECT aliveAt FROM heartbeat WHERE id = 1"),
            let value = try? row.decode(Double.self, atIndex: 0), value.isFinite, value > 0, value <= now + 86_400
        else { return nil }
        return value
    }
}
