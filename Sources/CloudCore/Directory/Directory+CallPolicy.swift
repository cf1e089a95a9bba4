import GRDB

/// Who may call what (docs/CLOUD-CORE.md "Call policy"). Authentication says who a caller is;
/// this says what it may reach:
///
/// - users, ring groups and channels answer callers of their own company only;
/// - a site narrows who reaches its channels (its doors and lifts) with its channel policy:
///   `company` (the default: any user or device of the company), `site` (users and devices of
///   the site itself) or `grants` (only the callers an admin granted, channel by channel);
/// - a ring group is a caller in its own right toward the channels among its members: a site
///   with `grants` lets a ring group ring a channel only when it holds a grant for it.
///
/// Refusals are decided here with a reason for the log; the proxy answers them exactly as it
/// answers a name that does not exist (404), so that nobody outside a company can learn which
/// names it has.
extension Directory {
    /// A party that places (or, for a ring group, fans out) a call.
    public enum Party: Sendable, Hashable, CustomStringConvertible {
        case user(String)
        case device(String)
        case ringGroup(String)

        public init(_ principal: Principal) {
            switch principal {
            case .user(let name): self = .user(name)
            case .device(let name): self = .device(name)
            }
        }

        public var name: String {
            switch self {
            case .user(let name), .device(let name), .ringGroup(let name): name
            }
        }

        public var description: String {
            switch self {
            case .user(let name): "user:\(name)"
            case .device(let name): "device:\(name)"
            case .ringGroup(let name): "ring-group:\(name)"
            }
        }
    }

    /// How a site lets callers reach its channels.
    public enum ChannelPolicy: String, Sendable, CaseIterable {
        case company, site, grants
    }

    public enum CallPermission: Sendable, Equatable {
        case allowed
        /// For the log only: the caller hears what an unknown name gets.
        case refused(reason: String)
    }

    /// Where a party or callable lives: its site and that site's company.
    struct Place: Sendable, Equatable {
        var site: Int64
        var company: Int64
        var channelPolicy: ChannelPolicy
    }

    /// May `caller` reach `target`? Cached like the other call-path lookups (2 s).
    public func permission(for caller: Party, toCall target: Callable) -> CallPermission {
        let key: String
        switch target {
        case .user(let name): key = "\(caller)>u:\(name)"
        case .ringGroup(let name, _, _): key = "\(caller)>g:\(name)"
        case .channel(let device, let number): key = "\(caller)>c:\(Self.channelName(device: device, number: number))"
        }
        return permissions.value(key) {
            do { return try loadPermission(for: caller, toCall: target) } catch { return .refused(reason: "directory lookup failed: \(error)") }
        }
    }

    private func loadPermission(for caller: Party, toCall target: Callable) throws -> CallPermission {
        try database.read { db in
            guard let from = try Self.place(of: caller, db) else { return .refused(reason: "\(caller) is not in the directory") }
            let targetParty: Party
            switch target {
            case .user(let name): targetParty = .user(name)
            case .ringGroup(let name, _, _): targetParty = .ringGroup(name)
            case .channel(let device, _): targetParty = .device(device)
            }
            guard let to = try Self.place(of: targetParty, db) else { return .refused(reason: "\(targetParty) is not in the directory") }
            guard from.company == to.company else { return .refused(reason: "\(caller) belongs to another company") }
            guard case .channel(let device, let number) = target else { return .allowed }
            switch to.channelPolicy {
            case .company:
                return .allowed
            case .site:
                return from.site == to.site ? .allowed : .refused(reason: "the channels of this site answer callers of the site only")
            case .grants:
                let granted = try Bool.fetchOne(db, sql: """
                    SELECT 1 FROM channelGrant WHERE siteId = ? AND caller = ? AND channel IN (?, ?)
                    """, arguments: [to.site, caller.name, Self.channelName(device: device, number: number), device]) != nil
                return granted ? .allowed : .refused(reason: "no grant for \(caller) on \(Self.channelName(device: device, number: number))")
            }
        }
    }

