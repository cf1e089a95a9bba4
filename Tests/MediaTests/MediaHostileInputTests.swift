import NIOCore
import Testing
@testable import Media

/// What a peer (or anyone who can spoof its address) can send on an answered call: each case
/// here once crashed or stalled the media path, or could have (docs/RELIABILITY.md). The bridge
/// must drop and count, and go on carrying the genuine stream.
@Suite("Media: hostile packets and configurations")
struct MediaHostileInputTests {
    static let peer = try! SocketAddress(ipAddress: "192.0.2.10", port: 4000)

    /// A plain RTP packet with `payload` (not from a codec: any bytes).
    static func packet(pt: UInt8, sequence: UInt16, timestamp: UInt32, ssrc: UInt32 = 0x1234, payload: [UInt8], marker: Bool = false) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 12)
        bytes.withUnsafeMutableBytes {
            RTPHeader(marker: marker, payloadType: pt, sequenceNumber: sequence, timestamp: timestamp, ssrc: ssrc).writeFixed(into: $0)
        }
        return bytes + payload
    }

    /// A rig without SRTP, so that test packets can be written by hand on both legs.
    static func plainRig(legacy: AudioCodecKind, legacyPT: UInt8, cloud: AudioCodecKind, cloudPT: UInt8) throws -> BridgeRig {
        try BridgeRig(legacy: legacy, legacyPT: legacyPT, cloud: cloud, cloudPT: cloudPT, srtp: nil)
    }

    @Test(
        "A payload larger than 120 ms of its codec on a transcoding call is dropped and counted, never decoded (was: Range requires lowerBound <= upperBound)",
        arguments: [
            (AudioCodecKind.g722, UInt8(9), 1500), (.g722, 9, 1281), (.pcmu, 0, 1400), (.pcma, 8, 961), (.pcmu, 0, 2000),
        ])
    func oversizedPayloads(codec: AudioCodecKind, pt: UInt8, size: Int) throws {
        let rig = try Self.plainRig(legacy: codec, legacyPT: pt, cloud: .opus, cloudPT: 111)
        #expect(rig.bridge.mode == .transcoding)
        // Genuine audio first, then the oversized packet in sequence, then genuine audio again.
        let audio = try rig.legacy.audioPackets(AudioAnalysis.tone(frequency: 800, dBFS: -15, sampleRate: codec.nativeSampleRate, seconds: 1.5))
        rig.feed(Array(audio.prefix(25)), on: .a)
        rig.feed([Self.packet(pt: pt, sequence: 60000, timestamp: 1, ssrc: 99, payload: [UInt8](repeating: 0xD5, count: size))], on: .a)
        rig.feed(Array(audio.dropFirst(25)), on: .a)
        let counters = rig.bridge.counters(.a)
        #expect(counters.oversized == 1)
        #expect(counters.packetsReceived == UInt64(audio.count))
        expectTone(try rig.received(on: .b).pcm, sampleRate: 48000, frequency: 800, level: -15)
    }

    @Test("An empty Opus payload is dropped (libopus would conceal 720 ms into a 20 ms queue)")
    func emptyOpusPayload() throws {
        let rig = try Self.plainRig(legacy: .g722, legacyPT: 9, cloud: .opus, cloudPT: 111)
        for n in 0..<5 {
            rig.feed([Self.packet(pt: 111, sequence: UInt16(n), timestamp: UInt32(n * 960), payload: [])], on: .b)
        }
        // Padding that covers the whole payload is an empty payload too.
        var padded = Self.packet(pt: 111, sequence: 5, timestamp: 4800, payload: [0, 0, 0, 4])
        padded[0] |= 0x20
        rig.feed([padded], on: .b)
        #expect(rig.bridge.counters(.b).oversized == 6)
    }

    @Test("A datagram larger than the receive buffer is counted as oversized (the socket layer reports it)")
    func truncatedDatagram() throws {
        let rig = try Self.plainRig(legacy: .g722, legacyPT: 9, cloud: .opus, cloudPT: 111)
        rig.bridge.dropOversized(on: .a)
        #expect(rig.bridge.counters(.a).oversized == 1 && rig.bridge.counters(.a).dropped == 1)
    }

    @Test(
        "Packet times from an offer are checked: 0, negative, huge and, for Opus, illegal frame sizes run at 20 ms; legal ones stay",
        arguments: [
            (AudioCodecKind.g722, 0, 20), (.g722, -20, 20), (.pcmu, 999_999_999_999_999, 20), (.g722, Int.max, 20), (.g722, Int.min, 20),
            (.pcma, 9, 20), (.pcma, 121, 20), (.g722, 30, 30), (.pcmu, 120, 120), (.opus, 30, 20), (.opus, 60, 60), (.opus, 120, 120),
        ])
    func packetTimes(codec: AudioCodecKind, ptime: Int, expected: Int) throws {
        var config = MediaLegConfiguration(codec: codec, payloadType: 96, dtmf: .telephoneEvent(payloadType: 101), remote: Self.peer)
        config.ptime = ptime
        #expect(config.checked.ptime == expected)
        // The bridge takes the raw value and runs the checked one: it builds, transcodes, and a
        // digit sent into the leg ends (with ptime 0 its packet step was 0: an endless loop).
        let other = MediaLegConfiguration(codec: codec == .opus ? .g722 : .opus, payloadType: 97, dtmf: .telephoneEvent(payloadType: 100), remote: Self.peer)
        let sink = RecordingSink()
        let bridge = try MediaBridge(a: config, b: other, sink: sink, now: 1_000_000_000)
        var now: UInt64 = 1_000_000_000
        #expect(bridge.sendDigit("5", durationMilliseconds: 100, on: .a, now: now))
        for _ in 0..<100 {
            now += 5_000_000
            bridge.tick(now: now)
        }
        let events = (sink.packets[.a] ?? []).filter { $0[1] & 0x7F == 101 }
        #expect(events.count >= 3 && events.count < 40, "\(events.count) event packets")
        #expect(events.suffix(3).allSatisfy { $0[13] & 0x80 != 0 }, "three end packets")
    }

    @Test("A telephone-event clock the engine cannot count in makes the leg's digits go by SIP INFO")
    func unusableEventClock() throws {
        for rate in [0, 49, 9_000_000, Int.max] {
            var config = MediaLegConfiguration(codec: .opus, payloadType: 111, dtmf: .telephoneEvent(payloadType: 101), remote: Self.peer)
            config.telephoneEventClockRate = rate
            #expect(config.checked.dtmf == .sipInfo && config.checked.telephoneEventClockRate == nil)
        }
        var baresip = MediaLegConfiguration(codec: .opus, payloadType: 111, dtmf: .telephoneEvent(payloadType: 101), remote: Self.peer)
        baresip.telephoneEventClockRate = 8000
        #expect(baresip.checked.dtmf == .telephoneEvent(payloadType: 101) && baresip.checked.telephoneEventClockRate == 8000)
    }

    @Test("A flood of digit end packets is reported at keypad rate, not once per packet")
    func digitFlood() throws {
        // Cloud takes SIP INFO: every reported digit would be a task, a log line and an INFO.
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .opus, cloudPT: 111, cloudDTMF: nil, srtp: nil)
        for n in 0..<200 {
            // Each packet a new event (new timestamp) that ends at once.
            let event: [UInt8] = [5, 0x80 | 10, 0x03, 0x20]
            var buffer = Self.packet(pt: 101, sequence: UInt16(n), timestamp: UInt32(n * 7 + 1), payload: event) + [UInt8](repeating: 0, count: 64)
            buffer.withUnsafeMutableBytes { rig.bridge.receive($0, length: 16, from: rig.legacyAddress, on: .a, now: rig.now) }
            rig.now += 1_000_000  // a packet a millisecond
        }
        let reported = rig.digits.digits.count
        #expect(reported >= 10 && reported <= 40, "\(reported) digits reported")
        #expect(rig.bridge.counters(.a).digitsThrottled == UInt64(200 - reported))
        // A second later the budget is back: a real keypress (a new event after the flood's) gets through.
        rig.now += 2_000_000_000
        for n in 0..<4 {
            let end: UInt8 = n == 3 ? 0x80 : 0
            var buffer = Self.packet(pt: 101, sequence: UInt16(300 + n), timestamp: 100_000, payload: [7, end | 10, 0x03, 0x20]) + [UInt8](repeating: 0, count: 64)
            buffer.withUnsafeMutableBytes { rig.bridge.receive($0, length: 16, from: rig.legacyAddress, on: .a, now: rig.now) }
            rig.now += 20_000_000
        }
        #expect(rig.digits.digits.last?.0 == "7")
    }

    @Test("RTCP from a host other than the peer's is dropped and counted; a packet of a foreign payload type does not move the latch")
    func sourceChecks() throws {
        let rig = try Self.plainRig(legacy: .g722, legacyPT: 9, cloud: .g722, cloudPT: 9)
        let stranger = try SocketAddress(ipAddress: "192.0.2.99", port: 4001)
        var report: [UInt8] = []
        RTCPPacket.receiverReport(RTCPReceiverReport(ssrc: 7, reports: [])).serialize(into: &report)
        report += [UInt8](repeating: 0, count: 64)
        report.withUnsafeMutableBytes { rig.bridge.receiveRTCP($0, length: 8, from: stranger, on: .a, now: rig.now) }
        #expect(rig.bridge.counters(.a).wrongSource == 1 && rig.bridge.counters(.a).rtcpReceived == 0)
        report.withUnsafeMutableBytes { rig.bridge.receiveRTCP($0, length: 8, from: rig.legacyAddress, on: .a, now: rig.now) }
        #expect(rig.bridge.counters(.a).rtcpReceived == 1)

        // Same host, another port, a payload type nobody negotiated: counted, not latched to.
        let otherPort = try SocketAddress(ipAddress: "192.0.2.10", port: 4999)
        rig.feed([Self.packet(pt: 77, sequence: 1, timestamp: 1, payload: [1, 2, 3])], on: .a, from: otherPort)
        #expect(rig.bridge.remoteAddress(.a) == rig.legacyAddress && rig.bridge.counters(.a).unknownPayloadType == 1)
        // The peer's own stream from there does latch (symmetric RTP).
        rig.feed([Self.packet(pt: 9, sequence: 2, timestamp: 160, payload: [UInt8](repeating: 0, count: 160))], on: .a, from: otherPort)
        #expect(rig.bridge.remoteAddress(.a) == otherPort)
    }

    @Test("Whatever the bytes, a transcoding bridge neither traps nor stops carrying the genuine stream (seeded random packets)")
    func randomPacketsBetweenGenuineOnes() throws {
        var random = SplitMix(seed: 14)
        for (codec, pt) in [(AudioCodecKind.g722, UInt8(9)), (.pcmu, 0), (.pcma, 8)] {
            let rig = try Self.plainRig(legacy: codec, legacyPT: pt, cloud: .opus, cloudPT: 111)
            let audio = try rig.legacy.audioPackets(AudioAnalysis.tone(frequency: 800, dBFS: -15, sampleRate: codec.nativeSampleRate, seconds: 1.0))
            for (index, genuine) in audio.enumerated() {
                rig.feed([genuine], on: .a)
                guard index.isMultiple(of: 5) else { continue }
                // A hostile packet: the genuine header with random fields and a random-size payload.
                let size = Int(random.next() % 2048)
                var hostile = [UInt8](repeating: 0, count: max(12, size))
                for i in hostile.indices { hostile[i] = UInt8(truncatingIfNeeded: random.next()) }
                hostile[0] = 0x80 | (hostile[0] & 0x3F)
                hostile[1] = random.next() % 2 == 0 ? pt : hostile[1]
                var buffer = hostile + [UInt8](repeating: 0, count: SRTPSession.maxTrailer)
                buffer.withUnsafeMutableBytes { rig.bridge.receive($0, length: hostile.count, from: rig.legacyAddress, on: .a, now: rig.now) }
            }
            #expect(try rig.received(on: .b).pcm.count > 24000, "\(codec): audio kept flowing")
        }
    }
}

/// A small deterministic generator for seeded cases (SplitMix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
