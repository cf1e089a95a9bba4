import Media
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The three traffic kinds compared with rtpengine, each one call = both directions:
/// plain relay (G.722 RTP ↔ G.722 RTP), RTP→SRTP (G.722 RTP ↔ G.722 SRTP) and transcoding
/// (G.722 RTP ↔ Opus SRTP).
enum RelayScenario: String, CaseIterable {
    case relay = "plain relay"
    case rtpToSRTP = "RTP→SRTP"
    case transcoding = "G.722→Opus"
}

/// Packets for the generator: per scenario, what the legacy side and the cloud side send.
struct ScenarioTraffic {
    let legacy: PacketStream
    let cloud: PacketStream
    let cloudKey: SRTPKeyMaterial

    init(_ scenario: RelayScenario, seconds: Int, opusComplexity: Int) throws {
        let pcm = testSignal(seconds: seconds)
        cloudKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
        legacy = try makeStream(pcm, codec: .g722, payloadType: 9, sampleRate: 16000, key: nil)
        switch scenario {
        case .relay: cloud = try makeStream(pcm, codec: .g722, payloadType: 9, sampleRate: 16000, key: nil)
        case .rtpToSRTP: cloud = try makeStream(pcm, codec: .g722, payloadType: 9, sampleRate: 16000, key: cloudKey)
        case .transcoding:
            // 16 kHz PCM into Opus (the RTP clock is 48 kHz regardless): one packet per 20 ms.
            cloud = try makeStream(pcm, codec: .opus, payloadType: 111, sampleRate: 16000, key: cloudKey, options: .init(opusComplexity: opusComplexity))
        }
    }
}

struct RelayRun {
    var cpuMicrosecondsPerPacket: Double
    var result: LoadGenerator.Result
}

/// Our relay on one media thread, loaded by the generator on the other core.
enum OurRelay {
    static func run(_ scenario: RelayScenario, channels: Int, seconds: Int, opusComplexity: Int) async throws -> RelayRun {
        let traffic = try ScenarioTraffic(scenario, seconds: seconds, opusComplexity: opusComplexity)
        let relay = try MediaRelay(threads: 1, portRange: 30000...49999)
        let generator = LoadGenerator()
        var handles: [MediaBridgeHandle] = []
        var outputOf: [UInt32: Int] = [:]
        var first: MediaLegSocket?
        for _ in 0..<channels {
            let a = try await relay.openLeg(host: "127.0.0.1", alongside: first, rtcp: false)
            let b = try await relay.openLeg(host: "127.0.0.1", alongside: a, rtcp: false)
            first = first ?? a
            let configA = MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 101), remote: generator.address)
            var configB = MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 101), remote: generator.address)
            if scenario != .relay { configB.srtp = .init(local: .random(.aesCM128HMACSHA1_80), remote: traffic.cloudKey) }
            if scenario == .transcoding {
                configB.codec = .opus
                configB.payloadType = 111
                configB.codecOptions = AudioCodecOptions(opusComplexity: opusComplexity)
            }
            let handle = try await relay.bridge(a, configA, b, configB)
            handles.append(handle)
            outputOf[try await handle.withBridge { $0.outputSSRC(.b) }] = generator.streams.count
            generator.streams.append(.init(destination: a.localAddress, packets: traffic.legacy.packets))
            outputOf[try await handle.withBridge { $0.outputSSRC(.a) }] = generator.streams.count
            generator.streams.append(.init(destination: b.localAddress, packets: traffic.cloud.packets))
        }
        let ticks = seconds * 50 - 1
        let probe = handles[0]
        let cpuBefore = try await probe.withBridge { _ in threadCPUNanoseconds() }
        generator.run(ticks: ticks)
        let cpuAfter = try await probe.withBridge { _ in threadCPUNanoseconds() }
        let result = generator.evaluate(outputOf: outputOf, ticks: ticks)
        for handle in handles { await handle.close() }
        relay.shutdown()
        let packets = Double(generator.streams.count * ticks)
        return RelayRun(cpuMicrosecondsPerPacket: Double(cpuAfter - cpuBefore) / 1000 / packets, result: result)
    }
}
