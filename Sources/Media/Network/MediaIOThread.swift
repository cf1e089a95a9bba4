import CrashContext
import NetworkAddress
import CEpoll
import NIOCore
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// The media fast path: one thread with its own epoll set over plain non-blocking UDP sockets,
/// like rtpengine's userspace path. A datagram is read into one scratch buffer, goes through the
/// bridge and out with `sendto`, with no allocation, no channel pipeline and no thread hop.
/// (Signalling stays on SwiftNIO; per-packet channel machinery cost about 20 µs a packet here —
/// see docs/PERFORMANCE.md — which is more than the whole media work.)
///
/// Everything on the thread — sockets, bridges, timers — is touched only from it. Other threads
/// hand it work with `submit`, which queues a closure and wakes the loop through an eventfd.
final class MediaIOThread: @unchecked Sendable {
    private let epollFD: Int32
    private let wakeFD: Int32
    private var thread = pthread_t()
    /// Work for the thread; nil once it has stopped (then `submit` fails at once).
    private let inbox = NIOLockedValueBox<[() -> Void]?>([])
    private var running = true

    /// Loop-confined state.
    private var sockets: [Int32: RegisteredSocket] = [:]
    /// What ticks: the bridges (an anchored stream needs no clock and is not here).
    private var bridges: [ObjectIdentifier: any MediaDatagramHandler] = [:]
    /// The largest datagram the media path takes (an MTU's worth, with room to spare); larger
    /// ones are dropped and counted (`MediaLegCounters.oversized`).
    static let receiveLimit = 2048
    private var scratch = [UInt8](repeating: 0, count: MediaIOThread.receiveLimit + SRTPSession.maxTrailer + 16)
    private static let tickNanoseconds: UInt64 = 5_000_000
    private var nextTick: UInt64 = 0
    private var tickCount: UInt64 = 0

    final class RegisteredSocket {
        weak var box: (any MediaDatagramHandler)?
        var side = MediaLegSide.a
        let isRTCP: Bool

        init(isRTCP: Bool) { self.isRTCP = isRTCP }
    }

