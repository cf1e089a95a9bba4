import NIOCore
import Testing
@testable import Media

final class RecordingSink: MediaPacketSink {
    var packets: [MediaLegSide: [[UInt8]]] = [:]
    var destinations: [MediaLegSide: [SocketAddress]] = [:]
    var rtcp: [MediaLegSide: [[UInt8]]] = [:]

    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp isRTCP: Bool) {
        if isRTCP || RTPDemultiplexer.classify(packet) == .rtcp {
            rtcp[leg, default: []].append(Array(packet))
        } else {
            packets[leg, default: []].append(Array(packet))
            destinations[leg, default: []].append(address)
        }
    }
}

final class DigitRecorder: MediaBridgeDelegate {
    var digits: [(Character, Int, MediaLegSide)] = []
    func mediaBridge(_ bridge: MediaBridge, receivedDigit digit: Character, durationMilliseconds: Int, on leg: MediaLegSide) {
        digits.append((digit, durationMilliseconds, leg))
    }
}

/// Two phones and a bridge between them, driven on a simulated clock (20 ms per packet).
final class BridgeRig {
    let legacy: TestPhone
    let cloud: TestPhone
    let sink = RecordingSink()
    let digits = DigitRecorder()
    let bridge: MediaBridge
    let legacyAddress = try! SocketAddress(ipAddress: "192.0.2.10", port: 4000)
    let cloudAddress = try! SocketAddress(ipAddress: "2001:db8::20", port: 5000)
    var now: UInt64 = 1_000_000_000

    /// Leg a: legacy (plain RTP). Leg b: cloud (SRTP when `srtp`, SIP INFO when `cloudDTMF` is nil).
    init(legacy legacyCodec: AudioCodecKind, legacyPT: UInt8, cloud cloudCodec: AudioCodecKind, cloudPT: UInt8,
         cloudDTMF: UInt8? = 100, srtp: SRTPCryptoSuite? = .aesCM128HMACSHA1_80, cloudSampleRate: Int? = nil) throws {
        legacy = try TestPhone(codec: legacyCodec, payloadType: legacyPT, telephoneEvent: 101)
        let bridgeKey = srtp.map { SRTPKeyMaterial.random($0) }
        cloud = try TestPhone(codec: cloudCodec, payloadType: cloudPT, telephoneEvent: cloudDTMF, sampleRate: cloudSampleRate, srtp: srtp, peerKey: bridgeKey)
        let a = MediaLegConfiguration(codec: legacyCodec, payloadType: legacyPT, dtmf: .telephoneEvent(payloadType: 101), remote: legacyAddress)
        var b = MediaLegConfiguration(
            codec: cloudCodec, payloadType: cloudPT, dtmf: cloudDTMF.map { .telephoneEvent(payloadType: $0) } ?? .sipInfo, remote: cloudAddress)
        if let bridgeKey, let cloudKey = cloud.localKey { b.srtp = .init(local: bridgeKey, remote: cloudKey) }
        bridge = try MediaBridge(a: a, b: b, jitterBufferMax: .milliseconds(100), sink: sink, now: now)
        bridge.delegate = digits
    }

    /// Feeds packets into a leg one packet time apart, ticking the bridge as the socket layer does.
    func feed(_ packets: [[UInt8]], on leg: MediaLegSide, from source: SocketAddress? = nil) {
        let source = source ?? (leg == .a ? legacyAddress : cloudAddress)
        for packet in packets {
            var buffer = packet + [UInt8](repeating: 0, count: SRTPSession.maxTrailer)
            buffer.withUnsafeMutableBytes { bridge.receive($0, length: packet.count, from: source, on: leg, now: now) }
            now += 20_000_000
            bridge.tick(now: now)
        }
    }

    func received(on leg: MediaLegSide) throws -> TestPhone.Received {
        try (leg == .a ? legacy : cloud).receive(sink.packets[leg] ?? [])
    }
}

