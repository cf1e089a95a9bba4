@testable import CloudCore
import Foundation
import PeerTestSupport
import SIP
import Testing

/// The directory in SQLite: hierarchy, one callable namespace, ring groups, forwarding rules,
/// claiming codes, call history with its retention purge, the seed file.
@Suite("Directory")
struct DirectoryTests {
    static func demo() throws -> Directory {
        let directory = try Directory(path: nil, realm: "symphony")
        try directory.createCompany("acme")
        try directory.createProject("hq", company: "acme")
        try directory.createSite("lobby", company: "acme", project: "hq", timeZone: "Europe/Berlin")
        try directory.createUser("alice", site: "lobby", password: "secret")
        try directory.createUser("bob", site: "lobby", password: nil)
        try directory.createDevice("gw1", site: "lobby", channels: 4)
        return directory
    }

    @Test func namesResolveToWhatTheyCall() throws {
        let directory = try Self.demo()
        try directory.createRingGroup("door", site: "lobby", members: ["alice", "gw1-ch2"], ringSeconds: 20)
        #expect(try directory.callable(named: "alice") == .user(name: "alice"))
        #expect(try directory.callable(named: "gw1-ch2") == .channel(device: "gw1", number: 2))
        #expect(try directory.callable(named: "gw1-ch5") == nil, "gw1 has 4 channels")
        #expect(try directory.callable(named: "door") == .ringGroup(name: "door", members: ["alice", "gw1-ch2"], ringSeconds: 20))
        #expect(try directory.callable(named: "nobody") == nil)
    }

    @Test func namesAreOneNamespaceAndChecked() throws {
        let directory = try Self.demo()
        #expect(throws: DirectoryError.self) { try directory.createRingGroup("alice", site: "lobby", members: []) }
        #expect(throws: DirectoryError.self) { try directory.createUser("gw1", site: "lobby", password: nil) }
        #expect(throws: DirectoryError.self) { try directory.createUser("x-ch3", site: "lobby", password: nil) }
        #expect(throws: DirectoryError.self) { try directory.createUser("bad name", site: "lobby", password: nil) }
        #expect(throws: DirectoryError.self) { try directory.createUser("carol", site: "nowhere", password: nil) }
        #expect(throws: DirectoryError.self) { try directory.createRingGroup("g", site: "lobby", members: ["nobody"]) }
        #expect(throws: DirectoryError.self) { try directory.createSite("s2", company: "acme", project: "hq", timeZone: "Mars/Olympus") }
        #expect(throws: DirectoryError.self) { try directory.createDevice("gw2", site: "lobby", channels: 15) }
    }

    @Test func passwordsAreStoredAsHA1Only() throws {
        let directory = try Self.demo()
        #expect(directory.ha1(user: "alice", algorithm: .md5) == DigestServer.ha1(.md5, username: "alice", realm: "symphony", password: "secret"))
        #expect(directory.ha1(user: "alice", algorithm: .sha256Session) == DigestServer.ha1(.sha256, username: "alice", realm: "symphony", password: "secret"))
        #expect(directory.ha1(user: "bob", algorithm: .md5) == nil)
        let dump = try directory.database.read { db in try String.fetchAll(db, sql: "SELECT coalesce(ha1Md5,'') || coalesce(ha1Sha256,'') FROM user") }
        #expect(!dump.joined().contains("secret"))
    }

    @Test func deletingASiteTakesWhatItOwns() throws {
        let directory = try Self.demo()
        try directory.delete(.site, name: "lobby")
        #expect(try directory.callable(named: "alice") == nil)
        #expect(try directory.callable(named: "gw1-ch1") == nil)
        #expect(throws: DirectoryError.self) { try directory.delete(.user, name: "alice") }
        #expect(try directory.list(.project) == [["acme", "hq"]])
    }

    @Test func forwardingRulesRoundTripAndAreLimitedTo20() throws {
        let directory = try Self.demo()
        let rule = try ForwardingRule(text: "weekdays=1-5 time=18:00-08:00 dates=2026-12-24..2026-12-26 tz=Europe/Berlin target=user:bob")
        try directory.setForwardingRules([rule, try ForwardingRule(text: "tz=UTC target=reject:486")], user: "alice")
        #expect(try directory.forwardingRules(user: "alice") == [rule, try ForwardingRule(text: "tz=UTC target=reject:486")])
        #expect(throws: DirectoryError.self) { try directory.setForwardingRules(Array(repeating: rule, count: 21), user: "alice") }
        #expect(throws: DirectoryError.self) { try directory.setForwardingRules([try ForwardingRule(text: "tz=UTC target=user:nobody")], user: "alice") }
        #expect(throws: ForwardingRule.TextError.self) { try ForwardingRule(text: "weekdays=0-5 tz=UTC target=user:bob") }
        #expect(throws: ForwardingRule.TextError.self) { try ForwardingRule(text: "tz=UTC target=reject:200") }
        #expect(throws: ForwardingRule.TextError.self) { try ForwardingRule(text: "tz=Nowhere/City target=user:bob") }
    }

