import CloudCore
@testable import CloudUplink
import DeviceTrust
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
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

        // The same code and key again (a lost answer): the same certificate; another key: refused.
        let again = try await ClaimingClient.claim(url: url, code: code, csrPEM: csr, caFile: core.configuration.resolvedCACertificateFile)
        #expect(again.certificate == answer.certificate)
        let (_, otherCSR) = try DeviceIdentity.makeKeyAndRequest(hint: "gw1")
        await #expect(throws: ClaimingError.refused(status: 410, reason: "claiming code already used")) {
            try await ClaimingClient.claim(url: url, code: code, csrPEM: otherCSR, caFile: core.configuration.resolvedCACertificateFile)
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
        let claimed = try await ClaimingClient.claim(
            url: "https://127.0.0.1:\(core.claiming!.localAddress!.port!)/v1/claim", code: code, csrPEM: csr, caFile: core.configuration.resolvedCACertificateFile)
        #expect(claimed.device == "gw1")
        await core.shutdown()
    }

    @Test("A claim endpoint that accepts and then says nothing fails the claim at its deadline (it held the gateway's cloud side forever)")
    func aSilentServerTimesOut() async throws {
        // A listening socket that never accepts: the kernel completes the TCP handshake, nobody
        // answers the TLS ClientHello.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        #expect(listen(fd, 8) == 0)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let (_, csr) = try DeviceIdentity.makeKeyAndRequest(hint: "gw1")
        let started = ContinuousClock.now
        do {
            _ = try await ClaimingClient.claim(url: "https://127.0.0.1:\(port)/v1/claim", code: "X", csrPEM: csr, caFile: nil, timeout: .seconds(1))
            Issue.record("a silent server gave an answer")
        } catch {
            guard case .unreachable(let why) = error else { Issue.record("\(error)"); return }
            #expect(why.contains("no answer within"), "\(why)")
        }
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test("A claim URL with a port outside 1–65535 is refused with the reason, never a trap in the socket address")
    func aPortOutOfRangeIsRefused() async throws {
        let (_, csr) = try DeviceIdentity.makeKeyAndRequest(hint: "gw1")
        for url in ["https://192.0.2.10:84430/v1/claim", "https://127.0.0.1:0/v1/claim", "https://[::1]:99999999/v1/claim"] {
            do {
                _ = try await ClaimingClient.claim(url: url, code: "X", csrPEM: csr, caFile: nil, timeout: .seconds(1))
                Issue.record("\(url) claimed")
            } catch {
                guard case .unreachable(let why) = error else { Issue.record("\(url): \(error)"); continue }
                #expect(why.contains("port") || why.contains("not an https URL"), "\(url): \(why)")
            }
        }
    }

    @Test("An answer larger than 256 KiB is refused as a bad answer, not collected")
    func anOversizedAnswerIsRefused() throws {
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: (Int, [UInt8]).self)
        try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise))
        try channel.writeInbound(HTTPClientResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok)))
        for _ in 0..<5 {
            _ = try? channel.writeInbound(HTTPClientResponsePart.body(ByteBuffer(repeating: 0x41, count: 64 * 1024)))
        }
        let failure = NIOLockedValueBox<(any Error)?>(nil)
        promise.futureResult.whenFailure { error in failure.withLockedValue { $0 = error } }
        #expect(failure.withLockedValue { $0 } as? ClaimingError == .badAnswer("the answer is larger than 262144 bytes"))
    }

    @Test("A device.json that names no valid device is reported as such at load, and a claim answer naming one is not stored")
    func badDeviceNamesAreRefused() throws {
        let scratch = try ScratchDirectory()
        let state = scratch.path("state")
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        for name in ["", String(repeating: "a.", count: 40_000), "gw1\nforged", "gw 1"] {
            let json = try JSONSerialization.data(withJSONObject: ["device": name, "sipServer": "sips:127.0.0.1:5061", "domain": "symphony.local"])
            try json.write(to: URL(fileURLWithPath: state + "/device.json"))
            #expect {
                try DeviceIdentity.load(from: state)
            } throws: { error in
                (error as? DeviceIdentity.BrokenFile)?.description.contains("device.json is broken: names no valid device") == true
            }
        }
        let (key, _) = try DeviceIdentity.makeKeyAndRequest(hint: "gw1")
        let answer = ClaimAnswer(device: String(repeating: "a.", count: 40_000), certificate: "", ca: "", sipServer: "sips:127.0.0.1:5061", domain: "symphony.local")
        #expect(throws: ClaimingError.self) { try DeviceIdentity.store(key: key, answer: answer, in: scratch.path("other")) }
        #expect(!FileManager.default.fileExists(atPath: scratch.path("other") + "/device.json"))
    }
}
