import Foundation
import TOMLConfig

/// A demo directory from a TOML file (`etc/cloud-core-seed.toml`): arrays of tables `company`,
/// `project`, `site` (with its `channel_policy`), `user`, `device`, `ring_group`, `rule` and
/// `grant` (who may call a channel of a site whose policy is `grants`), checked like a config file
/// (file:line:column, unknown keys). Loaded into an empty directory only: a seed never
/// overwrites what an admin changed.
public enum DirectorySeed {
    public struct Summary: Sendable, Equatable {
        public var loaded: Bool
        public var entries: Int
    }

    public static func load(file: String, into directory: Directory) throws -> Summary {
        let document = try ConfigDocument(contentsOfFile: file)
        let root = document.root!
        var steps: [(ConfigTable, String, () throws -> Void)] = []
        for t in root.tables("company") {
            let name = t.string("name", required: true)
            t.finish()
            steps.append((t, "name", { try directory.createCompany(name ?? "") }))
        }
        for t in root.tables("project") {
            let name = t.string("name", required: true), company = t.string("company", required: true)
            t.finish()
            steps.append((t, "name", { try directory.createProject(name ?? "", company: company ?? "") }))
        }
        for t in root.tables("site") {
            let name = t.string("name", required: true), company = t.string("company", required: true)
            let project = t.string("project", required: true), zone = t.string("time_zone") ?? "UTC"
            var policy = Directory.ChannelPolicy.company
            if let text = t.string("channel_policy") {
                if let parsed = Directory.ChannelPolicy(rawValue: text) { policy = parsed } else { t.reject("channel_policy", "company, site or grants") }
            }
            t.finish()
            steps.append((t, "name", {
                try directory.createSite(name ?? "", company: company ?? "", project: project ?? "", timeZone: zone)
                if policy != .company { try directory.setChannelPolicy(policy, site: name ?? "") }
            }))
        }
        for t in root.tables("user") {
            let name = t.string("name", required: true), site = t.string("site", required: true)
            let password = t.string("password"), display = t.string("display_name")
            t.finish()
            steps.append((t, "name", { try directory.createUser(name ?? "", site: site ?? "", password: password, displayName: display) }))
        }
        for t in root.tables("device") {
            let name = t.string("name", required: true), site = t.string("site", required: true)
            let channels = t.int("channels", in: 1...14) ?? 14
            t.finish()
            steps.append((t, "name", { try directory.createDevice(name ?? "", site: site ?? "", channels: channels) }))
        }
        for t in root.tables("ring_group") {
            let name = t.string("name", required: true), site = t.string("site", required: true)
            let members = t.stringArray("members", required: true) ?? [], seconds = t.int("ring_s", in: 5...300) ?? 30
            t.finish()
            steps.append((t, "members", { try directory.createRingGroup(name ?? "", site: site ?? "", members: members, ringSeconds: seconds) }))
        }
        for t in root.tables("grant") {
            let site = t.string("site", required: true), caller = t.string("caller", required: true)
            let channels = t.stringArray("channels", required: true) ?? []
            t.finish()
            steps.append((t, "channels", { for channel in channels { try directory.grant(site: site ?? "", caller: caller ?? "", channel: channel) } }))
        }
        var rules: [String: [ForwardingRule]] = [:]
        var ruleTables: [String: ConfigTable] = [:]
        for t in root.tables("rule") {
            let user = t.string("user", required: true) ?? ""
            if let text = t.string("rule", required: true) {
                do { rules[user, default: []].append(try ForwardingRule(text: text)) } catch { t.reject("rule", error.description) }
            }
            ruleTables[user] = t
            t.finish()
        }
        root.finish()
        try document.validate()
        guard try directory.list(.company).isEmpty else { return Summary(loaded: false, entries: 0) }
        // Directory refusals (a site naming a missing project, a duplicate name) point at the entry.
        for (table, key, step) in steps {
            do { try step() } catch { table.reject(key, "\(error)") }
        }
        for (user, list) in rules.sorted(by: { $0.key < $1.key }) {
            do { try directory.setForwardingRules(list, user: user) } catch { ruleTables[user]?.reject("user", "\(error)") }
        }
        try document.validate()
        return Summary(loaded: true, entries: steps.count + rules.values.reduce(0) { $0 + $1.count })
    }
}
