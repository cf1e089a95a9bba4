public import NIOCore
import NIOPosix
import NIOConcurrencyHelpers

/// Owns the RTP sockets of the process: hands out ports from the pool, binds one UDP socket per
/// leg (RTP, and RTCP on the next port unless rtcp-mux), and puts a `MediaBridge` between the two
/// legs of a call once offer/answer is done. Both legs of a call live on one event loop, so a
/// packet goes from one socket through the bridge to the other without a thread hop or a lock.
public final class MediaRelay: Sendable {
    public let group: any EventLoopGroup
    private let pool: NIOLockedValueBox<RTPPortPool>

    public enum RelayError: Error, Sendable {
        case noFreePort
        case notOnSameEventLoop
    }

    public init(group: any EventLoopGroup, portRange: ClosedRange<Int> = 10000...50000) throws(RTPPortPool.PoolError) {
        self.group = group
        self.pool = NIOLockedValueBox(try RTPPortPool(range: portRange))
    }

    public var portsInUse: Int { pool.withLockedValue { $0.allocatedCount } }

    /// Binds a leg's RTP socket (and RTCP on port + 1) on `host`, on the given event loop (pass
    /// the loop of the call's other leg, or nil for a new call). Retries on ports another
    /// process holds.
    public func openLeg(host: String, on loop: (any EventLoop)? = nil, rtcp: Bool = true) async throws -> MediaLegSocket {
        let loop = loop ?? group.next()
        for _ in 0..<64 {
            let port: Int
            do {
                port = try pool.withLockedValue { try $0.allocate() }
            } catch {
                throw RelayError.noFreePort
            }
            do {
                let socket = try await MediaLegSocket.bind(host: host, port: port, rtcp: rtcp, on: loop) { [pool] in
                    pool.withLockedValue { $0.release(port) }
                }
                return socket
            } catch {
                pool.withLockedValue { $0.release(port) }
                continue  // in use by someone else: try the next one
            }
        }
        throw RelayError.noFreePort
    }

    /// Puts a bridge between two open legs. The bridge runs until `close` on the returned handle.
    public func bridge(
        _ a: MediaLegSocket, _ configA: MediaLegConfiguration, _ b: MediaLegSocket, _ configB: MediaLegConfiguration,
        jitterBufferMax: Duration = .milliseconds(200), delegate: (any MediaBridgeDelegate & Sendable)? = nil
    ) async throws -> MediaBridgeHandle {
        guard a.loop === b.loop else { throw RelayError.notOnSameEventLoop }
        let loop = a.loop
        return try await loop.submit {
            let box = MediaBridgeBox(a: a, b: b, loop: loop)
            let bridge = try MediaBridge(a: configA, b: configB, jitterBufferMax: jitterBufferMax, sink: box, now: MediaClock.now())
            bridge.delegate = delegate
            box.install(bridge)
            return MediaBridgeHandle(box: NIOLoopBound(box, eventLoop: loop), a: a, b: b)
        }.get()
    }
}

/// The monotonic clock the socket layer feeds the bridge with (nanoseconds).
enum MediaClock {
    static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }
}

/// One leg's bound sockets.
public final class MediaLegSocket: Sendable {
    public let localAddress: SocketAddress
    public var port: Int { localAddress.port ?? 0 }
    let loop: any EventLoop
    let rtp: any Channel
    let rtcp: (any Channel)?
    let handler: NIOLoopBound<RTPInboundHandler>
    private let release: @Sendable () -> Void
    private let closed = NIOLockedValueBox(false)

    private init(localAddress: SocketAddress, loop: any EventLoop, rtp: any Channel, rtcp: (any Channel)?, handler: NIOLoopBound<RTPInboundHandler>, release: @escaping @Sendable () -> Void) {
        self.localAddress = localAddress
        self.loop = loop
        self.rtp = rtp
        self.rtcp = rtcp
        self.handler = handler
        self.release = release
    }

    static func bind(host: String, port: Int, rtcp wantRTCP: Bool, on loop: any EventLoop, release: @escaping @Sendable () -> Void) async throws -> MediaLegSocket {
        let handler = try await loop.submit { NIOLoopBound(RTPInboundHandler(), eventLoop: loop) }.get()
        func bootstrap(rtcp: Bool) -> DatagramBootstrap {
            DatagramBootstrap(group: loop)
                .channelOption(.socketOption(.so_reuseaddr), value: 0)
                .channelOption(.socketOption(.so_rcvbuf), value: 256 * 1024)
                .channelOption(.maxMessagesPerRead, value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let inbound = handler.value
                        try channel.pipeline.syncOperations.addHandler(rtcp ? RTCPInboundHandler(inbound) as any ChannelHandler : inbound)
                    }
                }
        }
        let rtp = try await bootstrap(rtcp: false).bind(host: host, port: port).get()
        var rtcpChannel: (any Channel)?
        if wantRTCP {
            do {
                rtcpChannel = try await bootstrap(rtcp: true).bind(host: host, port: port + 1).get()
            } catch {
                try? await rtp.close()
                throw error
            }
        }
        guard let local = rtp.localAddress else {
            try? await rtp.close()
            throw MediaRelay.RelayError.noFreePort
        }
        return MediaLegSocket(localAddress: local, loop: loop, rtp: rtp, rtcp: rtcpChannel, handler: handler, release: release)
    }

    /// Closes the sockets and gives the port back.
    public func close() async {
        let first = closed.withLockedValue { was in
            defer { was = true }
            return !was
        }
        guard first else { return }
        try? await rtp.close()
        try? await rtcp?.close()
        release()
    }
}

