import Testing
@testable import Media

@Suite("RTP and RTCP (RFC 3550)")
struct RTPPacketTests {
    @Test("Serial arithmetic wraps for sequence numbers and timestamps")
    func serialArithmetic() {
        #expect(RTPSerialNumber.isNewer(UInt16(2), than: 65534))
        #expect(!RTPSerialNumber.isNewer(UInt16(65534), than: 2))
        #expect(RTPSerialNumber.distance(from: UInt16(65535), to: 0) == 1)
        #expect(RTPSerialNumber.distance(from: UInt32(0xFFFF_FF00), to: 0x100) == 0x200)
        #expect(RTPSerialNumber.isNewer(UInt32(5), than: 0xFFFF_FFF0))
    }

    @Test("Header parses, rewrites and round-trips; padding, CSRCs and extension are skipped")
    func header() throws {
        // V=2 P=1 X=1 CC=1, M=1 PT=9, seq 0x1234, ts 0xDEADBEEF, SSRC 0x01020304, one CSRC,
        // a one-word extension, 3 payload bytes, 2 bytes of padding.
        let packet: [UInt8] = [0xB1, 0x89, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4,
                               9, 9, 9, 9, 0xBE, 0xDE, 0, 1, 7, 7, 7, 7, 0xA, 0xB, 0xC, 0, 2]
        let header = try packet.withUnsafeBytes { try RTPHeader.parse($0) }
        #expect(header.marker && header.payloadType == 9)
        #expect(header.sequenceNumber == 0x1234 && header.timestamp == 0xDEAD_BEEF && header.ssrc == 0x0102_0304)
        #expect(header.headerLength == 24 && header.paddingLength == 2)
        #expect(header.payloadRange(packetLength: packet.count) == 24..<27)

        var copy = packet
        copy.withUnsafeMutableBytes { RTPHeader.rewrite($0, marker: false, payloadType: 111, sequenceNumber: 7, timestamp: 960, ssrc: 42) }
        let rewritten = try copy.withUnsafeBytes { try RTPHeader.parse($0) }
        #expect(!rewritten.marker && rewritten.payloadType == 111 && rewritten.sequenceNumber == 7)
        #expect(rewritten.timestamp == 960 && rewritten.ssrc == 42 && rewritten.headerLength == 24)

        var fixed = [UInt8](repeating: 0, count: 12)
        let made = RTPHeader(marker: true, payloadType: 0, sequenceNumber: 65535, timestamp: 1, ssrc: 0xFFFF_FFFF)
        fixed.withUnsafeMutableBytes { made.writeFixed(into: $0) }
        #expect(try fixed.withUnsafeBytes { try RTPHeader.parse($0) } == made)
    }

    @Test("Malformed RTP is refused", arguments: [
        ([UInt8](repeating: 0x80, count: 11), RTPParseError.tooShort),
        ([0x40] + [UInt8](repeating: 0, count: 11), .badVersion),
        ([0x8F] + [UInt8](repeating: 0, count: 20), .tooShort),  // 15 CSRCs announced
        ([0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], .badPadding),  // padding count 0
        ([0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200], .badPadding),
    ])
    func malformed(bytes: [UInt8], error: RTPParseError) {
        #expect(throws: error) { try bytes.withUnsafeBytes { try RTPHeader.parse($0) } }
    }

    @Test("RTP and RTCP on one port are told apart by the packet type (RFC 5761 §4)")
    func demultiplex() {
        #expect([UInt8]([0x80, 0x09]).withUnsafeBytes { RTPDemultiplexer.classify($0) } == .rtp)
        #expect([UInt8]([0x80, 0xE0]).withUnsafeBytes { RTPDemultiplexer.classify($0) } == .rtp)  // marker + PT 96
        #expect([UInt8]([0x81, 200]).withUnsafeBytes { RTPDemultiplexer.classify($0) } == .rtcp)
        #expect([UInt8]([0x80, 223]).withUnsafeBytes { RTPDemultiplexer.classify($0) } == .rtcp)
        #expect([UInt8]([0x16, 0x03]).withUnsafeBytes { RTPDemultiplexer.classify($0) } == .other)  // DTLS/STUN
    }