    /// The location stage applies the callee's rules at the moment of the call, in the rule's zone.
    @Test func forwardingAppliesInTheRulesZoneAcrossTheDSTChange() throws {
        let directory = try Self.demo()
        try directory.createRingGroup("night", site: "lobby", members: ["bob"])
        try directory.setForwardingRules([try ForwardingRule(text: "time=18:00-08:00 tz=Europe/Berlin target=ring-group:night")], user: "alice")
        let resolver = CallTargetResolver(directory: directory, userRingSeconds: 30)
        // 2026-10-24 is CEST (UTC+2), 2026-10-26 is CET (UTC+1): 17:30 UTC is 19:30 then 18:30 local.
        let saturdayEvening = Date(timeIntervalSince1970: 1_792_863_000)  // 2026-10-24T17:30:00Z
        let mondayMorning = Date(timeIntervalSince1970: 1_792_999_800)  // 2026-10-26T07:30:00Z = 08:30 CET
        let mondayEarly = Date(timeIntervalSince1970: 1_792_996_200)  // 2026-10-26T06:30:00Z = 07:30 CET
        #expect(try resolver.plan(for: "alice", caller: .user("bob"), at: saturdayEvening) == .ring(aors: ["bob"], ringSeconds: 30, target: "user:alice→ring-group:night"))
        #expect(try resolver.plan(for: "alice", caller: .user("bob"), at: mondayMorning) == .ring(aors: ["alice"], ringSeconds: 30, target: "user:alice"))
        #expect(try resolver.plan(for: "alice", caller: .user("bob"), at: mondayEarly) == .ring(aors: ["bob"], ringSeconds: 30, target: "user:alice→ring-group:night"))
        #expect(try resolver.plan(for: "nobody", caller: .user("bob"), at: mondayEarly) == .reject(status: 404, reason: "Not Found", target: "nobody"))
    }

    @Test("A re-claim revokes the certificate before it, listed for the site it named only")
    func revocationsAreListedBySite() throws {
        let directory = try Self.demo()
        try directory.createCompany("globex")
        try directory.createProject("main", company: "globex")
        try directory.createSite("tower", company: "globex", project: "main")
        try directory.createDevice("gw9", site: "tower", channels: 1)
        var first: [String: String] = [:]
        for round in 0..<2 {
            for device in ["gw1", "gw9"] {
                let claimed = try directory.redeemForTest(try directory.createClaimingCode(device: device, lifetime: 600), key: "\(device)-\(round)")
                if round == 0 { first[device] = claimed.certificate }
            }
        }
        let serial = { (device: String) in
            try directory.database.read { db in try String.fetchOne(db, sql: "SELECT serial FROM revokedCertificate WHERE device = ?", arguments: [device]) }
        }
        let gw1Old = try #require(try serial("gw1")), gw9Old = try #require(try serial("gw9"))
        let lobby = try #require(try directory.binding(ofDevice: "gw1")).siteKey
        #expect(try directory.revokedSerials(now: Date(), site: lobby) == [gw1Old], "lobby's list: its own revocation only")
        #expect(Set(try directory.revokedSerials(now: Date())) == [gw1Old, gw9Old])
        #expect(try directory.revokedSerials(now: Date().addingTimeInterval(2 * 86400)).isEmpty, "expired certificates leave the list")
        #expect(first.count == 2)
    }