    init() {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(epollFD >= 0 && wakeFD >= 0, "epoll/eventfd: errno \(errno)")
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeFD
        epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event)
        let unmanaged = Unmanaged.passRetained(self)
        pthread_create(&thread, nil, { raw in
            let me = Unmanaged<MediaIOThread>.fromOpaque(raw!).takeRetainedValue()
            me.run()
            return nil
        }, unmanaged.toOpaque())
    }

    /// Runs `body` on the thread and returns its result.
    func submit<T: Sendable>(_ body: @escaping () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let queued = enqueue {
                do {
                    continuation.resume(returning: try body())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            if !queued { continuation.resume(throwing: MediaRelay.RelayError.socket(ESHUTDOWN)) }
        }
    }

    @discardableResult
    private func enqueue(_ work: @escaping () -> Void) -> Bool {
        let queued = inbox.withLockedValue { queue -> Bool in
            guard queue != nil else { return false }
            queue!.append(work)
            return true
        }
        if queued {
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
        return queued
    }

    /// Stops the loop (after the work queued before), closes what is left.
    func shutdown() {
        if pthread_equal(pthread_self(), thread) != 0 {
            running = false  // from the thread itself: it ends after this turn, detached
            pthread_detach(thread)
            return
        }
        enqueue { [self] in running = false }
        pthread_join(thread, nil)
    }

    // MARK: - On the thread

    func register(_ fd: Int32, isRTCP: Bool) -> RegisteredSocket {
        let entry = RegisteredSocket(isRTCP: isRTCP)
        sockets[fd] = entry
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = fd
        epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event)
        return entry
    }

    func unregister(_ fd: Int32) {
        guard sockets.removeValue(forKey: fd) != nil else { return }  // closed already (shutdown)
        epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        close(fd)
    }

    func add(_ box: any MediaDatagramHandler) {
        if bridges.isEmpty { nextTick = MediaClock.now() + Self.tickNanoseconds }
        bridges[ObjectIdentifier(box)] = box
    }
    func remove(_ box: any MediaDatagramHandler) { bridges[ObjectIdentifier(box)] = nil }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        nextTick = MediaClock.now() + Self.tickNanoseconds
        while running {
            let now = MediaClock.now()
            // No bridge, no tick: an idle gateway's media thread sleeps until there is work.
            let timeout = bridges.isEmpty ? -1 : nextTick > now ? Int32((nextTick - now + 999_999) / 1_000_000) : 0
            let ready = events.withUnsafeMutableBufferPointer { epoll_wait(epollFD, $0.baseAddress, 64, timeout) }
            if ready > 0 {
                for i in 0..<Int(ready) {
                    let fd = events[i].data.fd
                    if fd == wakeFD {
                        drainInbox()
                    } else {
                        readAll(fd)
                    }
                }
            }
            let after = MediaClock.now()
            if after >= nextTick { tick(after) }
        }
        // Refuse new work; run what was queued meanwhile (it finds the sockets closed).
        let late = inbox.withLockedValue { queue -> [() -> Void] in
            defer { queue = nil }
            return queue ?? []
        }
        for fd in sockets.keys { close(fd) }
        sockets.removeAll()
        for item in late { item() }
        bridges.removeAll()
        close(epollFD)
        close(wakeFD)
    }

    private func drainInbox() {
        var count: UInt64 = 0
        _ = read(wakeFD, &count, 8)
        let work = inbox.withLockedValue { queue -> [() -> Void] in
            defer { queue?.removeAll(keepingCapacity: true) }
            return queue ?? []
        }
        for item in work { item() }
    }

    /// Every 5 ms; each handler decides what it does on which tick.
    private func tick(_ now: UInt64) {
        tickCount &+= 1
        let everyone = tickCount % 4 == 0
        for box in bridges.values {
            box.tick(now: now, everyone: everyone)
        }
        nextTick = now + Self.tickNanoseconds
    }

    /// Reads what the socket holds (up to 16 datagrams, then lets the others have a turn).
    private func readAll(_ fd: Int32) {
        guard let entry = sockets[fd] else { return }
        var storage = sockaddr_storage()
        scratch.withUnsafeMutableBytes { buffer in
            for _ in 0..<16 {
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                // MSG_TRUNC: the datagram's real length, so one larger than the buffer is seen
                // as such instead of being parsed cut short.
                let n = withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, buffer.baseAddress, Self.receiveLimit, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC), $0, &length)
                    }
                }
                guard n > 0 else { return }
                // Before the bridge is in place (media ahead of the answer) packets are dropped.
                guard let box = entry.box, box.isActive else { continue }
                guard n <= Self.receiveLimit else {
                    box.dropOversized(on: entry.side)
                    continue
                }
                let now = MediaClock.now()
                guard let source = Self.address(storage) else { continue }
                box.crashContexts[entry.side.rawValue].withUnsafeBytes { CrashContext.set($0) }
                box.receive(buffer, length: n, from: source, on: entry.side, rtcpSocket: entry.isRTCP, now: now)
            }
        }
    }

    /// The peer's address without formatting it as text (NIO's `SocketAddress(sockaddr_in)`
    /// would, for every packet).
    private static func address(_ storage: sockaddr_storage) -> SocketAddress? {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: "") } }
        case AF_INET6:
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: "") } }
        default:
            return nil
        }
    }

    /// A bound, non-blocking UDP socket, or the errno.
    static func bindUDP(host: String, port: Int) -> Result<Int32, MediaRelay.RelayError> {
        guard let address = try? SocketAddress(ipAddressWithZone: host, port: port) else { return .failure(.badAddress(host)) }
        let family = address.protocol.rawValue
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(.socket(errno)) }
        var size: Int32 = 256 * 1024
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4)
        let bound = address.withSockAddr { bind(fd, $0, socklen_t($1)) }
        guard bound == 0 else {
            let error = errno
            close(fd)
            return .failure(.socket(error))
        }
        return .success(fd)
    }

    /// Sends one datagram; a full socket buffer drops it (UDP), as the kernel would.
    static func send(_ fd: Int32, _ packet: UnsafeRawBufferPointer, to address: SocketAddress) {
        _ = address.withSockAddr { sendto(fd, packet.baseAddress, packet.count, Int32(MSG_DONTWAIT), $0, socklen_t($1)) }
    }
}

/// What the media thread hands a leg's datagrams to, on the thread: a call's bridge (the
/// gateway) or an anchored stream (the core's relay, `MediaAnchorBox`).
protocol MediaDatagramHandler: AnyObject {
    /// Per leg, what a crash while handling its packets names.
    var crashContexts: [[UInt8]] { get }
    /// False until the handler is in place and after it stopped: datagrams are dropped.
    var isActive: Bool { get }
    /// One datagram of `length` bytes at the start of `buffer` (with `SRTPSession.maxTrailer`
    /// bytes of room after it), from the leg's RTP socket or its RTCP socket.
    func receive(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: SocketAddress, on side: MediaLegSide, rtcpSocket: Bool, now: UInt64)
    /// A datagram larger than the receive buffer arrived: dropped, counted.
    func dropOversized(on side: MediaLegSide)
    /// The thread's 5 ms tick; `everyone` on every fourth.
    func tick(now: UInt64, everyone: Bool)
}
