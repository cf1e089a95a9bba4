import COpus
import CSRTP
import CSpanDSP
import Media
import NIOCore

/// The codec floor and the bridge's cost per channel-second, without sockets.
///
/// A channel is one call: both directions, 50 frames a second each. The floor is what the C
/// libraries alone cost for the same frames (raw calls, no Swift around them); the bridge figure
/// is `MediaBridge.receive` + `tick` doing the whole job, so bridge − floor is our own work.
/// (SRTP in the floor goes through `SRTPSession`, one call and a status switch over libsrtp.)
enum CPUBenchmarks {
    struct Figures {
        var floorMicrosecondsPerChannelSecond: Double
        var bridgeMicrosecondsPerChannelSecond: Double
        var ratio: Double { bridgeMicrosecondsPerChannelSecond / floorMicrosecondsPerChannelSecond }
        /// Our own work per packet per leg (each frame is two packets in, two out).
        var overheadMicrosecondsPerPacket: Double { (bridgeMicrosecondsPerChannelSecond - floorMicrosecondsPerChannelSecond) / 100 }
    }

    static let peer = try! SocketAddress(ipAddress: "127.0.0.1", port: 4000)
    static let seconds = 10

    /// G.722 RTP (legacy) ↔ G.722 SRTP (cloud): passthrough, only SRTP work.
    static func passthrough() throws -> Figures {
        let pcm = testSignal(seconds: seconds)
        let cloudKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80), bridgeKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
        let legacy = try makeStream(pcm, codec: .g722, payloadType: 9, sampleRate: 16000, key: nil)
        let cloud = try makeStream(pcm, codec: .g722, payloadType: 9, sampleRate: 16000, key: cloudKey)
        let frames = legacy.packets.count

