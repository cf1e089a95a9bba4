@testable import CloudCore
import Foundation
import PeerTestSupport
import SIP
import Testing

/// Who may call what (issue 17, docs/CLOUD-CORE.md "Call policy"): callers reach their own
/// company only; a site narrows who reaches its channels; a refusal sounds like an unknown name.
@Suite("Core: call policy", .serialized)
struct CallPolicyTests {
    /// acme (lobby: alice, bob, gw1; garage: dave) and globex (mallory, gw9).
    static func twoCompanies(_ directory: Directory) throws {
        try directory.createSite("garage", company: "acme", project: "hq")
        try directory.createUser("dave", site: "garage", password: "dave-pw")
        try directory.createCompany("globex")
        try directory.createProject("main", company: "globex")
        try directory.createSite("tower", company: "globex", project: "main")
        try directory.createUser("mallory", site: "tower", password: "mallory-pw")
        try directory.createDevice("gw9", site: "tower", channels: 2)
    }

    @Test("The policy decides by company, then by the channel site's policy: company, site or grants")
    func permissionsFollowCompanySiteAndGrants() throws {
        let directory = try DirectoryTests.demo()
        try Self.twoCompanies(directory)
        let channel = Callable.channel(device: "gw1", number: 2), alice = Callable.user(name: "alice")
        #expect(directory.permission(for: .user("bob"), toCall: channel) == .allowed)
        #expect(directory.permission(for: .user("dave"), toCall: channel) == .allowed, "the default policy: the whole company")
        #expect(directory.permission(for: .user("mallory"), toCall: channel) != .allowed)
        #expect(directory.permission(for: .user("mallory"), toCall: alice) != .allowed, "users too answer their company only")
        #expect(directory.permission(for: .device("gw9"), toCall: alice) != .allowed, "and devices")
        #expect(directory.permission(for: .user("nobody"), toCall: alice) != .allowed)

        try directory.setChannelPolicy(.site, site: "lobby")
        #expect(directory.permission(for: .user("bob"), toCall: channel) == .allowed)
        #expect(directory.permission(for: .user("dave"), toCall: channel) != .allowed, "another site of the company")
        #expect(directory.permission(for: .user("dave"), toCall: alice) == .allowed, "users of the site are still reachable")

        try directory.setChannelPolicy(.grants, site: "lobby")
        #expect(directory.permission(for: .user("bob"), toCall: channel) != .allowed, "grants: nothing without one")
        try directory.grant(site: "lobby", caller: "bob", channel: "gw1-ch2")
        try directory.grant(site: "lobby", caller: "dave", channel: "gw1")
        #expect(directory.permission(for: .user("bob"), toCall: channel) == .allowed)
        #expect(directory.permission(for: .user("bob"), toCall: .channel(device: "gw1", number: 3)) != .allowed, "a grant names one channel")
        #expect(directory.permission(for: .user("dave"), toCall: .channel(device: "gw1", number: 4)) == .allowed, "or all of a device")
        #expect(throws: DirectoryError.self) { try directory.grant(site: "lobby", caller: "mallory", channel: "gw1-ch1") }
        #expect(throws: DirectoryError.self) { try directory.grant(site: "lobby", caller: "bob", channel: "gw9-ch1") }
        #expect(throws: DirectoryError.self) { try directory.grant(site: "lobby", caller: "bob", channel: "gw1-ch9") }
        try directory.revoke(site: "lobby", caller: "bob", channel: "gw1-ch2")
        #expect(directory.permission(for: .user("bob"), toCall: channel) != .allowed)
        #expect(try directory.grants(site: "lobby").map { "\($0.caller):\($0.channel)" } == ["dave:gw1"])

        // A ring group rings only the channels it may reach itself.
        try directory.createRingGroup("doors", site: "lobby", members: ["alice", "gw1-ch1", "gw1-ch2"])
        let resolver = CallTargetResolver(directory: directory, userRingSeconds: 30)
        #expect(try resolver.plan(for: "doors", caller: .user("bob"), at: Date()) == .ring(aors: ["alice"], ringSeconds: 30, target: "ring-group:doors"))
        try directory.grant(site: "lobby", caller: "doors", channel: "gw1-ch2")
        #expect(try resolver.plan(for: "doors", caller: .user("bob"), at: Date()) == .ring(aors: ["alice", "gw1-ch2"], ringSeconds: 30, target: "ring-group:doors"))
        guard case .refuse? = try? resolver.plan(for: "doors", caller: .user("mallory"), at: Date()) else {
            Issue.record("mallory may not call acme's ring group")
            return
        }

        // Ring groups and forwarding stay within the company.
        #expect(throws: DirectoryError.self) { try directory.createRingGroup("mixed", site: "lobby", members: ["alice", "mallory"]) }
        #expect(throws: DirectoryError.self) { try directory.createRingGroup("theirs", site: "lobby", members: ["gw9-ch1"]) }
        #expect(throws: DirectoryError.self) { try directory.setForwardingRules([try ForwardingRule(text: "tz=UTC target=user:mallory")], user: "alice") }
        try directory.setForwardingRules([try ForwardingRule(text: "tz=UTC target=user:dave")], user: "alice")

        // A forwarding target checked again when the call comes: dave deleted and his name made
        // again in another company is no way out.
        try directory.delete(.user, name: "dave")
        try directory.createUser("dave", site: "tower", password: nil)
        #expect(try resolver.plan(for: "alice", caller: .user("bob"), at: Date()) == .reject(
            status: 480, reason: "Temporarily Unavailable", target: "user:alice→user:dave (not reachable)"))

        // Under `site`, a ring group of the site rings its channels only for callers of the site.
        try directory.setChannelPolicy(.site, site: "lobby")
        try directory.createUser("erin", site: "garage", password: nil)
        #expect(try resolver.plan(for: "doors", caller: .user("bob"), at: Date()) == .ring(aors: ["alice", "gw1-ch1", "gw1-ch2"], ringSeconds: 30, target: "ring-group:doors"))
        #expect(try resolver.plan(for: "doors", caller: .user("erin"), at: Date()) == .ring(aors: ["alice"], ringSeconds: 30, target: "ring-group:doors"))

        // Company, project and site names go into certificates: checked.
        for bad in ["", String(repeating: "x", count: 65), "line\nbreak"] {
            #expect(throws: DirectoryError.self) { try directory.createCompany(bad) }
        }
    }

    @Test("The seed file sets a site's channel policy and its grants; a wrong policy is named by file:line")
    func seedSetsPolicyAndGrants() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("seed.toml", """
            [[company]]
            name = "acme"
            [[project]]
            company = "acme"
            name = "hq"
            [[site]]
            company = "acme"
            project = "hq"
            name = "lobby"
            channel_policy = "grants"
            [[user]]
            name = "alice"
            site = "lobby"
            [[device]]
            name = "gw1"
            site = "lobby"
            channels = 2
            [[grant]]
            site = "lobby"
            caller = "alice"
            channels = ["gw1-ch1"]
            """)
        let directory = try Directory(path: nil, realm: "r")
        #expect(try DirectorySeed.load(file: scratch.path("seed.toml"), into: directory).loaded)
        #expect(try directory.channelPolicy(site: "lobby") == .grants)
        #expect(directory.permission(for: .user("alice"), toCall: .channel(device: "gw1", number: 1)) == .allowed)
        #expect(directory.permission(for: .user("alice"), toCall: .channel(device: "gw1", number: 2)) != .allowed)

        try scratch.write("bad.toml", """
            [[company]]
            name = "acme"
            [[project]]
            company = "acme"
            name = "hq"
            [[site]]
            company = "acme"
            project = "hq"
            name = "lobby"
            channel_policy = "everyone"
            """)
        #expect {
            try DirectorySeed.load(file: scratch.path("bad.toml"), into: try Directory(path: nil, realm: "r"))
        } throws: { error in
            "\(error)".contains("bad.toml:10:") && "\(error)".contains("channel_policy")
        }
    }

    @Test("Over UDP: another company's user gets exactly what an unknown name gets (404) for a channel, a user and a ring group; the reason is logged, nothing rings")
    func anotherCompanyHearsWhatAnUnknownNameGets() async throws {
        let core = try await CoreHarness.start(before: Self.twoCompanies)
        let alice = try HandPhone("alice", core: core)
        #expect(try await alice.register() == 200)
        let mallory = try HandPhone("mallory", core: core), bob = try HandPhone("bob", core: core)

        func answer(_ phone: HandPhone, calling name: String) async throws -> (Int, String) {
            let invite = try phone.request(.invite, to: "sip:\(name)@symphony.local", toUser: name, headers: [(.proxyAuthorization, "Bearer \(phone.token)")])
            phone.send(invite)
            let response = try await phone.response(to: invite)
            guard case .response(let line) = response.startLine else { return (0, "") }
            return (line.statusCode, line.reasonPhrase)
        }
        let unknown = try await answer(mallory, calling: "nosuch")
        #expect(unknown.0 == 404)
        for name in ["gw1-ch3", "alice", "desk"] {
            let refused = try await answer(mallory, calling: name)
            #expect(refused == unknown, "mallory → \(name): \(refused), an unknown name: \(unknown)")
        }
        #expect(try await alice.next(timeout: .milliseconds(500), { $0.method == .invite }) == nil, "alice never rang")
        #expect(try await answer(bob, calling: "gw1-ch3").0 == 480, "a caller of the company gets past the policy (nobody registered)")
        #expect(await core.server.proxy.statistics.forbidden >= 3)
        let records = try await core.records(atLeast: 5)
        #expect(records.filter { $0.reason?.hasPrefix("call policy:") == true }.count == 3, "\(records.map { $0.reason ?? "" })")
        await core.stop()
    }
}