    @Test("Sequence tracking: probation, wrap-around cycles, late packets, restart after a jump (A.1)")
    func sequenceTracker() {
        var tracker = RTPSequenceTracker()
        #expect(tracker.update(65534) == .probation)
        #expect(tracker.update(65535) == .accepted(extended: 65535))
        #expect(tracker.update(0) == .accepted(extended: 65536))
        #expect(tracker.update(1) == .accepted(extended: 65537))
        #expect(tracker.update(65535) == .late)
        #expect(tracker.extended(late: 65535) == 65535)
        #expect(tracker.update(1) == .late)  // duplicate
        #expect(tracker.update(10) == .accepted(extended: 65546))  // a gap of 8 is loss, not a jump
        #expect(tracker.update(20000) == .jumped)
        #expect(tracker.update(20001) == .accepted(extended: 20001))  // confirmed: the source restarted
        #expect(tracker.baseSequence == 20001)
    }

    @Test("Loss and fraction lost (A.3) over an interval with two missing packets")
    func loss() {
        var stats = RTPReceiveStatistics()
        for seq in UInt16(100)...UInt16(120) where seq != 105 && seq != 110 {
            stats.record(sequenceNumber: seq, timestamp: UInt32(seq) * 160, ssrc: 7, arrival: Int64(seq) * 160)
        }
        // Packet 100 was the probation packet: counting starts at 101.
        #expect(stats.expected == 20)
        #expect(stats.received == 18)
        #expect(stats.cumulativeLost == 2)
        #expect(stats.takeFractionLost() == UInt8(2 * 256 / 20))
        #expect(stats.takeFractionLost() == 0)  // nothing new in the next interval
        #expect(stats.jitter == 0)  // constant transit time
    }

    @Test("Interarrival jitter (A.8) converges to the mean transit deviation")
    func jitter() {
        var stats = RTPReceiveStatistics()
        // Every other packet arrives 80 ticks (10 ms at 8 kHz) late: |D| = 80 each time.
        for n in 0..<2000 {
            let ts = UInt32(n * 160)
            let arrival = Int64(n * 160) + (n % 2 == 0 ? 0 : 80)
            stats.record(sequenceNumber: UInt16(truncatingIfNeeded: n), timestamp: ts, ssrc: 1, arrival: arrival)
        }
        #expect((78...80).contains(stats.jitter))
        // A new SSRC starts the statistics over.
        stats.record(sequenceNumber: 5, timestamp: 0, ssrc: 2, arrival: 0)
        #expect(stats.received == 0 && stats.jitter == 0)
    }

    @Test("Compound RTCP: SR with a report block and SDES round-trip; BYE parses")
    func rtcpRoundTrip() throws {
        let block = RTCPReportBlock(ssrc: 0xAABB_CCDD, fractionLost: 25, cumulativeLost: -3, extendedHighestSequence: 70_000,
                                    jitter: 12, lastSenderReport: 0x1234_5678, delaySinceLastSenderReport: 65536)
        let sr = RTCPSenderReport(ssrc: 1, ntpTimestamp: 0x0102_0304_0506_0708, rtpTimestamp: 160, packetCount: 50, octetCount: 8000, reports: [block])
        var bytes: [UInt8] = []
        RTCPPacket.senderReport(sr).serialize(into: &bytes)
        RTCPPacket.sourceDescription([RTCPSourceDescription(ssrc: 1, canonicalName: "gw@symphony")]).serialize(into: &bytes)
        RTCPPacket.goodbye(ssrcs: [1], reason: "bye").serialize(into: &bytes)
        #expect(bytes.count % 4 == 0)
        let parsed = try bytes.withUnsafeBytes { try RTCPPacket.parseCompound($0) }
        #expect(parsed == [.senderReport(sr), .sourceDescription([.init(ssrc: 1, canonicalName: "gw@symphony")]), .goodbye(ssrcs: [1], reason: "bye")])
        #expect(sr.compactNTP == 0x0304_0506)
    }