func expectTone(_ pcm: [Int16], sampleRate: Int, frequency: Double, level: Double, sourceLocation: SourceLocation = #_sourceLocation) {
    let steady = pcm.dropFirst(sampleRate / 4)
    #expect(steady.count > sampleRate / 2, "too little audio: \(pcm.count) samples", sourceLocation: sourceLocation)
    #expect(abs(AudioAnalysis.frequency(steady, sampleRate: sampleRate) - frequency) < frequency * 0.01, sourceLocation: sourceLocation)
    #expect(abs(AudioAnalysis.level(steady) - level) < 3, "level \(AudioAnalysis.level(steady)) dB", sourceLocation: sourceLocation)
}

@Suite("Media bridge (simulated clock)")
struct MediaBridgeTests {
    @Test("G.722 RTP ↔ G.722 SRTP is passthrough: same payload, the bridge's SSRC, continuous sequence, re-encrypted")
    func passthrough() throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .g722, cloudPT: 9)
        #expect(rig.bridge.mode == .passthrough)
        let tone = AudioAnalysis.tone(frequency: 1000, dBFS: -15, sampleRate: 16000, seconds: 1)
        let sent = try rig.legacy.audioPackets(tone)
        rig.feed(sent, on: .a)
        let atCloud = try rig.received(on: .b)
        #expect(atCloud.authenticationFailures == 0 && atCloud.headers.count == sent.count)
        #expect(Set(atCloud.headers.map(\.ssrc)) == [rig.bridge.outputSSRC(.b)])
        #expect(zip(atCloud.headers, atCloud.headers.dropFirst()).allSatisfy { $1.sequenceNumber == $0.sequenceNumber &+ 1 && $1.timestamp == $0.timestamp &+ 160 })
        // The G.722 payload is untouched: decoding it gives the tone at full fidelity.
        expectTone(atCloud.pcm, sampleRate: 16000, frequency: 1000, level: -15)
        // Every packet was encrypted on the way (the SRTP tag makes it 10 bytes longer).
        #expect(rig.sink.packets[.b]!.first!.count == sent.first!.count + 10)

        rig.feed(try rig.cloud.audioPackets(AudioAnalysis.tone(frequency: 500, dBFS: -20, sampleRate: 16000, seconds: 1)), on: .b)
        let atLegacy = try rig.received(on: .a)
        expectTone(atLegacy.pcm, sampleRate: 16000, frequency: 500, level: -20)
        #expect(rig.bridge.counters(.b).packetsReceived == 50 && rig.bridge.counters(.a).packetsSent == 50)
    }

    @Test("G.722 ↔ Opus/SRTP transcodes both ways; DTMF events cross with 8 → 48 kHz clock conversion")
    func transcodingOpus() throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .opus, cloudPT: 111, cloudSampleRate: 48000)
        #expect(rig.bridge.mode == .transcoding)
        rig.feed(try rig.legacy.audioPackets(AudioAnalysis.tone(frequency: 1000, dBFS: -15, sampleRate: 16000, seconds: 1)), on: .a)
        rig.feed(rig.legacy.eventPackets("7", frames: 5), on: .a)
        let atCloud = try rig.received(on: .b)
        #expect(atCloud.authenticationFailures == 0)
        expectTone(atCloud.pcm, sampleRate: 48000, frequency: 1000, level: -15)
        #expect(atCloud.digits == "7")
        // 5 frames of 8 kHz (800 ticks) are 4800 ticks at 48 kHz.
        #expect(atCloud.events.last?.event.duration == 4800)
        let audio = atCloud.headers.filter { $0.payloadType == 111 }
        #expect(zip(audio, audio.dropFirst()).allSatisfy { $1.sequenceNumber == $0.sequenceNumber &+ 1 && $1.timestamp == $0.timestamp &+ 960 })

        rig.feed(try rig.cloud.audioPackets(AudioAnalysis.tone(frequency: 700, dBFS: -18, sampleRate: 48000, seconds: 1)), on: .b)
        rig.feed(rig.cloud.eventPackets("#", frames: 4), on: .b)
        let atLegacy = try rig.received(on: .a)
        expectTone(atLegacy.pcm, sampleRate: 16000, frequency: 700, level: -18)
        #expect(atLegacy.digits == "#")
        #expect(atLegacy.events.last?.event.duration == 640)
        #expect(rig.bridge.counters(.a).dtmfEvents == 1 && rig.bridge.counters(.b).dtmfEvents == 1)
    }

    @Test("G.722 ↔ PCMA transcodes with resampling; in-band DTMF survives (spandsp's detector)")
    func transcodingPCMA() throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .pcma, cloudPT: 8, srtp: nil)
        rig.feed(try rig.legacy.audioPackets(AudioAnalysis.tone(frequency: 1000, dBFS: -12, sampleRate: 16000, seconds: 1)
            + AudioAnalysis.dtmf("2580", sampleRate: 16000)), on: .a)
        let atCloud = try rig.received(on: .b)
        expectTone(Array(atCloud.pcm.prefix(8000)), sampleRate: 8000, frequency: 1000, level: -12)
        #expect(AudioAnalysis.detectDTMF(Array(atCloud.pcm.dropFirst(8000)), sampleRate: 8000) == "2580")

        rig.feed(try rig.cloud.audioPackets(AudioAnalysis.dtmf("*19", sampleRate: 8000)), on: .b)
        let atLegacy = try rig.received(on: .a)
        #expect(AudioAnalysis.detectDTMF(atLegacy.pcm, sampleRate: 16000) == "*19")
    }

    @Test("A peer without telephone-event gets digits as SIP INFO, and SIP INFO digits go out as RFC 4733")
    func sipInfo() throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .g722, cloudPT: 9, cloudDTMF: nil)
        rig.feed(rig.legacy.eventPackets("9", frames: 5), on: .a)
        #expect(rig.digits.digits.count == 1)
        #expect(rig.digits.digits.first?.0 == "9" && rig.digits.digits.first?.1 == 100 && rig.digits.digits.first?.2 == .a)
        #expect((rig.sink.packets[.b] ?? []).isEmpty, "no telephone-event toward a SIP INFO peer")

        #expect(rig.bridge.sendDigit("3", durationMilliseconds: 120, on: .a, now: rig.now))
        for _ in 0..<12 {
            rig.now += 20_000_000
            rig.bridge.tick(now: rig.now)
        }
        let atLegacy = try rig.received(on: .a)
        #expect(atLegacy.digits == "3")
        #expect(atLegacy.events.last?.event.duration == 960)
        #expect(atLegacy.headers.first?.marker == true)
        #expect(!rig.bridge.sendDigit("3", durationMilliseconds: 100, on: .b, now: rig.now), "leg b has no telephone-event")
    }

    @Test("Packets from elsewhere, tampered or replayed SRTP, and unknown payload types are dropped and counted")
    func refusals() throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .g722, cloudPT: 9)
        let packets = try rig.cloud.audioPackets(AudioAnalysis.tone(frequency: 440, dBFS: -20, sampleRate: 16000, seconds: 0.2))
        rig.feed([packets[0]], on: .b, from: try SocketAddress(ipAddress: "2001:db8::66", port: 5000))
        var tampered = packets[1]
        tampered[30] ^= 0x80
        rig.feed([tampered], on: .b)
        rig.feed([packets[2], packets[2], packets[3]], on: .b)
        rig.feed([rtpPacket(seq: 1, ts: 0, ssrc: 3, payload: [1, 2, 3], pt: 0)], on: .a)
        #expect(rig.bridge.counters(.a).unknownPayloadType == 1)
        let counters = rig.bridge.counters(.b)
        #expect(counters.wrongSource == 1 && counters.authenticationFailures == 1 && counters.replayed == 1)
        #expect(counters.packetsReceived == 2)
        #expect((rig.sink.packets[.a] ?? []).count == 2, "only the two good packets were played")
    }

    @Test("Symmetric RTP: the bridge answers to the port the peer's packets come from, on the SDP's host only")
    func latching() throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .g722, cloudPT: 9)
        let natted = try SocketAddress(ipAddress: "192.0.2.10", port: 61000)
        rig.feed(try rig.legacy.audioPackets([Int16](repeating: 0, count: 640)), on: .a, from: natted)
        rig.feed(try rig.cloud.audioPackets([Int16](repeating: 0, count: 320)), on: .b)
        #expect(rig.sink.destinations[.a] == [natted])
        #expect(rig.bridge.remoteAddress(.a) == natted)
    }

    @Test("RTCP: reports go out every 5 s, SRTCP on the SRTP leg, and the peer's reports are read")
    func rtcp() throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .g722, cloudPT: 9)
        rig.feed(try rig.legacy.audioPackets(AudioAnalysis.tone(frequency: 440, dBFS: -20, sampleRate: 16000, seconds: 6)), on: .a)
        let plain = try #require(rig.sink.rtcp[.a]?.first)
        let parsed = try plain.withUnsafeBytes { try RTCPPacket.parseCompound($0) }
        guard case .receiverReport(let rr) = parsed[0] else { Issue.record("expected an RR on leg a, got \(parsed[0])"); return }
        #expect(rr.ssrc == rig.bridge.outputSSRC(.a) && rr.reports.first?.ssrc == rig.legacy.ssrc)
        let secure = try #require(rig.sink.rtcp[.b]?.first)
        var buffer = secure
        let inbound = try #require(rig.cloud.inbound)
        let n = try buffer.withUnsafeMutableBytes { try inbound.unprotectRTCP($0, length: secure.count) }
        guard case .senderReport(let sr) = try buffer[..<n].withUnsafeBytes({ try RTCPPacket.parseCompound($0) })[0] else {
            Issue.record("expected an SR on leg b"); return
        }
        // The first report goes out 5 s in, after 250 packets of 20 ms.
        #expect(sr.ssrc == rig.bridge.outputSSRC(.b) && sr.packetCount == 250 && sr.octetCount == 250 * 160)
    }
}

