import DurableState
import Foundation
public import GRDB
public import SIP

/// A refusal from the directory, worded for the admin who typed the command.
public struct DirectoryError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What a Request-URI user part names.
public enum Callable: Sendable, Equatable {
    case user(name: String)
    case ringGroup(name: String, members: [String], ringSeconds: Int)
    /// A gateway channel: the device registers `<device>-ch<n>` for each of its channels.
    case channel(device: String, number: Int)
}

/// The directory in SQLite (GRDB): companies → projects → sites; users, devices with their
/// channels, ring groups, forwarding rules, claiming codes, persisted registrations and call
/// history. Reads are small indexed lookups; SQLite runs in WAL mode so that the call path's
/// reads never wait for the history writer.
public final class Directory: Sendable {
    public let database: any DatabaseWriter
    /// The digest realm user HA1 values are computed for.
    public let realm: String
    let credentials = DirectoryCache<String?>()
    let existence = DirectoryCache<Bool>()
    let callables = DirectoryCache<Callable?>()
    let rules = DirectoryCache<[ForwardingRule]>()
    let displayNames = DirectoryCache<String?>()
    let permissions = DirectoryCache<CallPermission>()
    let pinnedSerials = DirectoryCache<String?>()

    /// After a change through this process: forget what the caches remember.
    func changed() {
        credentials.removeAll()
        existence.removeAll()
        callables.removeAll()
        rules.removeAll()
        displayNames.removeAll()
        permissions.removeAll()
        pinnedSerials.removeAll()
    }

    /// Opens (creating and migrating) the directory at `path`; `nil` keeps it in memory (tests).
    /// A file that cannot be opened, is not a database or fails `PRAGMA quick_check` throws
    /// `Directory.Unusable`, which names the file and the way back (the core does not start
    /// without its directory: docs/RELIABILITY.md "Durable state").
    public init(path: String?, realm: String) throws {
        // WAL with synchronous=NORMAL: commits do not wait for fsync of the log (a power cut may
        // lose the last second of writes, never corrupt the file) — SQLite's advice for WAL; a
        // busy timeout, so that an `admin` command or a backup makes the daemon wait, not fail.
        let configuration = SQLiteFile.configuration(foreignKeys: true)
        if let path {
            do {
                try FileManager.default.createDirectory(
                    atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                let pool = try DatabasePool(path: path, configuration: configuration)
                try SQLiteFile.quickCheck(pool)
                try DirectorySchema.migrator().migrate(pool)
                database = pool
            } catch {
                throw Unusable(path: path, reason: SQLiteFile.isBroken(error, whileOpening: true) ? "\(error)" : SQLiteFile.describe(error))
            }
            // Password hashes and claiming codes: the owner's only, whatever the umask of whoever
            // created the file (an `admin` command run as root before the service ever started).
            for file in [path, path + "-wal", path + "-shm"] { chmod(file, 0o600) }
        } else {
            database = try DatabaseQueue(configuration: configuration)
        }
        self.realm = realm
        if path == nil { try DirectorySchema.migrator().migrate(database) }
    }

    /// The directory file cannot be used; the core will not start without it.
    public struct Unusable: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String {
            "the directory \(path) cannot be used (\(reason)). The core does not start without it: restore a backup with "
                + "`symphony-cloud-core admin restore FILE` (with the core stopped), or move the file aside to start with an empty directory"
        }
    }

    // MARK: Companies, projects, sites

    @discardableResult
    public func createCompany(_ name: String) throws -> Int64 {
        try checkPlaceName(name, "company")
        return try insert("company", ["name": name], what: "company \(name)")
    }

    @discardableResult
    public func createProject(_ name: String, company: String) throws -> Int64 {
        try checkPlaceName(name, "project")
        let companyID = try id(of: "company", named: company)
        return try insert("project", ["companyId": companyID, "name": name], what: "project \(company)/\(name)")
    }

    @discardableResult
    public func createSite(_ name: String, company: String, project: String, timeZone: String = "UTC") throws -> Int64 {
        try checkPlaceName(name, "site")
        guard TimeZone(identifier: timeZone) != nil else { throw DirectoryError("unknown time zone \(timeZone) (an IANA name like Europe/Berlin)") }
        let projectID = try database.read { db in
            try Int64.fetchOne(db, sql: """
                SELECT project.id FROM project JOIN company ON company.id = project.companyId
                WHERE company.name = ? AND project.name = ?
                """, arguments: [company, project])
        }
        guard let projectID else { throw DirectoryError("no project \(company)/\(project)") }
        return try insert("site", ["projectId": projectID, "name": name, "timeZone": timeZone], what: "site \(name)")
    }