    @Test("Text that is not UTF-8 (a CNAME, a BYE reason) is dropped, so what parses re-serializes the same (MediaPacketFuzzer)")
    func rtcpText() throws {
        // RR, then BYE with a 3-byte reason that is not UTF-8.
        let bytes: [UInt8] = [0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 203, 0, 2, 0, 0, 0, 1, 3, 0xFF, 0xFE, 0xFD]
        let parsed = try bytes.withUnsafeBytes { try RTCPPacket.parseCompound($0) }
        #expect(parsed[1] == .goodbye(ssrcs: [1], reason: nil))
        var again: [UInt8] = []
        for packet in parsed { packet.serialize(into: &again) }
        #expect(try again.withUnsafeBytes { try RTCPPacket.parseCompound($0) } == parsed)
    }

    @Test("Malformed RTCP is refused: not starting with SR/RR, bad length, bad version")
    func rtcpMalformed() {
        var sdesOnly: [UInt8] = []
        RTCPPacket.sourceDescription([RTCPSourceDescription(ssrc: 1, canonicalName: "x")]).serialize(into: &sdesOnly)
        #expect(throws: RTPParseError.unknownPacketType(202)) { try sdesOnly.withUnsafeBytes { try RTCPPacket.parseCompound($0) } }
        #expect(throws: RTPParseError.badLength) { try [UInt8]([0x80, 201, 0, 9, 0, 0, 0, 1]).withUnsafeBytes { try RTCPPacket.parseCompound($0) } }
        #expect(throws: RTPParseError.badVersion) { try [UInt8]([0x40, 201, 0, 1, 0, 0, 0, 1]).withUnsafeBytes { try RTCPPacket.parseCompound($0) } }
        // An RR announcing a report block it does not carry.
        #expect(throws: RTPParseError.badLength) { try [UInt8]([0x81, 201, 0, 1, 0, 0, 0, 1]).withUnsafeBytes { try RTCPPacket.parseCompound($0) } }
    }

    @Test("Round-trip time from LSR/DLSR between two reporters (RFC 3550 §6.4.1)")
    func roundTripTime() throws {
        let start: UInt64 = 1_800_000_000 * 1_000_000_000
        var a = RTCPReporter(ssrc: 0xA, canonicalName: "a", clockRate: 8000)
        var b = RTCPReporter(ssrc: 0xB, canonicalName: "b", clockRate: 8000)
        for n in 0..<50 {
            let at = start + UInt64(n) * 20_000_000
            a.sent(payloadBytes: 160, timestamp: UInt32(n * 160), at: at)
            b.received(sequenceNumber: UInt16(n), timestamp: UInt32(n * 160), ssrc: 0xA, at: at + 15_000_000)
        }
        let aSent = start + 1_000_000_000
        let srBytes = a.makeReport(at: aSent)
        // The SR takes 15 ms to B, B holds it 100 ms, its RR takes 15 ms back: RTT 30 ms.
        b.receive(try srBytes.withUnsafeBytes { try RTCPPacket.parseCompound($0) }, at: aSent + 15_000_000)
        let rrBytes = b.makeReport(at: aSent + 115_000_000)
        let rr = try rrBytes.withUnsafeBytes { try RTCPPacket.parseCompound($0) }
        guard case .receiverReport(let report) = rr[0] else { Issue.record("expected RR, got \(rr[0])"); return }
        #expect(report.reports.first?.ssrc == 0xA)
        #expect(report.reports.first?.extendedHighestSequence == 49)
        a.receive(rr, at: aSent + 130_000_000)
        let rtt = try #require(a.roundTripTime)
        #expect(rtt > .microseconds(29_900) && rtt < .microseconds(30_100))
    }
}
