import Foundation
@testable import Mesh
import NIOCore
import NIOPosix
import PeerTestSupport
import Testing

/// The discovery service on a real interface (a veth pair made for the test; root, as in CI).
@Suite("Mesh discovery service")
struct MeshDiscoveryServiceTests {
    /// SwiftNIO closes a datagram channel on a send error such as ENETDOWN (the interface went
    /// down under a multicast send): discovery must come back on that interface by itself.
    @Test func anMDNSSocketLostUnderTheServiceIsOpenedAgain() async throws {
        let name = "symtv\(UInt16.random(in: 0...UInt16.max))"
        _ = try await runCommand("ip", ["link", "add", name, "type", "veth", "peer", "name", name + "p"])
        defer { _ = try? Process.run(URL(fileURLWithPath: "/usr/sbin/ip"), arguments: ["link", "del", name]) }
        _ = try await runCommand("ip", ["addr", "add", "fe80::5ee:1/64", "dev", name, "nodad"])
        _ = try await runCommand("ip", ["link", "set", name, "up"])
        _ = try await runCommand("ip", ["link", "set", name + "p", "up"])

        let service = MeshDiscoveryService(node: MeshNode(device: "gw1", site: "lobby", numbers: ["101"], port: 5061), eventLoop: MultiThreadedEventLoopGroup.singleton.next())
        try await service.add(interface: name, address: try LinkLocalAddress("fe80::5ee:1", interface: name))
        let first = try #require(await service.links[name]?.channel)
        try await first.close()
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            let current = await service.links[name]?.channel
            if let current, current !== first { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let again = await service.links[name]?.channel
        #expect(again != nil && again !== first, "discovery runs on \(name) again, on a new socket")
        await service.stop()
        #expect(await service.links.isEmpty, "and a stop is final")
    }
}