    // MARK: Users

    /// A user with a password for SIP digest; only the HA1 values for the realm are stored.
    @discardableResult
    public func createUser(_ name: String, site: String, password: String?, displayName: String? = nil) throws -> Int64 {
        try checkCallableName(name)
        let siteID = try id(of: "site", named: site)
        return try insert("user", [
            "siteId": siteID, "name": name, "displayName": displayName,
            "ha1Md5": password.map { DigestServer.ha1(.md5, username: name, realm: realm, password: $0) },
            "ha1Sha256": password.map { DigestServer.ha1(.sha256, username: name, realm: realm, password: $0) },
        ], what: "user \(name)")
    }

    /// The stored H(user:realm:password) for `algorithm`'s base hash; nil for unknown users and
    /// users without a password.
    /// On the call path: a prepared statement from the connection's cache, one indexed lookup.
    public func ha1(user: String, algorithm: DigestAlgorithm) -> String? {
        guard Self.couldBeName(user) else { return nil }
        let md5 = algorithm.base == .md5
        return credentials.value((md5 ? "m:" : "s:") + user) {
            let sql = md5 ? "SELECT ha1Md5 FROM user WHERE name = ?" : "SELECT ha1Sha256 FROM user WHERE name = ?"
            return try? database.read { db in try String.fetchOne(db.cachedStatement(sql: sql), arguments: [user]) }
        }
    }

    /// A user's display name (what the core asserts for the user's calls, RFC 3325), if set.
    public func displayName(ofUser name: String) -> String? {
        guard Self.couldBeName(name) else { return nil }
        return displayNames.value("d:" + name) {
            let display = try? database.read { db in
                try String.fetchOne(db.cachedStatement(sql: "SELECT displayName FROM user WHERE name = ?"), arguments: [name])
            }
            return display.flatMap { $0 }.flatMap { $0.isEmpty ? nil : $0 }
        }
    }

