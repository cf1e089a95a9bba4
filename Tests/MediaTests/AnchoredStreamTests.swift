import NIOCore
import Testing
@testable import Media

/// The core's embedded relay (`AnchoredStream`, issue 19): SRTP re-keyed per leg, latching to
/// the source actually seen, and what it refuses.
@Suite struct AnchoredStreamTests {
    /// One end of an anchored call: sends with its key, receives with the anchor's.
    struct End {
        let key = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
        let anchorKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
        let outbound: SRTPSession
        let inbound: SRTPSession
        var ssrc = UInt32.random(in: 1 ... .max)
        var sequence = UInt16.random(in: 0...30000)

        init() throws {
            outbound = try SRTPSession(key: key, direction: .outbound)
            inbound = try SRTPSession(key: anchorKey, direction: .inbound)
        }

        var keys: MediaLegConfiguration.SRTPKeys { .init(local: anchorKey, remote: key) }

        mutating func packet(_ payload: [UInt8], protect: Bool = true, rtcp: Bool = false) -> [UInt8] {
            sequence &+= 1
            var bytes = [UInt8](repeating: 0, count: 12 + payload.count + SRTPSession.maxTrailer + 4)
            var length = 12 + payload.count
            bytes.withUnsafeMutableBytes { raw in
                if rtcp {
                    // A receiver report with no blocks (RFC 3550 §6.4.2), padded with the payload.
                    raw[0] = 0x80
                    raw[1] = 201
                    raw.storeBytes(of: UInt16(length / 4 - 1).bigEndian, toByteOffset: 2, as: UInt16.self)
                } else {
                    RTPHeader(marker: false, payloadType: 9, sequenceNumber: sequence, timestamp: UInt32(sequence) * 160, ssrc: ssrc).writeFixed(into: raw)
                }
                raw.baseAddress!.advanced(by: 12).copyMemory(from: payload, byteCount: payload.count)
                if protect { length = try! rtcp ? outbound.protectRTCP(raw, length: length) : outbound.protect(raw, length: length) }
            }
            return Array(bytes[..<length])
        }

        /// What the anchor sent this end, decrypted with the anchor's key; nil: it does not verify.
        func open(_ packet: [UInt8], rtcp: Bool = false) -> [UInt8]? {
            var bytes = packet + [UInt8](repeating: 0, count: 16)
            let length = bytes.withUnsafeMutableBytes { raw in
                try? rtcp ? inbound.unprotectRTCP(raw, length: packet.count) : inbound.unprotect(raw, length: packet.count)
            }
            return length.map { Array(bytes[12..<$0]) }
        }
    }

    static func address(_ ip: String, _ port: Int) -> SocketAddress { try! SocketAddress(ipAddress: ip, port: port) }

