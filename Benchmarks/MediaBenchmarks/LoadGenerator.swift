import Media
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Plays many RTP streams from one UDP socket in real time (one packet per stream every 20 ms)
/// and records what comes back: enough to measure loss, lateness and one-way latency through a
/// relay, ours or rtpengine. Runs on its own threads, off the relay's core.
final class LoadGenerator: @unchecked Sendable {
    struct Stream {
        var destination: SocketAddress
        var packets: [[UInt8]]
    }

    let fd: Int32
    let port: Int
    var streams: [Stream] = []
    /// Send times, [stream][tick].
    private(set) var sendTimes: [[UInt64]] = []
    /// What came back: arrival time, SSRC, sequence number.
    private(set) var arrivals: [(at: UInt64, ssrc: UInt32, sequence: UInt16)] = []
    private var receiving = true

    init() {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var size: Int32 = 16 << 20
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, 4)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4)
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let socketFD = fd
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketFD, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketFD, $0, &length) } }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }

    var address: SocketAddress { try! SocketAddress(ipAddress: "127.0.0.1", port: port) }

    /// Sends `ticks` rounds and keeps receiving until 300 ms after the last; blocks until done.
    func run(ticks: Int) {
        sendTimes = Array(repeating: [UInt64](repeating: 0, count: ticks), count: streams.count)
        arrivals = []
        arrivals.reserveCapacity(streams.count * ticks)
        receiving = true
        let receiver = spawnThread { [self] in receiveLoop() }
        let start = nowNanoseconds() + 20_000_000
        var destinations = streams.map { stream -> sockaddr_in in
            guard case .v4(let a) = stream.destination else { fatalError("IPv4 only") }
            return a.address
        }
        // Calls are not in phase: the streams are spread over the 20 ms in 1 ms slots.
        let slots = 20
        for tick in 0..<ticks {
            for slot in 0..<slots {
                sleepUntil(start + UInt64(tick) * 20_000_000 + UInt64(slot) * 1_000_000)
                for s in stride(from: slot, to: streams.count, by: slots) {
                    sendTimes[s][tick] = nowNanoseconds()
                    send(streams[s].packets[tick % streams[s].packets.count], to: &destinations[s])
                }
            }
        }
        sleepUntil(nowNanoseconds() + 300_000_000)
        receiving = false
        pthread_join(receiver, nil)
    }

    private func send(_ packet: [UInt8], to destination: inout sockaddr_in) {
        _ = packet.withUnsafeBytes { bytes in
            withUnsafePointer(to: &destination) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    private func receiveLoop() {
        var buffer = [UInt8](repeating: 0, count: 2048)
        while receiving {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 2048, 0) }
            guard n >= 12 else { continue }
            let at = nowNanoseconds()
            guard buffer[1] < 192 || buffer[1] > 223 else { continue }  // RTCP
            let sequence = UInt16(buffer[2]) << 8 | UInt16(buffer[3])
            let ssrc = UInt32(buffer[8]) << 24 | UInt32(buffer[9]) << 16 | UInt32(buffer[10]) << 8 | UInt32(buffer[11])
            arrivals.append((at, ssrc, sequence))
        }
    }

    struct Result {
        var expected: Int
        var received: Int
        var late: Int
        var latenciesMicroseconds: [Double]
        var lostOrLatePercent: Double { Double(expected - received + late) * 100 / Double(max(1, expected)) }
    }

    /// Matches arrivals to sends: `outputOf[ssrc] = stream` says which input stream an output SSRC
    /// carries; the first packet seen on an SSRC is the output of tick `firstTick` (0 normally).
    func evaluate(outputOf: [UInt32: Int], ticks: Int, lateAfter: UInt64 = 20_000_000) -> Result {
        var firstSequence: [UInt32: UInt16] = [:]
        var latencies: [Double] = []
        latencies.reserveCapacity(arrivals.count)
        var received = 0, late = 0
        for arrival in arrivals {
            guard let stream = outputOf[arrival.ssrc] else { continue }
            let first = firstSequence[arrival.ssrc] ?? arrival.sequence
            firstSequence[arrival.ssrc] = first
            let tick = Int(arrival.sequence &- first)
            guard tick < ticks else { continue }
            received += 1
            let latency = arrival.at > sendTimes[stream][tick] ? arrival.at - sendTimes[stream][tick] : 0
            if latency > lateAfter { late += 1 }
            latencies.append(Double(latency) / 1000)
        }
        return Result(expected: outputOf.count * ticks, received: received, late: late, latenciesMicroseconds: latencies.sorted())
    }
}

func sleepUntil(_ deadline: UInt64) {
    while true {
        let now = nowNanoseconds()
        guard now < deadline else { return }
        var ts = timespec(tv_sec: Int((deadline - now) / 1_000_000_000), tv_nsec: Int((deadline - now) % 1_000_000_000))
        nanosleep(&ts, nil)
    }
}

/// A plain pthread running `body` (the generator must not share the relay's event loop).
func spawnThread(_ body: @escaping () -> Void) -> pthread_t {
    final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    pthread_create(&thread, nil, { raw in
        let box = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! Box
        box.body()
        return nil
    }, box)
    return thread
}

/// Lets the process open thousands of sockets (capacity runs).
func raiseFileLimit() {
    var limit = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
}
