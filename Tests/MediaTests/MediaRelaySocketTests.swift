import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
@testable import Media

/// A UDP socket for a test phone: sends datagrams, keeps what it receives.
final class UDPPeer: Sendable {
    let channel: any Channel
    private let inbox: NIOLockedValueBox<[[UInt8]]>

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let inbox: NIOLockedValueBox<[[UInt8]]>
        init(_ inbox: NIOLockedValueBox<[[UInt8]]>) { self.inbox = inbox }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = Array(buffer: unwrapInboundIn(data).data)
            inbox.withLockedValue { $0.append(bytes) }
        }
    }

    init(group: any EventLoopGroup, host: String = "127.0.0.1") async throws {
        let inbox = NIOLockedValueBox<[[UInt8]]>([])
        self.inbox = inbox
        channel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(inbox)) } }
            .bind(host: host, port: 0).get()
    }

    var address: SocketAddress { channel.localAddress! }
    var received: [[UInt8]] { inbox.withLockedValue { $0 } }

    func send(_ bytes: [UInt8], to address: SocketAddress) {
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: ByteBuffer(bytes: bytes)), promise: nil)
    }

    /// Sends packets one packet time (20 ms) apart, as a phone does.
    func stream(_ packets: [[UInt8]], to address: SocketAddress) async throws {
        let start = ContinuousClock.now
        for (n, packet) in packets.enumerated() {
            try await Task.sleep(until: start + .milliseconds(20 * n), clock: .continuous)
            send(packet, to: address)
        }
    }

    func close() async { try? await channel.close() }
}

@Suite("Media relay over real UDP sockets")
struct MediaRelaySocketTests {
    struct Path: Sendable, CustomStringConvertible {
        var cloud: AudioCodecKind
        var cloudPT: UInt8
        var cloudRate: Int
        var srtp: SRTPCryptoSuite?
        var description: String { "G.722 ↔ \(cloud.rawValue)\(srtp.map { " / \($0.rawValue)" } ?? "")" }
    }

    static let paths = [
        Path(cloud: .g722, cloudPT: 9, cloudRate: 16000, srtp: .aesCM128HMACSHA1_80),
        Path(cloud: .opus, cloudPT: 111, cloudRate: 48000, srtp: .aesCM128HMACSHA1_32),
        Path(cloud: .pcma, cloudPT: 8, cloudRate: 8000, srtp: .aeadAES128GCM),
    ]

    @Test("A tone and DTMF digits cross every codec path both ways, at the right frequency and level", arguments: paths)
    func path(_ path: Path) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let relay = try MediaRelay(portRange: 20000...20999)
        let legacyPhone = try TestPhone(codec: .g722, payloadType: 9, telephoneEvent: 101)
        let bridgeKey = path.srtp.map { SRTPKeyMaterial.random($0) }
        let cloudPhone = try TestPhone(codec: path.cloud, payloadType: path.cloudPT, telephoneEvent: 100, sampleRate: path.cloudRate, srtp: path.srtp, peerKey: bridgeKey)
        let legacySocket = try await UDPPeer(group: group)
        let cloudSocket = try await UDPPeer(group: group)

        let legA = try await relay.openLeg(host: "127.0.0.1")
        let legB = try await relay.openLeg(host: "127.0.0.1", alongside: legA)
        #expect(relay.portsInUse == 2 && legA.port != legB.port)
        var configB = MediaLegConfiguration(codec: path.cloud, payloadType: path.cloudPT, dtmf: .telephoneEvent(payloadType: 100), remote: cloudSocket.address)
        if let bridgeKey, let key = cloudPhone.localKey { configB.srtp = .init(local: bridgeKey, remote: key) }
        let bridge = try await relay.bridge(
            legA, MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 101), remote: legacySocket.address),
            legB, configB)

        let legacyAudio = try legacyPhone.audioPackets(AudioAnalysis.tone(frequency: 1000, dBFS: -15, sampleRate: 16000, seconds: 1))
            + legacyPhone.eventPackets("5") + legacyPhone.audioPackets(AudioAnalysis.dtmf("147", sampleRate: 16000))
        let cloudAudio = try cloudPhone.audioPackets(AudioAnalysis.tone(frequency: 600, dBFS: -20, sampleRate: path.cloudRate, seconds: 1))
            + cloudPhone.eventPackets("0") + cloudPhone.audioPackets(AudioAnalysis.dtmf("369", sampleRate: path.cloudRate))
        async let a: Void = legacySocket.stream(legacyAudio, to: legA.localAddress)
        async let b: Void = cloudSocket.stream(cloudAudio, to: legB.localAddress)
        _ = try await (a, b)
        try await Task.sleep(for: .milliseconds(300))

        let atCloud = try cloudPhone.receive(cloudSocket.received)
        let atLegacy = try legacyPhone.receive(legacySocket.received)
        #expect(atCloud.authenticationFailures == 0)
        expectTone(Array(atCloud.pcm.prefix(path.cloudRate)), sampleRate: path.cloudRate, frequency: 1000, level: -15)
        expectTone(Array(atLegacy.pcm.prefix(16000)), sampleRate: 16000, frequency: 600, level: -20)
        #expect(atCloud.digits == "5" && atLegacy.digits == "0")
        #expect(AudioAnalysis.detectDTMF(Array(atCloud.pcm.dropFirst(path.cloudRate)), sampleRate: path.cloudRate) == "147")
        #expect(AudioAnalysis.detectDTMF(Array(atLegacy.pcm.dropFirst(16000)), sampleRate: 16000) == "369")
        let counters = try await bridge.counters(.b)
        #expect(counters.packetsReceived == UInt64(cloudAudio.count) && counters.authenticationFailures == 0)

        await bridge.close()
        #expect(relay.portsInUse == 0, "ports go back to the pool when the call ends")
        relay.shutdown()
        await legacySocket.close()
        await cloudSocket.close()
        try await group.shutdownGracefully()
    }

    @Test("The pool never hands out a port twice; a port held by another process is skipped")
    func ports() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // Someone else holds 21000.
        let squatter = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 21000).get()
        let relay = try MediaRelay(portRange: 21000...21009)
        var legs: [MediaLegSocket] = []
        for _ in 0..<4 { legs.append(try await relay.openLeg(host: "127.0.0.1")) }
        #expect(Set(legs.map(\.port)).count == 4)
        #expect(!legs.map(\.port).contains(21000))
        #expect(legs.allSatisfy { $0.port % 2 == 0 })
        await #expect(throws: MediaRelay.RelayError.self) { _ = try await relay.openLeg(host: "127.0.0.1") }
        for leg in legs { await leg.close() }
        #expect(relay.portsInUse == 0)
        relay.shutdown()
        try await squatter.close()
        try await group.shutdownGracefully()
    }

    @Test("After shutdown nothing hangs: closing a leg returns, opening one fails")
    func shutdown() async throws {
        let relay = try MediaRelay(portRange: 21100...21199)
        let leg = try await relay.openLeg(host: "127.0.0.1")
        relay.shutdown()
        await leg.close()
        #expect(relay.portsInUse == 0)
        await #expect(throws: MediaRelay.RelayError.socket(ESHUTDOWN)) { _ = try await relay.openLeg(host: "127.0.0.1") }
        #expect(relay.portsInUse == 0, "the refused leg's port went back too")
    }
}
