import CloudCore
import Foundation
import Logging
import NIOCore
import PeerTestSupport
import SIPTransport

/// A real cloud core for one test: its own state directory, TLS plus the lab UDP and TCP
/// listeners on free loopback ports, the claiming endpoint, and a small directory:
/// users alice, bob ("Bob Builder") and carol (digest passwords `<name>-pw`), device gw1, ring
/// group desk.
final class CoreHarness: @unchecked Sendable {
    let scratch: ScratchDirectory
    let server: CloudCoreServer
    var directory: Directory { server.directory }

    /// `before` runs on the directory before the core opens it; `clock` is the core's.
    static func start(
        configure: (inout CloudCoreConfiguration) -> Void = { _ in },
        clock: @escaping @Sendable () -> Date = { Date() }, before: (Directory) throws -> Void = { _ in },
        serverCertificateCheck: Duration = .seconds(3600)
    ) async throws -> CoreHarness {
        let scratch = try ScratchDirectory()
        var c = CloudCoreConfiguration()
        c.stateDirectory = scratch.path("state")
        c.tlsListen = [.init("127.0.0.1:0")!]
        c.labUDP = .init("127.0.0.1:0")
        c.labTCP = .init("127.0.0.1:0")
        c.claimingListen = .init("127.0.0.1:0")
        // Debian's sipp 3.6 speaks MD5 digest only.
        c.digestAlgorithms = ["MD5"]
        configure(&c)
        let directory = try Directory(path: c.directoryFile, realm: c.realm)
        try Self.populate(directory)
        try before(directory)
        var logger = Logger(label: "cloud-core-test")
        logger.logLevel = ProcessInfo.processInfo.environment["CORE_TEST_LOG"] != nil ? .debug : .warning
        let server = try await CloudCoreServer.start(c, logger: logger, clock: clock, serverCertificateCheck: serverCertificateCheck)
        return CoreHarness(scratch: scratch, server: server)
    }

    static func populate(_ directory: Directory) throws {
        try directory.createCompany("acme")
        try directory.createProject("hq", company: "acme")
        try directory.createSite("lobby", company: "acme", project: "hq", timeZone: "Europe/Berlin")
        for name in ["alice", "bob", "carol"] {
            try directory.createUser(name, site: "lobby", password: "\(name)-pw", displayName: name == "bob" ? "Bob Builder" : nil)
        }
        try directory.createDevice("gw1", site: "lobby", channels: 14)
        try directory.createRingGroup("desk", site: "lobby", members: ["alice", "carol"], ringSeconds: 30)
    }

    init(scratch: ScratchDirectory, server: CloudCoreServer) {
        self.scratch = scratch
        self.server = server
    }

    func port(_ transport: SIPTransportProtocol) -> Int { server.sipAddresses[transport]?.port ?? 0 }

    func stop() async { await server.shutdown() }

    /// A client token for `user` signed with the core's key.
    func token(for user: String, lifetime: Int = 300, audience: String? = nil) throws -> String {
        let now = Int(Date().timeIntervalSince1970)
        return try server.tokenSigner.token(for: ClientTokenClaims(
            subject: user, audience: audience ?? server.configuration.tokenAudience, issuedAt: now, expiresAt: now + lifetime))
    }

    /// Polls until `condition` holds (the core's state changes on its own event loop).
    func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: @escaping @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw PeerError("timed out waiting for \(what)")
    }

    /// The records of ended calls, once at least `count` are written (the proxy's writer batches
    /// them on GRDB's writer queue; calls still going have records without an end).
    func records(atLeast count: Int = 1) async throws -> [CallRecord] {
        let directory = directory
        try await eventually("\(count) call record(s)") { ((try? directory.callRecords().filter { $0.endedAt != nil }.count) ?? 0) >= count }
        return try directory.callRecords().filter { $0.endedAt != nil }
    }
}
