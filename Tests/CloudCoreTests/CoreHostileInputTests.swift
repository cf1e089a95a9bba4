import BoundedJSON
@testable import CloudCore
import Foundation
import Logging
import GRDB
import NIOCore
import NIOPosix
import NIOSSL
import PeerTestSupport
import SIP
import SIPTransport
import Testing

/// Values the core takes from outside that are not SIP messages: its own state file, names in
/// requests that reach the directory (docs/RELIABILITY.md).
@Suite("Core: hostile state and names")
struct CoreHostileInputTests {
    static func binding(expiresAt: Double, contact: String = "sip:alice@192.0.2.10:5060") throws -> LocationBinding {
        let flow = SIPFlow(
            transport: .tls, local: try SocketAddress(ipAddress: "127.0.0.1", port: 5061), remote: try SocketAddress(ipAddress: "192.0.2.10", port: 40000),
            connectionID: 1)
        var scanner = SIPScanner(contact)
        let uri = try SIPNameAddress.parseSingle(&scanner, header: "Contact")
        return LocationBinding(
            addressOfRecord: "alice", contact: uri, instance: nil, regID: nil, expiresAt: expiresAt, callID: "c1", cseq: 1, flow: flow, principal: "user:alice")
    }

    @Test("Registrations restored from a tampered state file: an expiry that is not a time, or further ahead than a day, is not restored (was: a trap in the 200 OK's expires)")
    func restoredBindingsAreChecked() throws {
        let now = 1_000.0
        var location = LocationService()
        location.restore([
            try Self.binding(expiresAt: .infinity, contact: "sip:a@192.0.2.1"), try Self.binding(expiresAt: .nan, contact: "sip:b@192.0.2.2"),
            try Self.binding(expiresAt: 1e300, contact: "sip:c@192.0.2.3"), try Self.binding(expiresAt: -.infinity, contact: "sip:d@192.0.2.4"),
            try Self.binding(expiresAt: now + 3600, contact: "sip:ok@192.0.2.5"),
        ], now: now)
        let live = location.lookup("alice", now: now)
        #expect(live.count == 1 && live.first?.contact.uri.description == "sip:ok@192.0.2.5")
    }

    @Test("Names longer than any directory name are not looked up (they would fill the caches): users, devices, callables, rules, digest")
    func longNamesAreNotLookedUp() throws {
        let directory = try Directory(path: nil, realm: "symphony")
        try directory.createCompany("acme")
        try directory.createProject("hq", company: "acme")
        try directory.createSite("lobby", company: "acme", project: "hq")
        try directory.createUser("alice", site: "lobby", password: "secret")
        let long = String(repeating: "a", count: 8000)
        #expect(!directory.userExists(long) && !directory.deviceExists(long))
        #expect(try directory.callable(named: long) == nil && directory.forwardingRules(user: long).isEmpty)
        #expect(directory.ha1(user: long, algorithm: .md5) == nil && directory.ha1(user: "", algorithm: .md5) == nil)
        #expect(directory.userExists("alice") && directory.ha1(user: "alice", algorithm: .md5) != nil)
    }

    static func directory() throws -> Directory {
        let directory = try Directory(path: nil, realm: "symphony")
        try directory.createCompany("acme")
        try directory.createProject("hq", company: "acme")
        try directory.createSite("lobby", company: "acme", project: "hq")
        try directory.createUser("alice", site: "lobby", password: "secret")
        try directory.createDevice("gw1", site: "lobby", channels: 2)
        return directory
    }

    @Test("Rows of a tampered directory that do not decode are skipped, never a trap: registrations (REAL past Int64, text in numbers), ring seconds, forwarding rules, claiming codes")
    func tamperedRowsAreSkipped() throws {
        let directory = try Self.directory()
        try directory.saveRegistrations([(aor: "alice", bindings: [try Self.binding(expiresAt: 5000)])])
        try directory.database.write { db in
            // SQLite keeps what it is given in a column that is not STRICT.
            try db.execute(sql: """
                INSERT INTO registration VALUES ('alice', 'sip:x@192.0.2.9', NULL, 1e300, 5000, 'c2', 1, 'tls', '192.0.2.9:1', '127.0.0.1:5061', 'user:alice');
                INSERT INTO registration VALUES ('alice', 'sip:y@192.0.2.9', NULL, NULL, 'soon', 'c3', 1, 'tls', '192.0.2.9:1', '127.0.0.1:5061', 'user:alice');
                INSERT INTO registration VALUES ('alice', 'sip:z@192.0.2.9', NULL, NULL, 5000, 'c4', 1e300, 'tls', '192.0.2.9:1', '127.0.0.1:5061', 'user:alice');
                INSERT INTO registration VALUES ('alice', 'sip:w@192.0.2.9', NULL, NULL, 5000, x'ff', 1, 'tls', '192.0.2.9:1', '127.0.0.1:5061', 'user:alice');
                """)
        }
        let loaded = try directory.loadRegistrations()
        #expect(loaded.map(\.contact.uri.description) == ["sip:alice@192.0.2.10:5060"], "only the good row")

        _ = try directory.createRingGroup("door", site: "lobby", members: ["alice"], ringSeconds: 20)
        try directory.database.write { db in try db.execute(sql: "UPDATE ringGroup SET ringSeconds = 'forever' WHERE name = 'door'") }
        #expect(try directory.callable(named: "door") == .ringGroup(name: "door", members: ["alice"], ringSeconds: 30))
        _ = try directory.createRingGroup("lift", site: "lobby", members: ["alice"], ringSeconds: 20)
        try directory.database.write { db in try db.execute(sql: "UPDATE ringGroup SET ringSeconds = 1e300 WHERE name = 'lift'") }
        #expect(try directory.callable(named: "lift") == .ringGroup(name: "lift", members: ["alice"], ringSeconds: 30))
        _ = try directory.createRingGroup("desk", site: "lobby", members: ["alice"], ringSeconds: 20)
        try directory.database.write { db in try db.execute(sql: "UPDATE ringGroup SET ringSeconds = -5 WHERE name = 'desk'") }
        #expect(try directory.callable(named: "desk") == .ringGroup(name: "desk", members: ["alice"], ringSeconds: 5), "the 5–300 s rule held on read")

        try directory.setForwardingRules([ForwardingRule(timeZone: "Europe/Berlin", target: .user("alice"))], user: "alice")
        try directory.database.write { db in
            try db.execute(sql: "UPDATE forwardingRule SET timeStart = 1e300, timeEnd = 'noon'")
        }
        #expect(try directory.forwardingRules(user: "alice").isEmpty)

        let code = try directory.createClaimingCode(device: "gw1", lifetime: 600)
        try directory.database.write { db in try db.execute(sql: "UPDATE claimingCode SET expiresAt = 'tomorrow'") }
        #expect(throws: ClaimError.self) { try directory.redeemForTest(code) }
    }