    static func place(of party: Party, _ db: Database) throws -> Place? {
        let table: String
        switch party {
        case .user: table = "user"
        case .device: table = "device"
        case .ringGroup: table = "ringGroup"
        }
        guard let row = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT site.id AS site, project.companyId AS company, site.channelPolicy AS policy
            FROM \(table) JOIN site ON site.id = \(table).siteId JOIN project ON project.id = site.projectId
            WHERE \(table).name = ?
            """), arguments: [party.name])
        else { return nil }
        // A policy the file spells otherwise is read as the narrowest.
        let policy = ChannelPolicy(rawValue: (try? row.decode(String.self, forColumn: "policy")) ?? "") ?? .grants
        return Place(site: try row.decode(Int64.self, forColumn: "site"), company: try row.decode(Int64.self, forColumn: "company"), channelPolicy: policy)
    }

    // MARK: Admin

    public func setChannelPolicy(_ policy: ChannelPolicy, site: String) throws {
        defer { changed() }
        let changes = try database.write { db -> Int in
            try db.execute(sql: "UPDATE site SET channelPolicy = ? WHERE name = ?", arguments: [policy.rawValue, site])
            return db.changesCount
        }
        guard changes > 0 else { throw DirectoryError("no site \(site)") }
    }

    public func channelPolicy(site: String) throws -> ChannelPolicy {
        guard let text = try database.read({ db in try String.fetchOne(db, sql: "SELECT channelPolicy FROM site WHERE name = ?", arguments: [site]) }) else {
            throw DirectoryError("no site \(site)")
        }
        return ChannelPolicy(rawValue: text) ?? .grants
    }

    /// The channel policy of the site `device` belongs to (nil: no such device).
    public func channelPolicy(ofDevice device: String) throws -> ChannelPolicy? {
        try database.read { db in try Self.place(of: .device(device), db)?.channelPolicy }
    }

    /// Lets `caller` (a user, ring group or device of the site's company) reach `channel` (one
    /// channel `gw1-ch3`, or all channels of a device `gw1`) of `site`.
    public func grant(site: String, caller: String, channel: String) throws {
        defer { changed() }
        try database.write { db in
            let siteRow = try Row.fetchOne(db, sql: """
                SELECT site.id AS id, project.companyId AS company FROM site JOIN project ON project.id = site.projectId WHERE site.name = ?
                """, arguments: [site])
            guard let siteRow else { throw DirectoryError("no site \(site)") }
            let siteID: Int64 = try siteRow.decode(Int64.self, forColumn: "id"), company: Int64 = try siteRow.decode(Int64.self, forColumn: "company")
            var callerPlace: Place?
            for party in [Party.user(caller), .ringGroup(caller), .device(caller)] where callerPlace == nil {
                callerPlace = try Self.place(of: party, db)
            }
            guard let callerPlace else { throw DirectoryError("caller \(caller) is not a user, ring group or device") }
            guard callerPlace.company == company else { throw DirectoryError("caller \(caller) belongs to another company than site \(site)") }
            let device = Self.channelParts(channel)?.device ?? channel
            let onSite = try Bool.fetchOne(db, sql: """
                SELECT 1 FROM device WHERE name = ? AND siteId = ?
                  AND (? IS NULL OR EXISTS (SELECT 1 FROM channel WHERE channel.deviceId = device.id AND channel.number = ?))
                """, arguments: [device, siteID, Self.channelParts(channel)?.number, Self.channelParts(channel)?.number]) != nil
            guard onSite else { throw DirectoryError("\(channel) is not a channel or device of site \(site)") }
            // One spelling per channel (`gw1-ch3`, never `gw1-ch03`: `channelParts` refuses those).
            try db.execute(sql: "INSERT OR IGNORE INTO channelGrant (siteId, caller, channel) VALUES (?, ?, ?)", arguments: [siteID, caller, channel])
        }
    }

    public func revoke(site: String, caller: String, channel: String) throws {
        defer { changed() }
        let changes = try database.write { db -> Int in
            try db.execute(sql: """
                DELETE FROM channelGrant WHERE siteId = (SELECT id FROM site WHERE name = ?) AND caller = ? AND channel = ?
                """, arguments: [site, caller, channel])
            return db.changesCount
        }
        guard changes > 0 else { throw DirectoryError("no grant of \(channel) to \(caller) at site \(site)") }
    }

    /// (caller, channel) pairs of a site, for `admin policy show`.
    public func grants(site: String) throws -> [(caller: String, channel: String)] {
        try database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT caller, channel FROM channelGrant JOIN site ON site.id = channelGrant.siteId WHERE site.name = ? ORDER BY 1, 2
                """, arguments: [site]).map { (try $0.decode(String.self, forColumn: "caller"), try $0.decode(String.self, forColumn: "channel")) }
        }
    }

    /// Whether `member` may be put in a ring group of `site` (or be a forwarding target of a user
    /// there): it must belong to the same company.
    func sameCompany(_ party: Party, asSite site: String) throws -> Bool {
        try database.read { db in
            guard let place = try Self.place(of: party, db) else { return false }
            let company = try Int64.fetchOne(db, sql: """
                SELECT project.companyId FROM site JOIN project ON project.id = site.projectId WHERE site.name = ?
                """, arguments: [site])
            return company == place.company
        }
    }
}
