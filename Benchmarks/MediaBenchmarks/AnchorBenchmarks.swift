import Media
import NIOCore

/// The core's embedded anchor (`[media] anchor = "embedded"`, `AnchoredStream`): SRTP in on one
/// leg, SRTP out on the other under the anchor's own key, no codec work. Its baseline in the
/// same run is libsrtp alone doing the same unprotect + protect per packet.
enum AnchorBenchmarks {
    static let peer = try! SocketAddress(ipAddress: "127.0.0.1", port: 4000)

    /// µs per channel-second, in-process: the floor (unprotect with the sender's key, protect
    /// with the anchor's) and `AnchoredStream.receive`, both directions, 50 packets a second each.
    static func inProcess() throws -> CPUBenchmarks.Figures {
        let seconds = CPUBenchmarks.seconds
        let pcm = testSignal(seconds: seconds)
        let keys = (0..<4).map { _ in SRTPKeyMaterial.random(.aesCM128HMACSHA1_80) }  // caller, callee, anchor→caller, anchor→callee
        let caller = try makeStream(pcm, codec: .g722, payloadType: 9, sampleRate: 16000, key: keys[0])
        let callee = try makeStream(pcm, codec: .g722, payloadType: 9, sampleRate: 16000, key: keys[1])
        let frames = caller.packets.count
        let floor = { () throws -> Double in
            let inbound = [try SRTPSession(key: keys[0], direction: .inbound), try SRTPSession(key: keys[1], direction: .inbound)]
            let outbound = [try SRTPSession(key: keys[3], direction: .outbound), try SRTPSession(key: keys[2], direction: .outbound)]
            var buffer = [UInt8](repeating: 0, count: 2048)
            let start = nowNanoseconds()
            for i in 0..<frames {
                for (side, stream) in [caller, callee].enumerated() {
                    try buffer.withUnsafeMutableBytes { raw in
                        stream.packets[i].withUnsafeBytes { raw.copyMemory(from: $0) }
                        let plain = try inbound[side].unprotect(raw, length: stream.packets[i].count)
                        _ = try outbound[side].protect(raw, length: plain)
                    }
                }
            }
            return Double(nowNanoseconds() - start) / 1000 / Double(seconds)
        }
        let anchor = { () throws -> Double in
            let sink = NullSink()
            let stream = try AnchoredStream(
                a: .init(remote: peer, srtp: .init(local: keys[2], remote: keys[0])), b: .init(remote: peer, srtp: .init(local: keys[3], remote: keys[1])), sink: sink)
            var buffer = [UInt8](repeating: 0, count: 2048)
            var now: UInt64 = 1_000_000_000
            let start = nowNanoseconds()
            for i in 0..<frames {
                buffer.withUnsafeMutableBytes { raw in
                    caller.packets[i].withUnsafeBytes { raw.copyMemory(from: $0) }
                    stream.receive(raw, length: caller.packets[i].count, from: peer, on: .a, rtcpSocket: false, now: now)
                    callee.packets[i].withUnsafeBytes { raw.copyMemory(from: $0) }
                    stream.receive(raw, length: callee.packets[i].count, from: peer, on: .b, rtcpSocket: false, now: now)
                }
                now += 20_000_000
            }
            let elapsed = nowNanoseconds() - start
            precondition(sink.count == 2 * frames, "the anchor sent \(sink.count) packets for \(2 * frames)")
            return Double(elapsed) / 1000 / Double(seconds)
        }
        return try CPUBenchmarks.alternate(floor: floor, bridge: anchor)
    }

    /// `channels` anchored calls on one media thread over real sockets, SRTP both ways: each
    /// call's streams carry their own SSRCs (the anchor passes them through), so the generator
    /// tells the calls apart.
    static func overSockets(channels: Int, seconds: Int) async throws -> RelayRun {
        let pcm = testSignal(seconds: seconds)
        let plain = try makeStream(pcm, codec: .g722, payloadType: 9, sampleRate: 16000, key: nil)
        let callerKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80), calleeKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
        let relay = try MediaRelay(threads: 1, portRange: 30000...49999)
        let generator = LoadGenerator()
        var handles: [MediaAnchorHandle] = []
        var outputOf: [UInt32: Int] = [:]
        var first: MediaLegSocket?
        let ticks = seconds * 50 - 1
        for call in 0..<channels {
            let a = try await relay.openLeg(host: "127.0.0.1", alongside: first)
            let b = try await relay.openLeg(host: "127.0.0.1", alongside: a)
            first = first ?? a
            let handle = try await relay.anchor(a, b)
            try await handle.update(.a, to: .init(remote: generator.address, srtp: .init(local: .random(.aesCM128HMACSHA1_80), remote: callerKey)))
            try await handle.update(.b, to: .init(remote: generator.address, srtp: .init(local: .random(.aesCM128HMACSHA1_80), remote: calleeKey)))
            handles.append(handle)
            for (leg, key, ssrc) in [(a, callerKey, UInt32(2 * call + 1)), (b, calleeKey, UInt32(2 * call + 2))] {
                outputOf[ssrc] = generator.streams.count
                generator.streams.append(.init(destination: leg.localAddress, packets: try protect(plain.packets.prefix(ticks), ssrc: ssrc, key: key)))
            }
        }
        let probe = handles[0]
        let cpuBefore = try await probe.onThread { threadCPUNanoseconds() }
        generator.run(ticks: ticks)
        let cpuAfter = try await probe.onThread { threadCPUNanoseconds() }
        let result = generator.evaluate(outputOf: outputOf, ticks: ticks)
        for handle in handles { await handle.close() }
        relay.shutdown()
        return RelayRun(cpuMicrosecondsPerPacket: Double(cpuAfter - cpuBefore) / 1000 / Double(generator.streams.count * ticks), result: result)
    }

    /// `packets` with `ssrc`, protected under `key`.
    static func protect(_ packets: ArraySlice<[UInt8]>, ssrc: UInt32, key: SRTPKeyMaterial) throws -> [[UInt8]] {
        let session = try SRTPSession(key: key, direction: .outbound)
        return try packets.map { packet in
            var bytes = packet + [UInt8](repeating: 0, count: SRTPSession.maxTrailer)
            bytes[8] = UInt8(ssrc >> 24)
            bytes[9] = UInt8(ssrc >> 16 & 0xFF)
            bytes[10] = UInt8(ssrc >> 8 & 0xFF)
            bytes[11] = UInt8(ssrc & 0xFF)
            let length = try bytes.withUnsafeMutableBytes { try session.protect($0, length: packet.count) }
            return Array(bytes[..<length])
        }
    }
}
