import CloudCore
import CloudUplink
import Foundation
import Logging
import NIOCore
import NIOPosix
import PeerTestSupport
import SIP
import SIPTransport
import Testing

/// The gateway's registration against a real cloud core: claimed, then all 14 channels as RFC
/// 5626 bindings over one mutual-TLS flow; the core restarted under it: the uplink notices, backs
/// off and registers again.
@Suite("Cloud registration", .serialized)
struct CloudRegistrationTests {
    @Test func fourteenChannelsRegisterOverOneFlowAndComeBackAfterACoreRestart() async throws {
        let scratch = try ScratchDirectory()
        var configuration = try await ClaimingClientTests.coreConfiguration(scratch)
        var core: CloudCoreServer? = try await ClaimingClientTests.startCore(configuration)
        // Keep the TLS port for the restart.
        configuration.tlsListen = [.init("127.0.0.1:\(core!.sipAddresses[.tls]!.port!)")!]

        let code = try core!.directory.createClaimingCode(device: "gw1", lifetime: 600)
        let (key, csr) = try DeviceIdentity.makeKeyAndRequest(hint: "gw1")
        let answer = try await ClaimingClient.claim(
            url: "https://127.0.0.1:\(core!.claiming!.localAddress!.port!)/v1/claim", code: code, csrPEM: csr,
            caFile: core!.configuration.resolvedCACertificateFile)
        let identity = try DeviceIdentity.store(key: key, answer: answer, in: scratch.path("gateway"))

        var endpointConfiguration = SIPEndpoint.Configuration()
        endpointConfiguration.tls = try SIPTLSSettings(certificateFile: identity.certificateFile, keyFile: identity.keyFile, caFile: identity.caFile)
        endpointConfiguration.keepAlivePongTimeout = .milliseconds(500)
        let endpoint = try SIPEndpoint(eventLoop: MultiThreadedEventLoopGroup.singleton.next(), configuration: endpointConfiguration)
        let server = try #require(SIPURIParser.parseSIP(identity.sipServer) as SIPURI?)
        var settings = CloudRegistration.Settings(
            server: SIPDestination(transport: .tls, host: server.host, port: server.port),
            domain: identity.domain, addressesOfRecord: (1...14).map { "gw1-ch\($0)" }, instance: UUID().uuidString.lowercased())
        settings.keepAlive = .seconds(1)
        settings.backoff = ReconnectBackoff(base: .milliseconds(300), ceiling: .seconds(2))
        let uplink = CloudRegistration(endpoint: endpoint, settings: settings)
        var statuses = uplink.statusChanges.makeAsyncIterator()
        await uplink.start()

        func next(_ what: String, _ matches: (UplinkStatus) -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                guard let status = await statuses.next() else { break }
                if matches(status) { return }
            }
            throw PeerError("uplink never became \(what)")
        }
        try await next("registered") { if case .registered = $0 { true } else { false } }
        for channel in 1...14 {
            let bindings = await core!.proxy.contacts(of: "gw1-ch\(channel)")
            #expect(bindings.count == 1 && bindings.first?.isOutbound == true && bindings.first?.principal == "device:gw1")
        }

        // The core goes away: the flow fails, the uplink is down and retries.
        await core!.shutdown()
        core = nil
        try await next("down") { if case .down = $0 { true } else { false } }
        // It comes back (registrations of the old flow are restored but unreachable): the
        // uplink registers again over a new flow.
        core = try await ClaimingClientTests.startCore(configuration)
        try await next("registered again") { if case .registered = $0 { true } else { false } }
        let flows = Set(await (1...14).asyncMap { await core!.proxy.contacts(of: "gw1-ch\($0)").last?.flow })
        #expect(flows.count == 1 && flows.first! != nil, "all 14 channels over the one new flow")
        await uplink.stop()
        await endpoint.shutdown()
        await core!.shutdown()
    }
}

extension Sequence where Element: Sendable {
    func asyncMap<T>(_ transform: (Element) async -> T) async -> [T] {
        var out: [T] = []
        for element in self { out.append(await transform(element)) }
        return out
    }
}