    public func userExists(_ name: String) -> Bool {
        guard Self.couldBeName(name) else { return false }
        return existence.value("u:" + name) {
            (try? database.read { db in try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM user WHERE name = ?"), arguments: [name]) }) != nil
        }
    }

    // MARK: Devices and channels

    /// A gateway with channels 1…`channels`, each callable as `<device>-ch<n>`.
    @discardableResult
    public func createDevice(_ name: String, site: String, channels: Int = 14) throws -> Int64 {
        guard (1...14).contains(channels) else { throw DirectoryError("a device has 1 to 14 channels, not \(channels)") }
        guard !name.contains("-ch"), name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
            throw DirectoryError("device name \(name): letters, digits, '-', '_' and '.' only, and no '-ch'")
        }
        try checkCallableName(name)
        let siteID = try id(of: "site", named: site)
        defer { changed() }
        return try database.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM device WHERE name = ?", arguments: [name]) == nil else {
                throw DirectoryError("device \(name) exists already")
            }
            try db.execute(sql: "INSERT INTO device (siteId, name) VALUES (?, ?)", arguments: [siteID, name])
            let id = db.lastInsertedRowID
            for number in 1...channels {
                try db.execute(sql: "INSERT INTO channel (deviceId, number) VALUES (?, ?)", arguments: [id, number])
            }
            return id
        }
    }

    public func deviceExists(_ name: String) -> Bool {
        guard Self.couldBeName(name) else { return false }
        return existence.value("d:" + name) {
            (try? database.read { db in try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM device WHERE name = ?"), arguments: [name]) }) != nil
        }
    }

    // MARK: Ring groups

    /// `members` are callable names (users or device channels), rung in parallel, in this order
    /// when more than 32 would ring at once.
    @discardableResult
    public func createRingGroup(_ name: String, site: String, members: [String], ringSeconds: Int = 30) throws -> Int64 {
        try checkCallableName(name)
        guard (5...300).contains(ringSeconds) else { throw DirectoryError("ring time \(ringSeconds) s: 5 to 300") }
        for member in members {
            switch try callable(named: member) {
            case .user?, .channel?: break
            case .ringGroup?: throw DirectoryError("ring group member \(member) is a ring group; members are users or channels")
            case nil: throw DirectoryError("ring group member \(member) is not a user or channel")
            }
            let party: Party = Self.channelParts(member).map { .device($0.device) } ?? .user(member)
            guard try sameCompany(party, asSite: site) else { throw DirectoryError("ring group member \(member) belongs to another company") }
        }
        let siteID = try id(of: "site", named: site)
        defer { changed() }
        return try database.write { db in
            try db.execute(sql: "INSERT INTO ringGroup (siteId, name, ringSeconds) VALUES (?, ?, ?)", arguments: [siteID, name, ringSeconds])
            let id = db.lastInsertedRowID
            for (position, member) in members.enumerated() {
                try db.execute(sql: "INSERT INTO ringGroupMember (groupId, position, member) VALUES (?, ?, ?)", arguments: [id, position, member])
            }
            return id
        }
    }

    // MARK: Lookup

    /// What `name` (a Request-URI user part) calls, or nil.
    public func callable(named name: String) throws -> Callable? {
        guard Self.couldBeName(name) else { return nil }
        return try callables.value(name) { try loadCallable(named: name) }
    }

    private func loadCallable(named name: String) throws -> Callable? {
        try database.read { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM user WHERE name = ?", arguments: [name]) != nil {
                return .user(name: name)
            }
            if let row = try Row.fetchOne(db, sql: "SELECT id, ringSeconds FROM ringGroup WHERE name = ?", arguments: [name]) {
                let members = try String.fetchAll(
                    db, sql: "SELECT member FROM ringGroupMember WHERE groupId = ? ORDER BY position", arguments: [try row.decode(Int64.self, forColumn: "id")])
                // The rule `createRingGroup` writes by, held on read too (the file may say otherwise).
                let seconds = (try? row.decode(Int.self, forColumn: "ringSeconds")).map { min(max($0, 5), 300) } ?? 30
                return .ringGroup(name: name, members: members, ringSeconds: seconds)
            }
            if let (device, number) = Self.channelParts(name),
                try Bool.fetchOne(db, sql: """
                    SELECT 1 FROM channel JOIN device ON device.id = channel.deviceId WHERE device.name = ? AND channel.number = ?
                    """, arguments: [device, number]) != nil
            {
                return .channel(device: device, number: number)
            }
            return nil
        }
    }

    /// `gw1-ch3` → ("gw1", 3).
    public static func channelParts(_ name: String) -> (device: String, number: Int)? {
        // Only the canonical spelling ("gw1-ch3", never "gw1-ch03" or "gw1-ch+3"): each channel has
        // one name, so a device cannot make up addresses of record without end.
        guard let range = name.range(of: "-ch", options: .backwards), let number = Int(name[range.upperBound...]), (1...14).contains(number),
            String(number) == name[range.upperBound...]
        else { return nil }
        return (String(name[..<range.lowerBound]), number)
    }

    public static func channelName(device: String, number: Int) -> String { "\(device)-ch\(number)" }

    // MARK: Forwarding rules

    /// Replaces a user's rules (at most 20, checked with `ForwardingRule.validate`).
    public func setForwardingRules(_ rules: [ForwardingRule], user: String) throws {
        do { try ForwardingRule.validate(rules) } catch { throw DirectoryError("forwarding rules of \(user): \(error)") }
        for rule in rules {
            switch rule.target {
            case .user(let name) where !userExists(name): throw DirectoryError("forwarding target user \(name) does not exist")
            case .ringGroup(let name):
                guard case .ringGroup? = try callable(named: name) else { throw DirectoryError("forwarding target ring group \(name) does not exist") }
            default: break
            }
        }
        let userID = try id(of: "user", named: user)
        for rule in rules {
            // A user forwards only within the company (a rule is no way around the call policy).
            let party: Party
            switch rule.target {
            case .user(let name): party = .user(name)
            case .ringGroup(let name): party = .ringGroup(name)
            default: continue
            }
            let site = try database.read { db in
                try String.fetchOne(db, sql: "SELECT site.name FROM user JOIN site ON site.id = user.siteId WHERE user.name = ?", arguments: [user])
            }
            guard let site, try sameCompany(party, asSite: site) else { throw DirectoryError("forwarding target \(party) belongs to another company") }
        }
        defer { changed() }
        try database.write { db in
            try db.execute(sql: "DELETE FROM forwardingRule WHERE userId = ?", arguments: [userID])
            for (position, rule) in rules.enumerated() {
                let (kind, value) = rule.target.stored
                try db.execute(
                    sql: """
                        INSERT INTO forwardingRule (userId, position, weekdays, dateFrom, dateTo, timeStart, timeEnd, timeZone, targetKind, targetValue)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        userID, position, rule.weekdays.sorted().map(String.init).joined(separator: ","),
                        rule.dates.map { $0.lowerBound.text }, rule.dates.map { $0.upperBound.text },
                        rule.timeOfDay?.start, rule.timeOfDay?.end, rule.timeZone, kind, value,
                    ])
            }
        }
    }

    public func forwardingRules(user: String) throws -> [ForwardingRule] {
        guard Self.couldBeName(user) else { return [] }
        return try rules.value(user) { try loadForwardingRules(user: user) }
    }

    private func loadForwardingRules(user: String) throws -> [ForwardingRule] {
        try database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT forwardingRule.* FROM forwardingRule JOIN user ON user.id = forwardingRule.userId
                WHERE user.name = ? ORDER BY position
                """, arguments: [user])
        }.compactMap { row -> ForwardingRule? in
            // A row that does not decode is skipped (GRDB's subscripts would trap on it).
            try? Self.forwardingRule(row)
        }
    }

    private static func forwardingRule(_ row: Row) throws -> ForwardingRule? {
        guard let target = ForwardingRule.Target(
            stored: try row.decode(String.self, forColumn: "targetKind"), value: try row.decode(String?.self, forColumn: "targetValue") ?? "")
        else { return nil }
        let weekdays = Set(try row.decode(String.self, forColumn: "weekdays").split(separator: ",").compactMap { Int($0) }.filter { (1...7).contains($0) })
        var dates: ClosedRange<ForwardingRule.Day>?
        if let from = ForwardingRule.Day(text: try row.decode(String?.self, forColumn: "dateFrom")),
            let to = ForwardingRule.Day(text: try row.decode(String?.self, forColumn: "dateTo")), from <= to
        {
            dates = from...to
        }
        var time: (Int, Int)?
        if let start = try row.decode(Int?.self, forColumn: "timeStart"), let end = try row.decode(Int?.self, forColumn: "timeEnd") {
            guard (0...1439).contains(start), (0...1439).contains(end) else { return nil }
            time = (start, end)
        }
        return ForwardingRule(weekdays: weekdays, dates: dates, timeOfDay: time, timeZone: try row.decode(forColumn: "timeZone"), target: target)
    }

    // MARK: Listing and deleting (admin)

    public enum Kind: String, Sendable, CaseIterable {
        case company, project, site, user, device, ringGroup = "ring-group"

        var table: String { self == .ringGroup ? "ringGroup" : rawValue }
    }

    /// Rows of one kind as text columns, for `admin list`.
    public func list(_ kind: Kind) throws -> [[String]] {
        let sql: String
        switch kind {
        case .company: sql = "SELECT name FROM company ORDER BY name"
        case .project: sql = "SELECT company.name, project.name FROM project JOIN company ON company.id = companyId ORDER BY 1, 2"
        case .site: sql = "SELECT site.name, company.name || '/' || project.name, timeZone, 'channels:' || channelPolicy FROM site JOIN project ON project.id = projectId JOIN company ON company.id = companyId ORDER BY 1"
        case .user: sql = "SELECT user.name, site.name, coalesce(displayName, ''), CASE WHEN ha1Md5 IS NULL THEN 'token only' ELSE 'digest+token' END FROM user JOIN site ON site.id = siteId ORDER BY 1"
        case .device: sql = "SELECT device.name, site.name, (SELECT count(*) FROM channel WHERE deviceId = device.id), CASE WHEN claimedAt IS NULL THEN 'unclaimed' ELSE 'claimed' END FROM device JOIN site ON site.id = siteId ORDER BY 1"
        case .ringGroup: sql = "SELECT ringGroup.name, site.name, ringSeconds, (SELECT group_concat(member, ',') FROM (SELECT member FROM ringGroupMember WHERE groupId = ringGroup.id ORDER BY position)) FROM ringGroup JOIN site ON site.id = siteId ORDER BY 1"
        }
        return try database.read { db in
            try Row.fetchAll(db, sql: sql).map { row in (0..<row.count).map { index in (row[index] as DatabaseValue).text } }
        }
    }

    /// Deletes one entry by name (projects as `company/project`); what it owns goes with it.
    public func delete(_ kind: Kind, name: String) throws {
        defer { changed() }
        let changes = try database.write { db -> Int in
            if kind == .project {
                let parts = name.split(separator: "/", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw DirectoryError("a project is named company/project") }
                try db.execute(sql: "DELETE FROM project WHERE name = ? AND companyId = (SELECT id FROM company WHERE name = ?)", arguments: [parts[1], parts[0]])
            } else {
                try db.execute(sql: "DELETE FROM \(kind.table) WHERE name = ?", arguments: [name])
            }
            return db.changesCount
        }
        guard changes > 0 else { throw DirectoryError("no \(kind.rawValue) \(name)") }
    }

    // MARK: Helpers

    private func id(of table: String, named name: String) throws -> Int64 {
        guard let id = try database.read({ db in try Int64.fetchOne(db, sql: "SELECT id FROM \(table) WHERE name = ?", arguments: [name]) }) else {
            throw DirectoryError("no \(table) \(name)")
        }
        return id
    }

    private func insert(_ table: String, _ values: [String: (any DatabaseValueConvertible)?], what: String) throws -> Int64 {
        let columns = values.keys.sorted()
        defer { changed() }
        do {
            return try database.write { db in
                try db.execute(
                    sql: "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))",
                    arguments: StatementArguments(columns.map { values[$0]! }))
                return db.lastInsertedRowID
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw DirectoryError("\(what) exists already")
        }
    }

    /// Companies, projects and sites: 1 to 64 characters, no control characters (they go into
    /// every device certificate of the site, `DeviceBinding`).
    private func checkPlaceName(_ name: String, _ kind: String) throws {
        guard !name.isEmpty, name.count <= 64, name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw DirectoryError("\(kind) name \(name.isEmpty ? "''" : name.debugDescription): 1 to 64 characters, no control characters")
        }
    }

    /// Users, ring groups and devices share the Request-URI namespace.
    /// Whether a name from a request (a digest username, a Request-URI user) could be in the
    /// directory at all: names are at most 64 characters (`checkCallableName`), a channel adds
    /// `-ch14`. Longer ones are not looked up, so they never fill the caches (50,000 entries of
    /// up to 8 KiB each, otherwise).
    static func couldBeName(_ name: String) -> Bool { !name.isEmpty && name.utf8.count <= 80 }

    private func checkCallableName(_ name: String) throws {
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
            throw DirectoryError("name \(name.isEmpty ? "''" : name): 1 to 64 ASCII letters, digits, '-', '_' or '.'")
        }
        let taken = try database.read { db in
            try Bool.fetchOne(db, sql: """
                SELECT 1 FROM user WHERE name = ?1 UNION ALL SELECT 1 FROM ringGroup WHERE name = ?1 UNION ALL SELECT 1 FROM device WHERE name = ?1
                """, arguments: [name]) != nil
        }
        if taken || Self.channelParts(name) != nil { throw DirectoryError("name \(name) is taken (users, ring groups and devices share one namespace)") }
    }
}

