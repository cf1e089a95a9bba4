import CloudCore
import CloudUplink
import Foundation
import Logging
import PeerTestSupport
import Testing

/// The gateway's side of claiming against a real cloud core: key and CSR made here, the code
/// traded over HTTPS, the identity stored 0600 and found again on the next start; a wrong code
/// refused with the cloud's reason.
@Suite("Claiming client", .serialized)
struct ClaimingClientTests {
    static func core(_ scratch: ScratchDirectory) async throws -> CloudCoreServer {
        try await startCore(try await coreConfiguration(scratch))
    }

    /// A core's configuration in `scratch`, its directory made with company, site and device gw1.
    static func coreConfiguration(_ scratch: ScratchDirectory) async throws -> CloudCoreConfiguration {
        var c = CloudCoreConfiguration()
        c.stateDirectory = scratch.path("core")
        c.tlsListen = [.init("127.0.0.1:0")!]
        c.claimingListen = .init("127.0.0.1:0")
        let directory = try Directory(path: c.directoryFile, realm: c.realm)
        try directory.createCompany("acme")
        try directory.createProject("hq", company: "acme")
        try directory.createSite("lobby", company: "acme", project: "hq")
        try directory.createDevice("gw1", site: "lobby")
        return c
    }

    static func startCore(_ configuration: CloudCoreConfiguration) async throws -> CloudCoreServer {
        var logger = Logger(label: "core")
        logger.logLevel = .warning
        return try await CloudCoreServer.start(configuration, logger: logger)
    }

    @Test func aGoodCodeGivesAStoredIdentityThatIsReused() async throws {
        let scratch = try ScratchDirectory()
        let core = try await Self.core(scratch)
        let code = try core.directory.createClaimingCode(device: "gw1", lifetime: 600)
        let url = "https://127.0.0.1:\(core.claiming!.localAddress!.port!)/v1/claim"
        let (key, csr) = try DeviceIdentity.makeKeyAndRequest(hint: "gw1")
        let answer = try await ClaimingClient.claim(url: url, code: code, csrPEM: csr, caFile: core.configuration.resolvedCACertificateFile)
        #expect(answer.device == "gw1" && answer.sipServer == "sips:127.0.0.1:\(core.sipAddresses[.tls]!.port!)")
        let state = scratch.path("gateway")
        let stored = try DeviceIdentity.store(key: key, answer: answer, in: state)
        for file in [stored.keyFile, stored.certificateFile] {
            let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file) is \(String(mode ?? 0, radix: 8))")
        }
        #expect(try DeviceIdentity.load(from: state) == stored)
        #expect(try DeviceIdentity.load(from: scratch.path("elsewhere")) == nil)

        // The same code again: refused, with the cloud's reason.
        await #expect(throws: ClaimingError.refused(status: 410, reason: "claiming code already used")) {
            try await ClaimingClient.claim(url: url, code: code, csrPEM: csr, caFile: core.configuration.resolvedCACertificateFile)
        }
        await #expect(throws: ClaimingError.refused(status: 403, reason: "unknown claiming code")) {
            try await ClaimingClient.claim(url: url, code: "WRONG", csrPEM: csr, caFile: core.configuration.resolvedCACertificateFile)
        }
        await core.shutdown()
    }

    @Test func aCloudWithAnUntrustedCertificateIsNotClaimedFrom() async throws {
        let scratch = try ScratchDirectory()
        let core = try await Self.core(scratch)
        let other = try await TestCertificates.make(in: scratch)
        let code = try core.directory.createClaimingCode(device: "gw1", lifetime: 600)
        let (_, csr) = try DeviceIdentity.makeKeyAndRequest(hint: "gw1")
        do {
            _ = try await ClaimingClient.claim(
                url: "https://127.0.0.1:\(core.claiming!.localAddress!.port!)/v1/claim", code: code, csrPEM: csr, caFile: other.caFile)
            Issue.record("claimed from a cloud whose certificate is not trusted")
        } catch {
            guard case .unreachable = error else { Issue.record("\(error)"); return }
        }
        // The code was not spent.
        #expect(try core.directory.redeemClaimingCode(code, by: "test") == "gw1")
        await core.shutdown()
    }
}