    @Test("A claiming body of exactly 513 nested arrays is refused as a bad request (JSONDecoder trapped on it: found by ClaimingFuzzer)")
    func deeplyNestedClaimIsRefused() throws {
        let scratch = try ScratchDirectory()
        let directory = try Self.directory()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let service = ClaimingService(
            directory: directory, authority: try DeviceCertificateAuthority.loadOrCreate(certificateFile: scratch.path("ca.pem"), keyFile: scratch.path("ca-key.pem")),
            validDays: 825, sipServer: "sips:127.0.0.1:5061", domain: "symphony.local", attemptsPerMinute: 100, logger: logger)
        for body in [String(repeating: "[", count: 513), String(repeating: "{\"a\":", count: 513), String(repeating: "[", count: 40) + String(repeating: "]", count: 40)] {
            guard case .failure(.badRequest) = service.claim(Array(body.utf8), source: "192.0.2.1") else {
                Issue.record("\(body.prefix(20))… was not refused as a bad request")
                continue
            }
        }
    }

    @Test("The JSON bound counts nesting outside strings only, and refuses size and depth")
    func jsonBounds() throws {
        try BoundedJSON.check(Array(#"{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{"}"#.utf8))
        try BoundedJSON.check(Array((String(repeating: "[", count: 32) + String(repeating: "]", count: 32)).utf8))
        #expect(throws: BoundedJSON.Refusal.tooDeep) { try BoundedJSON.check(Array(String(repeating: "[", count: 33).utf8)) }
        #expect(throws: BoundedJSON.Refusal.tooLarge(BoundedJSON.maxSize + 1)) { try BoundedJSON.check([UInt8](repeating: 0x20, count: BoundedJSON.maxSize + 1)) }
        #expect(try BoundedJSON.decode([String: Int].self, from: Data(#"{"a": 1}"#.utf8)) == ["a": 1])
    }

    /// The claiming listener is admitted like the SIP ones (issue 16): over its per-address cap a
    /// connection is closed at once, another address is still taken, and one that never starts
    /// its TLS handshake is closed after the handshake time.
    @Test func claimingConnectionsAreCappedAndSilentOnesClosed() async throws {
        let scratch = try ScratchDirectory()
        let certificates = try await TestCertificates.make(in: scratch)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let service = ClaimingService(
            directory: try Self.directory(),
            authority: try DeviceCertificateAuthority.loadOrCreate(certificateFile: scratch.path("device-ca.pem"), keyFile: scratch.path("device-ca-key.pem")),
            validDays: 825, sipServer: "sips:127.0.0.1:5061", domain: "symphony.local", attemptsPerMinute: 100, logger: logger)
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificates.certificateFile).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: certificates.keyFile, format: .pem)))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await ClaimingHTTPServer.start(
            service: service, tls: try NIOSSLContext(configuration: tls), address: try SocketAddress(ipAddress: "127.0.0.1", port: 0), group: group,
            // The handshake time well past the "at once" check (a loaded start of the parallel run once took it).
            limits: .init(maxConnections: 50, maxPerAddress: 2, handshakeTimeout: .seconds(3), firstMessageTimeout: .seconds(5)), logger: logger)
        let port = try #require(server.localAddress?.port)
        func connect(from source: String) async throws -> any Channel {
            try await ClientBootstrap(group: group).bind(to: try SocketAddress(ipAddress: source, port: 0))
                .connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: port)).get()
        }
        let first = try await connect(from: "127.0.0.1"), second = try await connect(from: "127.0.0.1"), third = try await connect(from: "127.0.0.1")
        let other = try await connect(from: "127.0.0.2")
        try await Task.sleep(for: .milliseconds(250))
        #expect(!third.isActive && first.isActive && second.isActive && other.isActive, "the third from one address is refused, another address taken")
        #expect(server.openConnections == 3)
        let deadline = ContinuousClock.now + .seconds(10)
        while server.openConnections > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(server.openConnections == 0 && !first.isActive && !other.isActive, "no handshake within 3 s: all closed")
        await server.shutdown()
        try await group.shutdownGracefully()
    }
}