    @Test func claimingCodesWorkOnceAndExpire() throws {
        let directory = try Self.demo()
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let code = try directory.createClaimingCode(device: "gw1", lifetime: 3600, now: now)
        #expect(code.count == 19 && code.split(separator: "-").count == 4)
        #expect(throws: ClaimError.unknownCode) { try directory.redeemForTest("AAAA-BBBB-CCCC-DDDD", now: now) }
        // Typed in lower case without dashes, it still works — once for another key.
        let first = try directory.redeemForTest(code.lowercased().replacingOccurrences(of: "-", with: ""), now: now)
        #expect(first.device == "gw1")
        #expect(throws: ClaimError.alreadyUsed) { try directory.redeemForTest(code, key: "key-b", now: now) }
        // The same key again (the answer was lost): the same certificate.
        #expect(try directory.redeemForTest(code, now: now).certificate == first.certificate)
        let late = try directory.createClaimingCode(device: "gw1", lifetime: 3600, now: now)
        #expect(throws: ClaimError.expired) { try directory.redeemForTest(late, now: now.addingTimeInterval(3601)) }
        #expect(throws: DirectoryError.self) { try directory.createClaimingCode(device: "gw9", lifetime: 60) }
    }

    @Test func retentionPurgeDeletesOnlyOldRecords() async throws {
        let directory = try Self.demo()
        let now = 1_800_000_000.0
        for (index, age) in [181.0, 180.5, 179.0, 1.0].enumerated() {
            let start = now - age * 86400
            let record = CallRecord(
                callId: "c\(index)", caller: "gw1-ch1", callee: "alice", target: "user:alice", channel: "gw1-ch1", answeredBy: "alice",
                startedAt: start, answeredAt: start + 3, endedAt: start + 63, status: .answered, reason: nil)
            try directory.recordCalls([record])
        }
        let removed = try directory.purgeCallRecords(startedBefore: Date(timeIntervalSince1970: now - 180 * 86400))
        #expect(removed == 2)
        #expect(try directory.callRecords().map(\.callId) == ["c2", "c3"])
        #expect(try directory.callRecords().first?.durationSeconds == 60)
        let csv = try directory.callHistoryCSV()
        #expect(csv.hasPrefix("call_id,caller,callee,target,channel,answered_by,started_at,answered_at,ended_at,duration_s,status,reason\r\n"))
        #expect(csv.contains("c3,gw1-ch1,alice,user:alice,gw1-ch1,alice,2027-01-14T08:00:00Z,2027-01-14T08:00:03Z,2027-01-14T08:01:03Z,60.0,answered,"))
    }

    @Test(arguments: [
        (486, false, DialStatus.busy), (603, false, .declined), (480, false, .missed), (487, true, .cancelled),
        (200, false, .answered), (500, false, .failed), (408, false, .missed),
    ])
    func dialStatusFromTheFinalResponse(status: Int, cancelled: Bool, expected: DialStatus) {
        #expect(DialStatus(finalStatus: status, callerCancelled: cancelled) == expected)
    }

    @Test func seedLoadsOnceAndNamesBadEntriesByPosition() throws {
        let scratch = try ScratchDirectory()
        let seed = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let directory = try Directory(path: nil, realm: "symphony")
        let summary = try DirectorySeed.load(file: "/" + seed + "/etc/cloud-core-seed.toml", into: directory)
        #expect(summary.loaded && summary.entries >= 8)
        #expect(try directory.callable(named: "concierge") == .ringGroup(name: "concierge", members: ["alice", "bob"], ringSeconds: 30))
        #expect(try DirectorySeed.load(file: "/" + seed + "/etc/cloud-core-seed.toml", into: directory).loaded == false)

        try scratch.write("bad.toml", """
            [[company]]
            name = "acme"

            [[site]]
            name = "lobby"
            company = "acme"
            project = "missing"

            [[user]]
            name = "carol"
            site = "lobby"
            pasword = "x"
            """)
        #expect {
            try DirectorySeed.load(file: scratch.path("bad.toml"), into: try Directory(path: nil, realm: "r"))
        } throws: { error in
            "\(error)".contains("bad.toml:12:1: user[0].pasword: unknown key (did you mean \"password\"?)")
        }
    }
}

extension Directory {
    /// A claim at the directory alone, with a stand-in certificate.
    func redeemForTest(_ code: String, key: String = "key-a", now: Date = Date()) throws(ClaimError) -> (device: String, certificate: String) {
        try claim(code: code, keyHash: key, source: "test", now: now) { _ in
            IssuedCertificate(
                pem: "PEM \(key) \(UUID())", serial: UUID().uuidString.lowercased().filter(\.isHexDigit).chunked2.joined(separator: ":"),
                notAfter: now.addingTimeInterval(86400))
        }
    }
}

extension String {
    /// "0a1b2c" → ["0a", "1b", "2c"].
    var chunked2: [String] {
        stride(from: 0, to: count, by: 2).map { String(dropFirst($0).prefix(2)) }
    }
}