@Suite("Media bridge: renegotiation")
struct MediaBridgeRenegotiationTests {
    @Test("A re-INVITE switching the cloud leg from G.722 to Opus turns passthrough into transcoding; the output stream goes on (same SSRC, next sequence, later timestamps)")
    func codecChange() throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .g722, cloudPT: 9)
        let tone = AudioAnalysis.tone(frequency: 1000, dBFS: -15, sampleRate: 16000, seconds: 1)
        rig.feed(try rig.legacy.audioPackets(tone), on: .a)
        let before = try rig.received(on: .b).headers
        #expect(rig.bridge.mode == .passthrough && before.count == 50)

        // The cloud client re-offers with Opus only (and new keys).
        let opusPhone = try TestPhone(codec: .opus, payloadType: 111, telephoneEvent: 101, sampleRate: 48000, srtp: .aesCM128HMACSHA1_80,
                                      peerKey: nil)
        let bridgeKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
        let listener = try TestPhone(codec: .opus, payloadType: 111, telephoneEvent: 101, sampleRate: 48000, srtp: .aesCM128HMACSHA1_80, peerKey: bridgeKey)
        try rig.bridge.update(.b, to: MediaLegConfiguration(
            codec: .opus, payloadType: 111, dtmf: .telephoneEvent(payloadType: 101), remote: rig.cloudAddress,
            srtp: .init(local: bridgeKey, remote: opusPhone.localKey!)), now: rig.now)
        #expect(rig.bridge.mode == .transcoding)
        rig.sink.packets[.b] = []
        rig.feed(try rig.legacy.audioPackets(tone), on: .a)
        let after = try listener.receive(rig.sink.packets[.b] ?? [])
        #expect(after.authenticationFailures == 0)
        expectTone(after.pcm, sampleRate: 48000, frequency: 1000, level: -15)
        let last = try #require(before.last), first = try #require(after.headers.first)
        #expect(first.ssrc == last.ssrc)
        #expect(first.sequenceNumber == last.sequenceNumber &+ 1)
        #expect(RTPSerialNumber.isNewer(first.timestamp, than: last.timestamp))
        #expect(first.payloadType == 111)
    }
}

