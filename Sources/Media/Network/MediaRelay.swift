import CrashContext
import NetworkAddress
public import NIOCore
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// Owns the RTP sockets of the process: hands out ports from the pool, binds one UDP socket per
/// leg (RTP, and RTCP on the next port unless rtcp-mux), and puts a `MediaBridge` between the two
/// legs of a call once offer/answer is done. Both legs of a call live on one media I/O thread
/// (`MediaIOThread`), so a packet goes from one socket through the bridge to the other without a
/// thread hop or a lock. Calls are spread over the threads round-robin.
public final class MediaRelay: Sendable {
    private let threads: [MediaIOThread]
    private let nextThread = NIOLockedValueBox(0)
    private let pool: NIOLockedValueBox<RTPPortPool>
    private let stopped = NIOLockedValueBox(false)

    public enum RelayError: Error, Sendable, Equatable {
        case noFreePort
        case notOnSameThread
        case badAddress(String)
        case socket(Int32)
    }

    public init(threads: Int = 1, portRange: ClosedRange<Int> = 10000...50000, randomPorts: Bool = false) throws(RTPPortPool.PoolError) {
        self.pool = NIOLockedValueBox(try RTPPortPool(range: portRange, randomized: randomPorts))
        self.threads = (0..<max(1, threads)).map { _ in MediaIOThread() }
    }

    deinit { shutdown() }

    /// Stops the media threads; sockets still open are closed. Idempotent.
    public func shutdown() {
        let first = stopped.withLockedValue { was in
            defer { was = true }
            return !was
        }
        guard first else { return }
        for thread in threads { thread.shutdown() }
    }

    public var portsInUse: Int { pool.withLockedValue { $0.allocatedCount } }

    /// Binds a leg's RTP socket (and RTCP on port + 1) on `host`. Pass the call's other leg as
    /// `alongside` so that both share a thread. Ports another process holds are skipped.
    public func openLeg(host: String, alongside other: MediaLegSocket? = nil, rtcp: Bool = true) async throws -> MediaLegSocket {
        let thread = other?.thread ?? threads[nextThread.withLockedValue { n in
            defer { n = (n + 1) % threads.count }
            return n
        }]
        for _ in 0..<64 {
            let port: Int
            do {
                port = try pool.withLockedValue { try $0.allocate() }
            } catch {
                throw RelayError.noFreePort
            }
            let rtpFD: Int32
            switch MediaIOThread.bindUDP(host: host, port: port) {
            case .success(let fd): rtpFD = fd
            case .failure(.socket(EADDRINUSE)):
                pool.withLockedValue { $0.release(port) }
                continue  // someone else's: try the next one
            case .failure(let error):
                pool.withLockedValue { $0.release(port) }
                throw error
            }
            var rtcpFD: Int32?
            if rtcp {
                switch MediaIOThread.bindUDP(host: host, port: port + 1) {
                case .success(let fd): rtcpFD = fd
                case .failure:
                    close(rtpFD)
                    pool.withLockedValue { $0.release(port) }
                    continue
                }
            }
            do {
                let local = try SocketAddress(ipAddressWithZone: host, port: port)
                return try await thread.submit { [pool] in
                    let rtpEntry = thread.register(rtpFD, isRTCP: false)
                    let rtcpEntry = rtcpFD.map { thread.register($0, isRTCP: true) }
                    return MediaLegSocket(localAddress: local, thread: thread, rtpFD: rtpFD, rtcpFD: rtcpFD, entries: (rtpEntry, rtcpEntry)) {
                        pool.withLockedValue { $0.release(port) }
                    }
                }
            } catch {
                close(rtpFD)
                if let rtcpFD { close(rtcpFD) }
                pool.withLockedValue { $0.release(port) }
                throw error
            }
        }
        throw RelayError.noFreePort
    }

    /// Puts a bridge between two open legs. The bridge runs until `close` on the returned handle.
    public func bridge(
        _ a: MediaLegSocket, _ configA: MediaLegConfiguration, _ b: MediaLegSocket, _ configB: MediaLegConfiguration,
        jitterBufferMax: Duration = .milliseconds(200), delegate: (any MediaBridgeDelegate & Sendable)? = nil, label: String = "a call"
    ) async throws -> MediaBridgeHandle {
        guard a.thread === b.thread else { throw RelayError.notOnSameThread }
        let thread = a.thread
        // What a crash on the media thread names (docs/RELIABILITY.md): the call and the leg,
        // made once here so that a packet costs a copy, not a formatting.
        let contexts = [configA, configB].enumerated().map { side, config in
            Array("media of \(label.prefix(160)), leg \(side == 0 ? "a" : "b") from \(config.remote.ipAddress ?? "?")".utf8)
        }
        return try await thread.submit {
            let box = MediaBridgeBox(a: a, b: b, crashContexts: contexts)
            let bridge = try MediaBridge(a: configA, b: configB, jitterBufferMax: jitterBufferMax, sink: box, now: MediaClock.now())
            bridge.delegate = delegate
            box.install(bridge)
            thread.add(box)
            return MediaBridgeHandle(box: box, thread: thread, a: a, b: b)
        }
    }
}

/// The monotonic clock the socket layer feeds the bridge with (nanoseconds).
enum MediaClock {
    static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }
}