/// A running bridge. Everything on it hops to the bridge's event loop.
public final class MediaBridgeHandle: Sendable {
    let box: NIOLoopBound<MediaBridgeBox>
    public let a: MediaLegSocket
    public let b: MediaLegSocket

    init(box: NIOLoopBound<MediaBridgeBox>, a: MediaLegSocket, b: MediaLegSocket) {
        self.box = box
        self.a = a
        self.b = b
    }

    /// Runs `body` with the bridge on its event loop (statistics, DTMF injection).
    public func withBridge<T: Sendable>(_ body: @escaping @Sendable (MediaBridge) -> T) async throws -> T {
        try await box.eventLoop.submit { [box] in body(box.value.bridge!) }.get()
    }

    /// Sends a digit into a leg (it came as SIP INFO on the other one).
    public func sendDigit(_ digit: Character, durationMilliseconds: Int, on leg: MediaLegSide) async throws -> Bool {
        try await withBridge { $0.sendDigit(digit, durationMilliseconds: durationMilliseconds, on: leg, now: MediaClock.now()) }
    }

    public func counters(_ leg: MediaLegSide) async throws -> MediaLegCounters {
        try await withBridge { $0.counters(leg) }
    }

    /// A leg was renegotiated (re-INVITE): see `MediaBridge.update`.
    public func update(_ leg: MediaLegSide, to config: MediaLegConfiguration) async throws {
        try await box.eventLoop.submit { [box] in try box.value.update(leg, to: config) }.get()
    }

    /// Stops the bridge and closes both legs' sockets.
    public func close() async {
        try? await box.eventLoop.submit { [box] in box.value.stop() }.get()
        await a.close()
        await b.close()
    }
}

/// The bridge with its sockets, on their event loop: the `MediaPacketSink` that writes to the
/// channels, and the timer that ticks the bridge.
final class MediaBridgeBox: MediaPacketSink {
    private(set) var bridge: MediaBridge?
    private let a: MediaLegSocket
    private let b: MediaLegSocket
    private let loop: any EventLoop
    private var timer: RepeatedTask?

    init(a: MediaLegSocket, b: MediaLegSocket, loop: any EventLoop) {
        self.a = a
        self.b = b
        self.loop = loop
    }

    func install(_ bridge: MediaBridge) {
        self.bridge = bridge
        a.handler.value.attach(bridge, side: .a)
        b.handler.value.attach(bridge, side: .b)
        startTimer()
    }

    func update(_ leg: MediaLegSide, to config: MediaLegConfiguration) throws {
        guard let bridge else { return }
        try bridge.update(leg, to: config, now: MediaClock.now())
        startTimer()
    }

    /// Transcoding plays out of a jitter buffer; passthrough only needs the timer for RTCP and
    /// injected digits (paced at the packet time).
    private func startTimer() {
        guard let bridge else { return }
        timer?.cancel()
        let interval: TimeAmount = bridge.mode == .transcoding ? .milliseconds(5) : .milliseconds(20)
        let loopBound = NIOLoopBound(self, eventLoop: loop)
        timer = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            loopBound.value.bridge?.tick(now: MediaClock.now())
        }
    }

    func stop() {
        timer?.cancel()
        timer = nil
        a.handler.value.detach()
        b.handler.value.detach()
        bridge = nil
    }

    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp: Bool) {
        let socket = leg == .a ? a : b
        let channel = rtcp ? (socket.rtcp ?? socket.rtp) : socket.rtp
        var buffer = channel.allocator.buffer(capacity: packet.count)
        buffer.writeBytes(packet)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: buffer), promise: nil)
    }
}

/// Thin: copies the datagram into a scratch buffer with room for the SRTP trailer and hands it
/// to the bridge. Packets before the bridge is attached (early media before the answer) are
/// dropped.
final class RTPInboundHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private var bridge: MediaBridge?
    private var side = MediaLegSide.a
    private var scratch = [UInt8](repeating: 0, count: 2048 + SRTPSession.maxTrailer)
    private(set) var droppedBeforeBridge = 0

    func attach(_ bridge: MediaBridge, side: MediaLegSide) {
        self.bridge = bridge
        self.side = side
    }

    func detach() { bridge = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deliver(unwrapInboundIn(data), rtcp: false)
    }

    func deliver(_ envelope: AddressedEnvelope<ByteBuffer>, rtcp: Bool) {
        guard let bridge else {
            droppedBeforeBridge += 1
            return
        }
        let length = envelope.data.readableBytes
        guard length > 0, length <= 2048 else { return }
        let side = self.side
        scratch.withUnsafeMutableBytes { raw in
            envelope.data.withUnsafeReadableBytes { raw.copyMemory(from: $0) }
            if rtcp {
                bridge.receiveRTCP(raw, length: length, on: side, now: MediaClock.now())
            } else {
                bridge.receive(raw, length: length, from: envelope.remoteAddress, on: side, now: MediaClock.now())
            }
        }
    }
}

/// The RTCP socket of a leg without rtcp-mux: same bridge, RTCP entry point.
final class RTCPInboundHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let rtp: RTPInboundHandler

    init(_ rtp: RTPInboundHandler) { self.rtp = rtp }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        rtp.deliver(unwrapInboundIn(data), rtcp: true)
    }
}