extension DatabaseValue {
    /// The value as a table cell: empty for NULL, strings without quotes.
    var text: String {
        switch storage {
        case .null: ""
        case .int64(let value): String(value)
        case .double(let value): String(value)
        case .string(let value): value
        case .blob(let data): "<\(data.count) bytes>"
        }
    }
}

extension ForwardingRule.Target {
    var stored: (kind: String, value: String) {
        switch self {
        case .user(let name): ("user", name)
        case .ringGroup(let name): ("ring-group", name)
        case .uri(let uri): ("uri", uri)
        case .reject(let status): ("reject", String(status))
        }
    }

    init?(stored kind: String, value: String) {
        switch kind {
        case "user": self = .user(value)
        case "ring-group": self = .ringGroup(value)
        case "uri": self = .uri(value)
        // A refusal is a final non-2xx status (as `ForwardingRule+Text` writes it), whatever the file says.
        case "reject": guard let status = Int(value), (400...699).contains(status) else { return nil }; self = .reject(status)
        default: return nil
        }
    }
}

extension ForwardingRule.Day {
    /// `2026-12-24`.
    public var text: String {
        String(format: "%04d-%02d-%02d", year, month, day)
    }

    public init?(text: String?) {
        guard let parts = text?.split(separator: "-").compactMap({ Int($0) }), parts.count == 3,
            (1...12).contains(parts[1]), (1...31).contains(parts[2])
        else { return nil }
        self.init(year: parts[0], month: parts[1], day: parts[2])
    }
}