@Suite("Media bridge: hold")
struct MediaBridgeHoldTests {
    @Test("A held leg (recvonly from the peer, or c=0.0.0.0) gets nothing; resumed, it gets the same stream on")
    func heldLegGetsNothing() throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .g722, cloudPT: 9, srtp: nil)
        let tone = AudioAnalysis.tone(frequency: 1000, dBFS: -15, sampleRate: 16000, seconds: 1)
        rig.feed(try rig.legacy.audioPackets(tone), on: .a)
        let before = try rig.received(on: .b).headers
        #expect(before.count == 50)

        var held = MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 100), remote: rig.cloudAddress)
        held.sends = false
        try rig.bridge.update(.b, to: held, now: rig.now)
        rig.sink.packets[.b] = []
        rig.feed(try rig.legacy.audioPackets(tone), on: .a)
        #expect((rig.sink.packets[.b] ?? []).isEmpty)
        #expect(rig.bridge.counters(.b).heldBack == 50)

        held.sends = true
        try rig.bridge.update(.b, to: held, now: rig.now)
        rig.feed(try rig.legacy.audioPackets(tone), on: .a)
        let after = try rig.received(on: .b).headers
        #expect(after.count == 50)
        let last = try #require(before.last), first = try #require(after.first)
        #expect(first.ssrc == last.ssrc && first.sequenceNumber == last.sequenceNumber &+ 1)
    }

    @Test("A leg we hold (sendonly from us, inactive): what it still sends is not played")
    func legWeHoldIsNotPlayed() throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: .pcmu, cloudPT: 0, srtp: nil)
        var holding = MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 101), remote: rig.legacyAddress)
        holding.receives = false
        try rig.bridge.update(.a, to: holding, now: rig.now)
        let tone = AudioAnalysis.tone(frequency: 1000, dBFS: -15, sampleRate: 16000, seconds: 0.5)
        rig.feed(try rig.legacy.audioPackets(tone), on: .a)
        #expect(rig.bridge.counters(.a).heldBack == 25)
        #expect(rig.bridge.counters(.a).packetsReceived == 0)
        #expect(rig.bridge.counters(.a).dropped == 0)
    }

    @Test("The party still on the call gets silence at its packet time while the other is held, on one continuous stream, and the silence stops at the resume", arguments: [
        (AudioCodecKind.g722, UInt8(9)), (.pcmu, 0), (.opus, 111),
    ])
    func silenceTowardThePartyStillOnTheCall(_ codec: AudioCodecKind, _ pt: UInt8) throws {
        let rig = try BridgeRig(legacy: .g722, legacyPT: 9, cloud: codec, cloudPT: pt, srtp: nil, cloudSampleRate: codec == .opus ? 48000 : nil)
        var held = MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 101), remote: rig.legacyAddress)
        held.receives = false  // the station is on hold (or said inactive): it sends nothing
        try rig.bridge.update(.a, to: held, now: rig.now)
        for _ in 0..<200 {
            rig.now += 5_000_000
            rig.bridge.tick(now: rig.now)
        }
        let received = try rig.received(on: .b)
        #expect((49...51).contains(received.headers.count), "one packet per 20 ms for 1 s: \(received.headers.count)")
        #expect(Set(received.headers.map(\.ssrc)).count == 1)
        #expect(zip(received.headers, received.headers.dropFirst()).allSatisfy { $1.sequenceNumber == $0.sequenceNumber &+ 1 })
        #expect(AudioAnalysis.level(received.pcm[...]) < -60, "silence: \(AudioAnalysis.level(received.pcm[...])) dBFS")
        #expect((rig.sink.packets[.a] ?? []).isEmpty, "nothing toward the held station")

        held.receives = true
        try rig.bridge.update(.a, to: held, now: rig.now)
        rig.sink.packets[.b] = []
        for _ in 0..<100 {
            rig.now += 5_000_000
            rig.bridge.tick(now: rig.now)
        }
        #expect((rig.sink.packets[.b] ?? []).isEmpty, "resumed: the station's own stream again, no silence of ours")
    }
}
