import ArgumentParser
import CloudCore
import Crypto
import Foundation

/// `symphony-cloud-core admin …`: the directory, tokens, claiming codes and call history, on
/// the same SQLite file the running core uses (WAL: the core keeps serving meanwhile).
struct AdminCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin", abstract: "Manage the directory, issue tokens and claiming codes, export call history.",
        subcommands: [Create.self, List.self, Delete.self, Rules.self, Policy.self, Token.self, ClaimCode.self, History.self, Purge.self, Seed.self, Backup.self, Restore.self])

    struct Options: ParsableArguments {
        @Option(help: "The configuration file (for the state directory, realm and token settings).")
        var config = defaultConfigFile

        func open() throws -> (CloudCoreConfiguration, Directory) {
            let configuration = try loadConfiguration(config)
            return (configuration, try Directory(path: configuration.directoryFile, realm: configuration.realm))
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a company, project, site, user, device or ring-group.")

        @OptionGroup var options: Options
        @Argument(help: "company | project | site | user | device | ring-group") var kind: String
        @Argument(help: "Its name.") var name: String
        @Option(help: "Company (project, site).") var company: String?
        @Option(help: "Project (site).") var project: String?
        @Option(help: "Site (user, device, ring-group).") var site: String?
        @Option(help: "IANA time zone (site).") var timeZone = "UTC"
        @Option(help: "File holding the user's SIP digest password (user; without one the user signs in by token only).") var passwordFile: String?
        @Option(help: "Display name (user).") var displayName: String?
        @Option(help: "Number of channels, 1–14 (device).") var channels = 14
        @Option(help: "A member: user or channel name (ring-group; repeat).") var member: [String] = []
        @Option(help: "Ring time in seconds (ring-group).") var ringSeconds = 30

        func run() throws {
            let (_, directory) = try options.open()
            func need(_ value: String?, _ option: String) throws -> String {
                guard let value else { throw ValidationError("\(kind) needs --\(option)") }
                return value
            }
            do {
                switch kind {
                case "company": try directory.createCompany(name)
                case "project": try directory.createProject(name, company: try need(company, "company"))
                case "site": try directory.createSite(name, company: try need(company, "company"), project: try need(project, "project"), timeZone: timeZone)
                case "user":
                    let password = try passwordFile.map { try String(contentsOfFile: $0, encoding: .utf8).trimmingCharacters(in: .newlines) }
                    try directory.createUser(name, site: try need(site, "site"), password: password, displayName: displayName)
                case "device": try directory.createDevice(name, site: try need(site, "site"), channels: channels)
                case "ring-group": try directory.createRingGroup(name, site: try need(site, "site"), members: member, ringSeconds: ringSeconds)
                default: throw ValidationError("unknown kind \(kind): company, project, site, user, device or ring-group")
                }
            } catch let error as DirectoryError {
                throw ValidationError(error.message)
            }
            print("created \(kind) \(name)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List companies, projects, sites, users, devices or ring groups.")

        @OptionGroup var options: Options
        @Argument(help: "company | project | site | user | device | ring-group") var kind: String

        func run() throws {
            guard let kind = Directory.Kind(rawValue: kind) else { throw ValidationError("unknown kind \(self.kind)") }
            let (_, directory) = try options.open()
            for row in try directory.list(kind) { print(row.joined(separator: "\t")) }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an entry and everything it owns (a project is company/project).")

        @OptionGroup var options: Options
        @Argument var kind: String
        @Argument var name: String

        func run() throws {
            guard let kind = Directory.Kind(rawValue: kind) else { throw ValidationError("unknown kind \(self.kind)") }
            let (_, directory) = try options.open()
            do { try directory.delete(kind, name: name) } catch let error as DirectoryError { throw ValidationError(error.message) }
            print("deleted \(kind.rawValue) \(name)")
        }
    }

    struct Rules: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rules",
            abstract: "Set a user's forwarding rules (replacing the old ones; none clears them), or show them.",
            discussion: "A rule: \"weekdays=1-5 time=08:00-18:00 dates=2026-12-24..2026-12-26 tz=Europe/Berlin target=user:bob\"; target is user:NAME, ring-group:NAME, uri:SIP-URI or reject:STATUS.")

        @OptionGroup var options: Options
        @Argument var user: String
        @Option(name: .customLong("rule"), help: "A rule (repeat, in order; at most 20).") var rules: [String] = []
        @Flag(help: "Show the rules instead.") var show = false

        func run() throws {
            let (_, directory) = try options.open()
            if show {
                for rule in try directory.forwardingRules(user: user) { print(rule) }
                return
            }
            do {
                try directory.setForwardingRules(try rules.map { try ForwardingRule(text: $0) }, user: user)
            } catch let error as ForwardingRule.TextError {
                throw ValidationError(error.message)
            } catch let error as DirectoryError {
                throw ValidationError(error.message)
            }
            print("\(rules.count) rule(s) set for \(user)")
        }
    }

    /// The call policy of a site's channels (docs/CLOUD-CORE.md "Call policy").
    struct Policy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or set who may call a site's channels.",
            discussion: """
                Users, ring groups and channels answer callers of their own company only. A site's channel policy narrows \
                who reaches its channels: company (default), site (its own users and devices) or grants (only what is \
                granted). Examples: `policy lobby --set grants --grant alice:gw1-ch3 --grant concierge:gw1` \
                (a grant is CALLER:CHANNEL, the channel one `gw1-ch3` or all of a device `gw1`), `policy lobby --revoke alice:gw1-ch3`.
                """)

        @OptionGroup var options: Options
        @Argument(help: "The site.") var site: String
        @Option(help: "company | site | grants") var set: String?
        @Option(help: "CALLER:CHANNEL to allow (repeat).") var grant: [String] = []
        @Option(help: "CALLER:CHANNEL to withdraw (repeat).") var revoke: [String] = []

        func run() throws {
            let (_, directory) = try options.open()
            func pair(_ text: String) throws -> (String, String) {
                let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { throw ValidationError("\(text): CALLER:CHANNEL") }
                return (parts[0], parts[1])
            }
            do {
                if let set {
                    guard let policy = Directory.ChannelPolicy(rawValue: set) else { throw ValidationError("--set \(set): company, site or grants") }
                    try directory.setChannelPolicy(policy, site: site)
                }
                for text in grant {
                    let (caller, channel) = try pair(text)
                    try directory.grant(site: site, caller: caller, channel: channel)
                }
                for text in revoke {
                    let (caller, channel) = try pair(text)
                    try directory.revoke(site: site, caller: caller, channel: channel)
                }
                print("channels: \(try directory.channelPolicy(site: site).rawValue)")
                for (caller, channel) in try directory.grants(site: site) { print("grant\t\(caller)\t\(channel)") }
            } catch let error as DirectoryError {
                throw ValidationError(error.message)
            }
        }
    }

    struct Token: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Issue a client token (JWT, ES256) for a user.")

        @OptionGroup var options: Options
        @Argument var user: String
        @Option(help: "Lifetime in seconds (default: the config's tokens.lifetime_s).") var lifetime: Int?

        func run() throws {
            let (configuration, directory) = try options.open()
            guard directory.userExists(user) else { throw ValidationError("no user \(user)") }
            guard let pem = try? String(contentsOfFile: configuration.resolvedTokenKeyFile, encoding: .utf8),
                let key = try? P256.Signing.PrivateKey(pemRepresentation: pem)
            else { throw ValidationError("no token key at \(configuration.resolvedTokenKeyFile) (the core creates it on its first run)") }
            let now = Int(Date().timeIntervalSince1970)
            let claims = ClientTokenClaims(
                subject: user, audience: configuration.tokenAudience, issuedAt: now, expiresAt: now + (lifetime ?? configuration.tokenLifetimeSeconds),
                tokenID: UUID().uuidString)
            print(try ClientTokenSigner(key: key).token(for: claims))
        }
    }

    struct ClaimCode: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "claim-code", abstract: "Create a one-time claiming code for a device.")

        @OptionGroup var options: Options
        @Argument var device: String
        @Option(help: "Lifetime in seconds (default: the config's claiming.code_lifetime_s).") var lifetime: Int?

        func run() throws {
            let (configuration, directory) = try options.open()
            do {
                print(try directory.createClaimingCode(device: device, lifetime: TimeInterval(lifetime ?? configuration.claimingCodeLifetimeSeconds)))
            } catch let error as DirectoryError {
                throw ValidationError(error.message)
            }
        }
    }

    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Export the call history as CSV.")

        @OptionGroup var options: Options
        @Option(help: "Write to this file instead of standard output.") var output: String?

        func run() throws {
            let (_, directory) = try options.open()
            let csv = try directory.callHistoryCSV()
            if let output { try csv.write(toFile: output, atomically: true, encoding: .utf8) } else { print(csv, terminator: "") }
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete call records older than the retention period now.")

        @OptionGroup var options: Options

        func run() throws {
            let (configuration, directory) = try options.open()
            let removed = try directory.purgeCallRecords(startedBefore: Date().addingTimeInterval(-Double(configuration.retentionDays) * 86400))
            print("\(removed) call record(s) older than \(configuration.retentionDays) days deleted")
        }
    }

    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the directory and the core's keys into FILE (safe while the core runs; FILE is written 0600).")

        @OptionGroup var options: Options
        @Argument(help: "The backup file to write (replaced if it exists).") var file: String

        func run() throws {
            let (configuration, directory) = try options.open()
            do {
                let summary = try DirectoryBackup.backup(directory, configuration: configuration, to: file)
                print("backup written to \(file): \(summary)")
            } catch {
                FileHandle.standardError.write(Data("backup failed: \(error)\n".utf8))
                throw ExitCode(74)  // EX_IOERR
            }
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace the directory (and keys) with a backup's; the core must be stopped. The old directory is kept beside.")

        @Option(help: "The configuration file (for the state directory).") var config = defaultConfigFile
        @Argument(help: "The backup file made by `admin backup`.") var file: String

        func run() throws {
            let configuration = try loadConfiguration(config)
            do {
                let summary = try DirectoryBackup.restore(file, configuration: configuration)
                print("restored \(configuration.directoryFile) from \(file): \(summary)")
            } catch {
                FileHandle.standardError.write(Data("restore refused: \(error)\n".utf8))
                throw ExitCode(65)  // EX_DATAERR
            }
        }
    }

    struct Seed: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Load a seed TOML file into an empty directory.")

        @OptionGroup var options: Options
        @Argument var file: String

        func run() throws {
            let (_, directory) = try options.open()
            let summary = try DirectorySeed.load(file: file, into: directory)
            print(summary.loaded ? "\(summary.entries) entries loaded" : "directory not empty: nothing loaded")
        }
    }
}