    /// Everything the stream sent: packet, destination, the leg it left from, the RTCP socket?
    final class Sink: MediaPacketSink {
        var sent: [(packet: [UInt8], to: SocketAddress, leg: MediaLegSide, rtcpSocket: Bool)] = []
        func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp: Bool) {
            sent.append((Array(packet), address, leg, rtcp))
        }
        func last(_ leg: MediaLegSide) -> (packet: [UInt8], to: SocketAddress, leg: MediaLegSide, rtcpSocket: Bool)? { sent.last { $0.leg == leg } }
        func count(_ leg: MediaLegSide) -> Int { sent.count { $0.leg == leg } }
    }

    let sink = Sink()

    func feed(_ stream: AnchoredStream, _ packet: [UInt8], on side: MediaLegSide, from source: SocketAddress, rtcpSocket: Bool = false, now: UInt64 = 1) {
        var buffer = packet + [UInt8](repeating: 0, count: SRTPSession.maxTrailer + 4)
        buffer.withUnsafeMutableBytes { stream.receive($0, length: packet.count, from: source, on: side, rtcpSocket: rtcpSocket, now: now) }
    }

    @Test func srtpIsReKeyedPerLegAndGoesWhereTheEndIsHeardFrom() throws {
        var alice = try End()
        var bob = try End()
        // Alice's SDP names her private address; her packets come through a NAT.
        let aliceSDP = Self.address("192.168.1.10", 4000)
        let aliceNAT = Self.address("198.51.100.2", 61000)
        let bobSDP = Self.address("203.0.113.7", 5000)
        let stream = try AnchoredStream(
            a: .init(remote: aliceSDP, srtp: alice.keys), b: .init(remote: bobSDP, srtp: bob.keys), sink: sink)

        feed(stream, alice.packet([1, 2, 3, 4]), on: .a, from: aliceNAT)
        // To Bob (leg b), under the anchor's key for him: his SDP's address.
        let toBob = try #require(sink.last(.b))
        #expect(bob.open(toBob.packet) == [1, 2, 3, 4])
        #expect(toBob.to == bobSDP)
        #expect(stream.destination(.a) == aliceNAT, "leg a latched to the NAT's address")

        feed(stream, bob.packet([9, 9]), on: .b, from: bobSDP)
        let toAlice = try #require(sink.last(.a))
        #expect(alice.open(toAlice.packet) == [9, 9])
        #expect(toAlice.to == aliceNAT, "answered where Alice is heard from, not her SDP's private address")
        #expect(stream.counters(.a).relayed == 1 && stream.counters(.b).relayed == 1)
    }

    @Test func onlyPacketsUnderThePeersKeyMoveTheLeg() throws {
        var alice = try End()
        let bob = try End()
        var mallory = try End()
        let aliceNAT = Self.address("198.51.100.2", 61000)
        let stream = try AnchoredStream(
            a: .init(remote: Self.address("192.168.1.10", 4000), srtp: alice.keys), b: .init(remote: Self.address("203.0.113.7", 5000), srtp: bob.keys), sink: sink)
        feed(stream, alice.packet([1]), on: .a, from: aliceNAT)
        // Another key, plain RTP, a replay of Alice's own packet from elsewhere: none moves leg a.
        let replay = alice.packet([2])
        feed(stream, replay, on: .a, from: aliceNAT)
        let attacker = Self.address("198.51.100.66", 1234)
        feed(stream, mallory.packet([6, 6, 6]), on: .a, from: attacker)
        feed(stream, mallory.packet([6, 6, 6], protect: false), on: .a, from: attacker)
        feed(stream, replay, on: .a, from: attacker)
        #expect(stream.destination(.a) == aliceNAT)
        #expect(stream.counters(.a).authenticationFailures == 2 && stream.counters(.a).replayed == 1, "\(stream.counters(.a))")
        #expect(sink.count(.b) == 2, "only Alice's two packets reached Bob")

        // Alice's NAT changes its address: her next packet moves the leg (RFC 4961 symmetric RTP).
        let newNAT = Self.address("198.51.100.3", 40001)
        feed(stream, alice.packet([3]), on: .a, from: newNAT)
        #expect(stream.destination(.a) == newNAT)
        #expect(stream.counters(.a).latches == 2)
    }

    @Test func plainRTPLatchesToTheFirstSourceAndMovesOnlyWithItsOwnStream() throws {
        let stream = try AnchoredStream(a: .init(remote: Self.address("192.168.1.10", 4000)), b: .init(remote: Self.address("203.0.113.7", 5000)), sink: sink)
        var alice = try End()
        var mallory = try End()
        let first = Self.address("198.51.100.2", 61000)
        let other = Self.address("198.51.100.9", 7000)
        let later = 1_000_000_000 + AnchoredStream.relatchSilence + 1
        feed(stream, alice.packet([1], protect: false), on: .a, from: first, now: 1_000_000_000)
        feed(stream, alice.packet([2], protect: false), on: .a, from: other, now: 1_500_000_000)
        #expect(stream.destination(.a) == first)
        #expect(stream.counters(.a).wrongSource == 1)
        // Silence, then a stranger's stream from elsewhere (RTP bleed): refused.
        feed(stream, mallory.packet([6], protect: false), on: .a, from: Self.address("198.51.100.66", 1234), now: later)
        #expect(stream.destination(.a) == first && stream.counters(.a).wrongSource == 2)
        // Silence, then Alice's own stream from a new address (her NAT's): it moves.
        feed(stream, alice.packet([3], protect: false), on: .a, from: other, now: later)
        #expect(stream.destination(.a) == other)
        // The SDP's own host is believed at once.
        feed(stream, alice.packet([4], protect: false), on: .a, from: Self.address("192.168.1.10", 4000), now: later + 1)
        #expect(stream.destination(.a) == Self.address("192.168.1.10", 4000))
        #expect(sink.count(.b) == 3)
    }

    @Test func aPrivateSDPAddressGetsNothingUntilTheEndIsHeard() throws {
        var bob = try End()
        let alice = try End()
        var bobConfig = AnchorLegConfiguration(remote: Self.address("10.9.0.10", 5000), srtp: bob.keys)
        bobConfig.sendsBeforeLatching = false
        let stream = try AnchoredStream(a: .init(remote: Self.address("203.0.113.7", 4000), srtp: alice.keys), b: bobConfig, sink: sink)
        var aliceSender = alice
        feed(stream, aliceSender.packet([1]), on: .a, from: Self.address("203.0.113.7", 4000))
        #expect(sink.count(.b) == 0 && stream.counters(.b).undeliverable == 1)
        feed(stream, bob.packet([2]), on: .b, from: Self.address("198.51.100.21", 30000))
        feed(stream, aliceSender.packet([3]), on: .a, from: Self.address("203.0.113.7", 4000))
        #expect(sink.last(.b)?.to == Self.address("198.51.100.21", 30000))
    }

    @Test func aPeerWithEverNewSSRCsIsCappedAndAReKeyKeepsTheOtherDirection() throws {
        var alice = try End()
        let bob = try End()
        let stream = try AnchoredStream(a: .init(remote: Self.address("203.0.113.7", 4000), srtp: alice.keys), b: .init(remote: Self.address("203.0.113.8", 5000), srtp: bob.keys), sink: sink)
        let firstSSRC = alice.ssrc
        for round in 0..<20 {
            alice.ssrc = round == 0 ? firstSSRC : .random(in: 1 ... .max)
            feed(stream, alice.packet([1]), on: .a, from: Self.address("203.0.113.7", 4000))
        }
        #expect(sink.count(.b) == AnchoredStream.maxSources, "\(stream.counters(.a))")
        #expect(stream.counters(.a).dropped == UInt64(20 - AnchoredStream.maxSources))

        // Bob re-keys (a re-INVITE with a new a=crypto): Alice's direction keeps its SRTP state,
        // so Bob's receiver (replay window, rollover counter) goes on accepting it.
        let before = sink.count(.b)
        let sessions = stream.sessions(.b)
        let newBob = try End()
        try stream.update(.b, to: .init(remote: Self.address("203.0.113.8", 5000), srtp: .init(local: bob.anchorKey, remote: newBob.key)))
        alice.ssrc = firstSSRC
        feed(stream, alice.packet([2]), on: .a, from: Self.address("203.0.113.7", 4000))
        let delivered = try #require(sink.sent.last)
        #expect(sink.count(.b) == before + 1 && bob.open(delivered.packet) == [2])
        #expect(stream.sessions(.b).outbound == sessions.outbound && stream.sessions(.b).inbound != sessions.inbound, "only the re-keyed direction is new")
    }

    @Test func rtcpIsReKeyedAndGoesToTheRTCPPortOrMuxed() throws {
        var alice = try End()
        let bob = try End()
        let bobSDP = Self.address("203.0.113.7", 5000)
        let stream = try AnchoredStream(
            a: .init(remote: Self.address("192.168.1.10", 4000), srtp: alice.keys), b: .init(remote: bobSDP, srtp: bob.keys), sink: sink)
        feed(stream, alice.packet([0, 0, 0, 0], rtcp: true), on: .a, from: Self.address("198.51.100.2", 61001), rtcpSocket: true)
        let report = try #require(sink.last(.b))
        #expect(bob.open(report.packet, rtcp: true) != nil, "SRTCP under the anchor's key for Bob")
        #expect(report.rtcpSocket && report.to == Self.address("203.0.113.7", 5001), "from the RTCP socket to Bob's port + 1")

        // With rtcp-mux (RFC 5761), RTCP arriving on the RTP socket goes to the RTP address;
        // the new configuration with the same keys keeps the SRTCP state (no replay refusal).
        try stream.update(.b, to: .init(remote: bobSDP, rtcpMux: true, srtp: bob.keys))
        feed(stream, alice.packet([0, 0, 0, 0], rtcp: true), on: .a, from: Self.address("198.51.100.2", 61000))
        let muxed = try #require(sink.last(.b))
        #expect(!muxed.rtcpSocket && muxed.to == bobSDP)
        #expect(bob.open(muxed.packet, rtcp: true) != nil)
    }

    @Test func nothingPassesBeforeOfferAnswerAndNothingHostileTraps() throws {
        let stream = try AnchoredStream(a: .unknown, b: .unknown, sink: sink)
        var alice = try End()
        feed(stream, alice.packet([1], protect: false), on: .a, from: Self.address("198.51.100.2", 61000))
        #expect(stream.counters(.a).dropped == 1)
        #expect(sink.sent.isEmpty)

        let keyed = try AnchoredStream(
            a: .init(remote: Self.address("192.168.1.10", 4000), srtp: alice.keys), b: .init(remote: nil, srtp: try End().keys), sink: sink)
        for junk: [UInt8] in [[], [0x80], [0x80, 0x00], [UInt8](repeating: 0xFF, count: 40), [0x80, 200] + [UInt8](repeating: 0, count: 6),
            Array(alice.packet([1]).prefix(14))]
        {
            feed(keyed, junk, on: .a, from: Self.address("198.51.100.2", 61000))
            feed(keyed, junk, on: .a, from: Self.address("198.51.100.2", 61001), rtcpSocket: true)
        }
        // Leg b has no address and has heard nothing: Alice's packet has nowhere to go yet.
        feed(keyed, alice.packet([5]), on: .a, from: Self.address("198.51.100.2", 61000))
        #expect(keyed.counters(.b).undeliverable == 1)
        #expect(sink.sent.isEmpty)
    }
}