/// One leg's bound sockets. The registration entries are touched only on the leg's thread.
public final class MediaLegSocket: @unchecked Sendable {
    public let localAddress: SocketAddress
    public var port: Int { localAddress.port ?? 0 }
    let thread: MediaIOThread
    let rtpFD: Int32
    let rtcpFD: Int32?
    let entries: (rtp: MediaIOThread.RegisteredSocket, rtcp: MediaIOThread.RegisteredSocket?)
    private let release: @Sendable () -> Void
    private let closed = NIOLockedValueBox(false)

    init(
        localAddress: SocketAddress, thread: MediaIOThread, rtpFD: Int32, rtcpFD: Int32?,
        entries: (rtp: MediaIOThread.RegisteredSocket, rtcp: MediaIOThread.RegisteredSocket?), release: @escaping @Sendable () -> Void
    ) {
        self.localAddress = localAddress
        self.thread = thread
        self.rtpFD = rtpFD
        self.rtcpFD = rtcpFD
        self.entries = entries
        self.release = release
    }

    /// Hands the leg's datagrams to `handler` as its `side` (on the leg's thread).
    func attach(_ handler: any MediaDatagramHandler, as side: MediaLegSide) {
        entries.rtp.box = handler
        entries.rtp.side = side
        entries.rtcp?.box = handler
        entries.rtcp?.side = side
    }

    /// Its datagrams are dropped from now on (on the leg's thread).
    func detach() {
        entries.rtp.box = nil
        entries.rtcp?.box = nil
    }

    /// Sends from the leg's RTP socket, or its RTCP socket (the RTP one with rtcp-mux).
    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, rtcp: Bool) {
        MediaIOThread.send(rtcp ? (rtcpFD ?? rtpFD) : rtpFD, packet, to: address)
    }

    /// Closes the sockets and gives the port back.
    public func close() async {
        let first = closed.withLockedValue { was in
            defer { was = true }
            return !was
        }
        guard first else { return }
        let (thread, rtp, rtcp) = (self.thread, rtpFD, rtcpFD)
        try? await thread.submit {
            thread.unregister(rtp)
            if let rtcp { thread.unregister(rtcp) }
        }
        release()
    }
}

/// A running bridge. Everything on it hops to the bridge's media thread.
public final class MediaBridgeHandle: @unchecked Sendable {
    private let box: MediaBridgeBox
    private let thread: MediaIOThread
    public let a: MediaLegSocket
    public let b: MediaLegSocket

    init(box: MediaBridgeBox, thread: MediaIOThread, a: MediaLegSocket, b: MediaLegSocket) {
        self.box = box
        self.thread = thread
        self.a = a
        self.b = b
    }

    /// Runs `body` with the bridge on its thread (statistics, DTMF injection).
    public func withBridge<T: Sendable>(_ body: @escaping @Sendable (MediaBridge) -> T) async throws -> T {
        let box = self.box
        return try await thread.submit {
            guard let bridge = box.bridge else { throw MediaRelay.RelayError.socket(EBADF) }
            return body(bridge)
        }
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
        let box = self.box
        try await thread.submit { try box.bridge?.update(leg, to: config, now: MediaClock.now()) }
    }

    /// Stops the bridge and closes both legs' sockets.
    public func close() async {
        let (box, thread) = (self.box, self.thread)
        try? await thread.submit {
            box.stop()
            thread.remove(box)
        }
        await a.close()
        await b.close()
    }
}

/// The bridge with its sockets, on their thread: the `MediaPacketSink` that writes to them.
final class MediaBridgeBox: MediaPacketSink, MediaDatagramHandler {
    private(set) var bridge: MediaBridge?
    private let a: MediaLegSocket
    private let b: MediaLegSocket
    /// Per leg, what a crash while handling its packets names.
    let crashContexts: [[UInt8]]

    init(a: MediaLegSocket, b: MediaLegSocket, crashContexts: [[UInt8]] = [[], []]) {
        self.a = a
        self.b = b
        self.crashContexts = crashContexts
    }

    func install(_ bridge: MediaBridge) {
        self.bridge = bridge
        a.attach(self, as: .a)
        b.attach(self, as: .b)
    }

    func stop() {
        a.detach()
        b.detach()
        bridge = nil
    }

    var isActive: Bool { bridge != nil }

    func receive(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: SocketAddress, on side: MediaLegSide, rtcpSocket: Bool, now: UInt64) {
        if rtcpSocket {
            bridge?.receiveRTCP(buffer, length: length, from: source, on: side, now: now)
        } else {
            bridge?.receive(buffer, length: length, from: source, on: side, now: now)
        }
    }

    func dropOversized(on side: MediaLegSide) { bridge?.dropOversized(on: side) }

    /// Transcoding bridges tick every 5 ms (jitter-buffer playout), passthrough ones every 20 ms
    /// (RTCP and injected digits).
    func tick(now: UInt64, everyone: Bool) {
        guard let bridge, everyone || bridge.mode == .transcoding else { return }
        crashContexts[0].withUnsafeBytes { CrashContext.set($0) }
        bridge.tick(now: now)
    }

    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp: Bool) {
        (leg == .a ? a : b).send(packet, to: address, rtcp: rtcp)
    }
}
