import DeviceTrust
import DurableState
import Foundation
import GRDB
import NIOConcurrencyHelpers

/// `admin backup` and `admin restore` (docs/OPERATIONS.md "Backup and restore"): one SQLite file
/// holding the directory (SQLite's online backup: a consistent copy while the core runs and
/// writes) and the core's keys and certificates (CA, token key, server certificate), so that a
/// restored core is the same core to its devices and clients. The file holds password hashes
/// and private keys: it is written 0600.
public enum DirectoryBackup {
    public struct Summary: Sendable, Equatable, CustomStringConvertible {
        public var users = 0, devices = 0, sites = 0, callRecords = 0
        public var files: [String] = []
        public var description: String {
            "\(sites) site(s), \(users) user(s), \(devices) device(s), \(callRecords) call record(s); keys and certificates: "
                + (files.isEmpty ? "none" : files.joined(separator: ", "))
        }
    }

    public struct Refusal: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// The core's files a backup carries, by the name they have in it.
    static func files(_ c: CloudCoreConfiguration) -> [(name: String, path: String)] {
        [
            ("ca.pem", c.resolvedCACertificateFile), ("ca-key.pem", c.resolvedCAKeyFile), ("token-key.pem", c.resolvedTokenKeyFile),
            ("server.pem", c.resolvedCertificateFile), ("server-key.pem", c.resolvedKeyFile),
        ]
    }

    /// Copies the directory of a running (or stopped) core into `file`, with the core's keys.
    /// Written beside as a temporary file and renamed: `file` is whole or absent.
    @discardableResult
    public static func backup(_ directory: Directory, configuration c: CloudCoreConfiguration, to file: String) throws -> Summary {
        let temporary = file + ".partial-\(getpid())"
        try? FileManager.default.removeItem(atPath: temporary)
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        guard FileManager.default.createFile(atPath: temporary, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw Refusal("cannot write \(file)")
        }
        let copy = try DatabaseQueue(path: temporary)
        try directory.database.backup(to: copy)
        try copy.write { db in
            try db.execute(sql: "CREATE TABLE backupFile (name TEXT PRIMARY KEY, content BLOB NOT NULL)")
            for (name, path) in files(c) {
                guard let content = FileManager.default.contents(atPath: path) else { continue }
                try db.execute(sql: "INSERT INTO backupFile (name, content) VALUES (?, ?)", arguments: [name, content])
            }
            try db.execute(sql: "PRAGMA journal_mode = DELETE")
        }
        try copy.close()
        let summary = try verify(temporary)
        if FileManager.default.fileExists(atPath: file) { try FileManager.default.removeItem(atPath: file) }
        try FileManager.default.moveItem(atPath: temporary, toPath: file)
        return summary
    }

    /// Checks that `file` is a backup this version can restore: a sound SQLite file, the
    /// directory's tables, no migration this version does not know. Read-only.
    public static func verify(_ file: String) throws -> Summary {
        guard FileManager.default.isReadableFile(atPath: file) else { throw Refusal("\(file): no such file, or not readable") }
        do {
            let queue = try DatabaseQueue(path: file, configuration: SQLiteFile.configuration(readonly: true))
            try SQLiteFile.quickCheck(queue)
            return try queue.read { db in
                for table in ["company", "site", "user", "device", "callRecord", "grdb_migrations"] where try !db.tableExists(table) {
                    throw Refusal("\(file) is not a directory backup (no \(table) table)")
                }
                let known = Set(DirectorySchema.migrator().migrations)
                let applied = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
                if let unknown = applied.first(where: { !known.contains($0) }) {
                    throw Refusal("\(file) was made by a newer version (migration \(unknown)): restore it with that version")
                }
                var summary = Summary()
                summary.sites = try Int.fetchOne(db, sql: "SELECT count(*) FROM site") ?? 0
                summary.users = try Int.fetchOne(db, sql: "SELECT count(*) FROM user") ?? 0
                summary.devices = try Int.fetchOne(db, sql: "SELECT count(*) FROM device") ?? 0
                summary.callRecords = try Int.fetchOne(db, sql: "SELECT count(*) FROM callRecord") ?? 0
                if try db.tableExists("backupFile") { summary.files = try String.fetchAll(db, sql: "SELECT name FROM backupFile ORDER BY name") }
                return summary
            }
        } catch let refusal as Refusal {
            throw refusal
        } catch {
            throw Refusal("\(file) is not a usable backup: \(SQLiteFile.isBroken(error, whileOpening: true) ? "\(error)" : SQLiteFile.describe(error))")
        }
    }