        // Floor: protect the legacy packet for the cloud, unprotect the cloud packet.
        let floor = { () throws -> Double in
            let protectSession = try SRTPSession(key: bridgeKey, direction: .outbound)
            let unprotectSession = try SRTPSession(key: cloudKey, direction: .inbound)
            var buffer = [UInt8](repeating: 0, count: 2048)
            let start = nowNanoseconds()
            for i in 0..<frames {
                try buffer.withUnsafeMutableBytes { raw in
                    legacy.packets[i].withUnsafeBytes { raw.copyMemory(from: $0) }
                    _ = try protectSession.protect(raw, length: legacy.packets[i].count)
                    cloud.packets[i].withUnsafeBytes { raw.copyMemory(from: $0) }
                    _ = try unprotectSession.unprotect(raw, length: cloud.packets[i].count)
                }
            }
            return Double(nowNanoseconds() - start) / 1000 / Double(seconds)
        }
        return try alternate(floor: floor) {
            try runBridge(
                a: MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 101), remote: peer),
                b: MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 100), remote: peer,
                                         srtp: .init(local: bridgeKey, remote: cloudKey)),
                legacy: legacy, cloud: cloud)
        }
    }

    /// G.722 RTP (legacy) ↔ Opus SRTP (cloud): transcoding both ways.
    static func transcoding(opusComplexity: Int) throws -> Figures {
        let pcm = testSignal(seconds: seconds)
        let options = AudioCodecOptions(opusComplexity: opusComplexity)
        let cloudKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80), bridgeKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
        let legacy = try makeStream(pcm, codec: .g722, payloadType: 9, sampleRate: 16000, key: nil)
        let cloud = try makeStream(pcm, codec: .opus, payloadType: 111, sampleRate: 16000, key: cloudKey, options: options)
        let frames = legacy.packets.count

        let floor = { () throws -> Double in
            var status: Int32 = 0
            let g722Decoder = g722_decode_init(nil, 64000, 0)!, g722Encoder = g722_encode_init(nil, 64000, 0)!
            let opusEncoder = opus_encoder_create(16000, 1, OPUS_APPLICATION_VOIP, &status)!
            _ = symphony_opus_encoder_set(opusEncoder, OPUS_SET_COMPLEXITY_REQUEST, Int32(opusComplexity))
            _ = symphony_opus_encoder_set(opusEncoder, OPUS_SET_BITRATE_REQUEST, Int32(options.opusBitrate))
            _ = symphony_opus_encoder_set(opusEncoder, OPUS_SET_INBAND_FEC_REQUEST, 1)
            _ = symphony_opus_encoder_set(opusEncoder, OPUS_SET_PACKET_LOSS_PERC_REQUEST, Int32(options.opusExpectedLossPercent))
            let opusDecoder = opus_decoder_create(16000, 1, &status)!
            defer {
                g722_decode_free(g722Decoder); g722_encode_free(g722Encoder)
                opus_encoder_destroy(opusEncoder); opus_decoder_destroy(opusDecoder)
            }
            let protectSession = try SRTPSession(key: bridgeKey, direction: .outbound)
            let unprotectSession = try SRTPSession(key: cloudKey, direction: .inbound)
            var pcmBuffer = [Int16](repeating: 0, count: 960)
            var out = [UInt8](repeating: 0, count: 2048)
            var inBuffer = [UInt8](repeating: 0, count: 2048)
            let start = nowNanoseconds()
            for i in 0..<frames {
                // Legacy → cloud: G.722 decode, Opus encode, SRTP protect.
                let g722 = legacy.packets[i]
                g722.withUnsafeBufferPointer { p in
                    _ = g722_decode(g722Decoder, &pcmBuffer, p.baseAddress! + 12, Int32(p.count - 12))
                }
                let n = out.withUnsafeMutableBufferPointer { o in opus_encode(opusEncoder, pcmBuffer, 320, o.baseAddress! + 12, 1400) }
                _ = try out.withUnsafeMutableBytes { raw in
                    RTPHeader(payloadType: 111, sequenceNumber: UInt16(truncatingIfNeeded: i), timestamp: UInt32(i * 960), ssrc: 1).writeFixed(into: raw)
                    return try protectSession.protect(raw, length: 12 + Int(n))
                }
                // Cloud → legacy: SRTP unprotect, Opus decode, G.722 encode.
                let opus = cloud.packets[i]
                let plain = try inBuffer.withUnsafeMutableBytes { raw in
                    opus.withUnsafeBytes { raw.copyMemory(from: $0) }
                    return try unprotectSession.unprotect(raw, length: opus.count)
                }
                inBuffer.withUnsafeBufferPointer { p in
                    _ = opus_decode(opusDecoder, p.baseAddress! + 12, Int32(plain - 12), &pcmBuffer, 960, 0)
                }
                out.withUnsafeMutableBufferPointer { o in _ = g722_encode(g722Encoder, o.baseAddress! + 12, pcmBuffer, 320) }
            }
            return Double(nowNanoseconds() - start) / 1000 / Double(seconds)
        }
        return try alternate(floor: floor) {
            try runBridge(
                a: MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 101), remote: peer),
                b: MediaLegConfiguration(codec: .opus, payloadType: 111, dtmf: .telephoneEvent(payloadType: 101), remote: peer,
                                         srtp: .init(local: bridgeKey, remote: cloudKey), codecOptions: options),
                legacy: legacy, cloud: cloud)
        }
    }

    /// Floor and bridge measured in turn, 7 times each, so that the machine's drift hits both
    /// alike; the medians.
    static func alternate(floor: () throws -> Double, bridge: () throws -> Double) throws -> Figures {
        var floors: [Double] = [], bridges: [Double] = []
        for _ in 0..<7 {
            floors.append(try floor())
            bridges.append(try bridge())
        }
        return Figures(floorMicrosecondsPerChannelSecond: median(floors), bridgeMicrosecondsPerChannelSecond: median(bridges))
    }

    /// µs per channel-second through a MediaBridge: both legs' packets in, ticks as the socket
    /// layer gives them.
    static func runBridge(a: MediaLegConfiguration, b: MediaLegConfiguration, legacy: PacketStream, cloud: PacketStream) throws -> Double {
        let sink = NullSink()
        var now: UInt64 = 1_000_000_000
        let bridge = try MediaBridge(a: a, b: b, sink: sink, now: now)
        var buffer = [UInt8](repeating: 0, count: 2048)
        let start = nowNanoseconds()
        for i in 0..<legacy.packets.count {
            buffer.withUnsafeMutableBytes { raw in
                legacy.packets[i].withUnsafeBytes { raw.copyMemory(from: $0) }
                bridge.receive(raw, length: legacy.packets[i].count, from: peer, on: .a, now: now)
                cloud.packets[i].withUnsafeBytes { raw.copyMemory(from: $0) }
                bridge.receive(raw, length: cloud.packets[i].count, from: peer, on: .b, now: now)
            }
            now += 20_000_000
            bridge.tick(now: now)
        }
        let elapsed = nowNanoseconds() - start
        precondition(sink.count >= 2 * legacy.packets.count - 4, "the bridge sent \(sink.count) packets for \(2 * legacy.packets.count)")
        return Double(elapsed) / 1000 / Double(seconds)
    }
}
