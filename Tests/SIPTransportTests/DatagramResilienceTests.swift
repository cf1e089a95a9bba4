import NIOCore
import NIOPosix
import SIP
@testable import SIPTransport
import Testing

/// A UDP socket is the whole legacy side of a gateway: nothing sent or received may cost it.
/// SwiftNIO closes a datagram channel on send errors other than EMSGSIZE and EHOSTUNREACH, so a
/// response to a broadcast `maddr` used to leave the endpoint deaf.
@Suite("UDP socket resilience")
struct DatagramResilienceTests {
    static func options(_ branch: String, via: String = ";rport") -> String {
        "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK\(branch)\(via)\r\nFrom: <sip:t@x>;tag=1\r\n"
            + "To: <sip:a@127.0.0.1>\r\nCall-ID: \(branch)\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    }

    @Test func destinationsThatCannotWorkAreRefusedBeforeTheSend() throws {
        let anyV4 = try SocketAddress(ipAddress: "0.0.0.0", port: 5060)
        let loopback = try SocketAddress(ipAddress: "127.0.0.1", port: 5060)
        func refusal(_ host: String, _ port: Int = 5060, from local: SocketAddress) throws -> String? {
            SIPDatagramDestination.refusal(to: try SocketAddress(ipAddress: host, port: port), from: local)
        }
        #expect(try refusal("192.0.2.7", from: anyV4) == nil)
        #expect(try refusal("127.0.0.1", from: loopback) == nil)
        for bad in ["255.255.255.255", "224.0.0.1", "239.1.2.3", "240.0.0.1", "0.0.0.0", "0.1.2.3"] {
            #expect(try refusal(bad, from: anyV4) != nil, "\(bad)")
        }
        #expect(try refusal("192.0.2.7", 0, from: anyV4) != nil, "port 0")
        #expect(try refusal("192.0.2.7", from: loopback)?.contains("loopback") == true, "EINVAL from a loopback socket")
        let anyV6 = try SocketAddress(ipAddress: "::", port: 5060)
        #expect(try refusal("2001:db8::1", from: anyV6) == nil)
        #expect(try refusal("ff02::1", from: anyV6) != nil)
        #expect(try refusal("::", from: anyV6) != nil)
        #expect(try refusal("2001:db8::1", from: try SocketAddress(ipAddress: "::1", port: 5060)) != nil)
        #expect(try refusal("192.0.2.7", from: anyV6) != nil, "the other family")
    }

    /// RFC 3261 §18.2.2 would send the response to `maddr`; a broadcast one made the send fail
    /// and SwiftNIO close the socket. Responses go to the source now, and the socket serves on.
    @Test func aResponseIsNeverSentToABroadcastMaddrAndTheSocketServesOn() async throws {
        let agent = try await AgentHarness(transports: [.udp])
        defer { Task { await agent.shutdown() } }
        let (socket, collector) = try await DatagramCollector.socket(on: agent.group)
        defer { socket.close(promise: nil) }
        let destination = try SocketAddress(ipAddress: "127.0.0.1", port: agent.port(.udp))
        try await socket.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: ByteBuffer(string: Self.options("m1", via: ";maddr=255.255.255.255;rport"))))
        #expect(try SIPMessageParser().parse(try await collector.next(timeout: .seconds(5))).statusCode == 200, "answered to where it came from")
        try await socket.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: ByteBuffer(string: Self.options("m2", via: ";maddr=255.255.255.255"))))
        try await Task.sleep(for: .milliseconds(300))
        try await socket.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: ByteBuffer(string: Self.options("m3"))))
        #expect(try SIPMessageParser().parse(try await collector.next(timeout: .seconds(5))).callID == "m3", "still serving")
        #expect(await agent.endpoint.udpChannels.count == 1)
    }

    /// Whatever else closes the socket (a send error a new kernel or firewall gives): the
    /// endpoint binds the same address again and answers there.
    @Test func aUDPSocketClosedUnderTheEndpointIsBoundAgain() async throws {
        let agent = try await AgentHarness(transports: [.udp])
        defer { Task { await agent.shutdown() } }
        let port = agent.port(.udp)
        let first = try #require(await agent.endpoint.udpChannels.first)
        try await first.close()
        let deadline = ContinuousClock.now + .seconds(5)
        while await agent.endpoint.udpChannels.isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let again = try #require(await agent.endpoint.udpChannels.first)
        #expect(again !== first && again.localAddress?.port == port, "the same port, a new socket")

        let (socket, collector) = try await DatagramCollector.socket(on: agent.group)
        defer { socket.close(promise: nil) }
        try await socket.writeAndFlush(AddressedEnvelope(remoteAddress: try SocketAddress(ipAddress: "127.0.0.1", port: port), data: ByteBuffer(string: Self.options("r1"))))
        #expect(try SIPMessageParser().parse(try await collector.next(timeout: .seconds(5))).statusCode == 200)
    }

    @Test func afterShutdownNothingIsBoundAgain() async throws {
        let agent = try await AgentHarness(transports: [.udp])
        defer { Task { await agent.shutdown() } }
        await agent.endpoint.shutdown()
        try await Task.sleep(for: .milliseconds(200))
        #expect(await agent.endpoint.udpChannels.isEmpty)
    }
}