    /// Replaces the core's directory (and its keys, when the backup has them) with the backup's.
    /// The core must be stopped (`core.lock` free). The current directory is kept as
    /// `directory.sqlite.before-restore-<time>`; the new one is written beside, synced and renamed.
    @discardableResult
    public static func restore(_ file: String, configuration c: CloudCoreConfiguration) throws -> Summary {
        let summary = try verify(file)
        try FileManager.default.createDirectory(atPath: c.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        guard let lock = CoreLock(stateDirectory: c.stateDirectory) else {
            throw Refusal("the core is running on \(c.stateDirectory): stop it first (systemctl stop symphony-cloud-core), then restore")
        }
        defer { lock.release() }
        let path = c.directoryFile
        let incoming = path + ".restoring"
        try? FileManager.default.removeItem(atPath: incoming)
        var done = false
        defer { if !done { try? FileManager.default.removeItem(atPath: incoming) } }  // it holds the keys
        guard FileManager.default.createFile(atPath: incoming, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw Refusal("cannot write \(incoming)")
        }
        let source = try DatabaseQueue(path: file, configuration: SQLiteFile.configuration(readonly: true))
        let target = try DatabaseQueue(path: incoming)
        try source.backup(to: target)
        var keys: [(name: String, content: [UInt8])] = []
        try target.write { db in
            if try db.tableExists("backupFile") {
                for row in try Row.fetchAll(db, sql: "SELECT name, content FROM backupFile") {
                    guard let name = try? row.decode(String.self, atIndex: 0), let content = try? row.decode(Data.self, atIndex: 1) else { continue }
                    keys.append((name, [UInt8](content)))
                }
                try db.execute(sql: "DROP TABLE backupFile")
            }
        }
        try target.close()
        // The files first (each atomically, created with its final mode), then the directory: a
        // cut in between leaves the old directory with the backup's keys, which a second restore mends.
        for (name, content) in keys {
            guard let destination = files(c).first(where: { $0.name == name })?.path else { continue }
            do {
                try AtomicFile.write(content, to: destination, mode: name.hasSuffix("key.pem") ? 0o600 : 0o644)
            } catch {
                throw Refusal("cannot write \(destination): \(error)")
            }
        }
        var aside: String?
        if FileManager.default.fileExists(atPath: path) {
            aside = try SQLiteFile.moveAside(path, label: "before-restore")
        }
        // A WAL left beside (from a crash, or one that could not be moved) must not be replayed onto the restored file.
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        do {
            try FileManager.default.moveItem(atPath: incoming, toPath: path)
        } catch {
            if let aside { try? FileManager.default.moveItem(atPath: aside, toPath: path) }  // never no directory at all
            throw Refusal("cannot put the restored directory in place: \(error)")
        }
        done = true
        // Run as root, the restore must not leave files the core's user (the state directory's
        // owner, `_symcore` when packaged) cannot open.
        var owner = stat()
        if stat(c.stateDirectory, &owner) == 0 {
            let written = [path, c.stateDirectory + "/core.lock"] + keys.compactMap { key in files(c).first(where: { $0.name == key.name })?.path }
            for file in written { _ = chown(file, owner.st_uid, owner.st_gid) }
        }
        AtomicFile.syncDirectory(of: path)
        return summary
    }
}

/// The running core's claim on its state directory: an exclusive `flock` on `core.lock`, held
/// until the process ends (kill -9 included). `admin restore` refuses while another holds it.
public final class CoreLock: Sendable {
    /// -1 once released: a second release must not close a descriptor number someone else now
    /// holds (it closed a SwiftNIO socket under the suite, which then trapped).
    private let fd: NIOLockedValueBox<Int32>

    /// Nil when another process holds the lock (or the lock file cannot be opened: `openError`).
    public init?(stateDirectory: String) {
        let fd = open(stateDirectory + "/core.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            CoreLock.lastOpenError.withLockedValue { $0 = errno }
            return nil
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            return nil
        }
        self.fd = NIOLockedValueBox(fd)
    }

    /// Why the last `init` could not open the lock file (0: it could, another process holds it).
    public static var openError: Int32 { lastOpenError.withLockedValue { $0 } }
    private static let lastOpenError = NIOLockedValueBox<Int32>(0)

    /// Unlocks and closes, once; later calls do nothing.
    public func release() {
        let held = fd.withLockedValue { value in
            defer { value = -1 }
            return value
        }
        guard held >= 0 else { return }
        flock(held, LOCK_UN)
        close(held)
    }
}
