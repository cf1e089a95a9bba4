import CloudUplink
import Foundation
import NIOCore
import NetworkAddress
import PeerTestSupport
import SIPTransport
import Testing

/// RFC 3263 for the gateway's `[cloud] server` (issue 19), against dnsmasq serving NAPTR, SRV and
/// A records: NAPTR → SRV → addresses in priority order, SRV without NAPTR, a service DNS says is
/// not offered, a name without records, and addresses or ports that need no lookup.
@Suite("RFC 3263 server location", .serialized)
struct SIPServerLocatorTests {
    @Test func naptrThenSRVThenAddressesInOrder() async throws {
        let dns = try await Dnsmasq(records: [
            "--naptr-record=cloud.test,10,50,s,SIPS+D2T,,_sips._tcp.cloud.test",
            "--naptr-record=cloud.test,20,50,s,SIP+D2U,,_sip._udp.cloud.test",
            "--srv-host=_sips._tcp.cloud.test,sip2.cloud.test,5071,20,10",
            "--srv-host=_sips._tcp.cloud.test,sip1.cloud.test,5061,10,10",
            "--host-record=sip1.cloud.test,127.0.0.11",
            "--host-record=sip2.cloud.test,127.0.0.12,::1",
            "--srv-host=_sips._tcp.other.test,edge.other.test,5062,0,0",
            "--host-record=edge.other.test,127.0.0.13",
            "--srv-host=_sips._tcp.none.test",
        ])
        defer { dns.stop() }
        let locator = SIPServerLocator(resolver: DNSStubResolver(nameServers: [try SocketAddress(ipAddress: "127.0.0.1", port: dns.port)]))
        let cloud = try await locator.locate(host: "cloud.test", port: nil)
        #expect(cloud.map { "\($0.host):\($0.port)" } == ["127.0.0.11:5061", "::1:5071", "127.0.0.12:5071"], "\(cloud)")
        #expect(cloud.allSatisfy { $0.serverName == "cloud.test" && $0.transport == .tls }, "the certificate is checked against the SIP domain (RFC 5922)")
        let other = try await locator.locate(host: "other.test", port: nil)
        #expect(other.map { "\($0.host):\($0.port)" } == ["127.0.0.13:5062"])
        #expect(try await locator.locate(host: "none.test", port: nil).isEmpty, "a \".\" target: no SIPS there")
        let plain = try await locator.locate(host: "plain.test", port: nil)
        #expect(plain.map { "\($0.host):\($0.port)" } == ["plain.test:5061"], "no records: the name on 5061")
        #expect(try await locator.locate(host: "cloud.test", port: 5099).map(\.port) == [5099], "a port: no lookup")
        #expect(try await locator.locate(host: "127.0.0.1", port: nil).map(\.host) == ["127.0.0.1"])
        #expect(dns.peer.text.contains("query[NAPTR] cloud.test") && dns.peer.text.contains("query[SRV] _sips._tcp.cloud.test"), "\(dns.peer.text)")
    }

    /// An SRV set too big for a 512-byte datagram: dnsmasq cuts it (TC), the resolver asks again
    /// over TCP and gets all of it (RFC 7766 §5).
    @Test func aTruncatedAnswerIsAskedAgainOverTCP() async throws {
        let records = (1...24).map { "--srv-host=_sips._tcp.big.test,edge-\($0)-with-a-rather-long-name.big.test,5061,\($0),10" }
        let dns = try await Dnsmasq(records: records)
        defer { dns.stop() }
        let resolver = DNSStubResolver(nameServers: [try SocketAddress(ipAddress: "127.0.0.1", port: dns.port)])
        let answers = try await resolver.query("_sips._tcp.big.test", .srv)
        #expect(answers.count == 24, "\(answers.count) of 24 SRV records")
        #expect(dns.peer.text.components(separatedBy: "query[SRV] _sips._tcp.big.test").count == 3, "asked twice, UDP then TCP: \(dns.peer.text.suffix(1500))")
    }

    /// What a hostile zone hands out is followed only so far: 10 NAPTR replacements without SRV
    /// (4 are asked), 12 SRV targets (8 resolved), a target with 10 addresses (4 kept).
    @Test func aLookupFollowsOnlySoFar() async throws {
        let dns = try await Dnsmasq(records:
            (1...10).map { "--naptr-record=many.test,\($0),50,s,SIPS+D2T,,_sips._tcp.s\($0).many.test" }
            + (1...12).map { "--srv-host=_sips._tcp.wide.test,t\($0).wide.test,5061,\($0),10" }
            + (1...12).map { "--host-record=t\($0).wide.test,127.0.1.\($0)" }
            + ["--srv-host=_sips._tcp.fat.test,fat.test,5061,0,0"] + (1...10).map { "--address=/fat.test/127.0.2.\($0)" })
        defer { dns.stop() }
        let locator = SIPServerLocator(resolver: DNSStubResolver(nameServers: [try SocketAddress(ipAddress: "127.0.0.1", port: dns.port)]))
        #expect(try await locator.locate(host: "many.test", port: nil).map(\.host) == ["many.test"], "no SRV anywhere: the name itself")
        #expect(dns.peer.text.components(separatedBy: "query[SRV] _sips._tcp.s").count - 1 == SIPServerLocator.maxServiceNames, "\(dns.peer.text.suffix(2000))")
        let wide = try await locator.locate(host: "wide.test", port: nil)
        #expect(wide.count == SIPServerLocator.maxTargets, "\(wide)")
        let fat = try await locator.locate(host: "fat.test", port: nil)
        #expect(fat.count <= SIPServerLocator.maxAddressesPerTarget && !fat.isEmpty, "\(fat)")
    }

    /// A server that answers nothing, or garbage from elsewhere: the lookup ends at its timeout
    /// with an error, never a trap or a wait without end.
    @Test func aSilentServerIsAnErrorAfterTheTimeout() async throws {
        let silent = try UDPSocket(port: 0)
        let resolver = DNSStubResolver(nameServers: [try SocketAddress(ipAddress: "127.0.0.1", port: silent.port)], timeout: .milliseconds(300))
        let started = ContinuousClock.now
        await #expect(throws: DNSStubResolver.Failure.self) { try await resolver.query("cloud.test", .srv) }
        #expect(ContinuousClock.now - started < .seconds(3))
        withExtendedLifetime(silent) {}  // its socket stays open (and silent) until here
    }
}
