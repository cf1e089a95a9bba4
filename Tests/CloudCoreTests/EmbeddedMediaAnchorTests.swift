import Foundation
import Logging
import Media
import NIOCore
import SIP
import Testing
@testable import CloudCore

/// The core's own relay (`[media] anchor = "embedded"`): how it rewrites offers and answers, and
/// SRTP through its real sockets from one end to the other under its own keys.
@Suite struct EmbeddedMediaAnchorTests {
    static let aliceKey1 = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
    static let aliceKey2 = SRTPKeyMaterial.random(.aesCM128HMACSHA1_32)

    /// Alice behind NAT: a private address, ICE candidates, an RTCP port, a video stream.
    static func aliceOffer(port: Int) -> String {
        """
        v=0\r
        o=alice 1 1 IN IP4 192.168.1.10\r
        s=-\r
        c=IN IP4 192.168.1.10\r
        t=0 0\r
        a=ice-ufrag:abcd\r
        m=audio \(port) RTP/SAVP 9 101\r
        a=rtpmap:9 G722/8000\r
        a=rtpmap:101 telephone-event/8000\r
        a=rtcp:\(port + 1)\r
        a=candidate:1 1 UDP 2130706431 192.168.1.10 \(port) typ host\r
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:\(Base64.encode(aliceKey1.bytes))\r
        a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:\(Base64.encode(aliceKey2.bytes))\r
        a=crypto:3 F8_128_HMAC_SHA1_80 inline:\(Base64.encode(aliceKey1.bytes))\r
        a=sendrecv\r
        m=video 4002 RTP/SAVP 96\r
        a=rtpmap:96 H264/90000\r

        """
    }

    static func bobAnswer(port: Int, key: SRTPKeyMaterial, tag: Int = 2) -> String {
        """
        v=0\r
        o=bob 7 7 IN IP4 127.0.0.1\r
        s=-\r
        c=IN IP4 127.0.0.1\r
        t=0 0\r
        m=audio \(port) RTP/SAVP 9 101\r
        a=rtpmap:9 G722/8000\r
        a=rtpmap:101 telephone-event/8000\r
        a=crypto:\(tag) \(key.suite.rawValue) inline:\(Base64.encode(key.bytes))\r
        m=video 0 RTP/SAVP 96\r

        """
    }

    func makeAnchor(maxCalls: Int = 10) throws -> EmbeddedMediaAnchor {
        EmbeddedMediaAnchor(
            relay: try MediaRelay(threads: 1, portRange: 42000...42099), bindHost: "127.0.0.1", sdpAddress: "127.0.0.1", maxCalls: maxCalls,
            maxAge: .seconds(660), logger: Logger(label: "test"))
    }

    static func crypto(_ media: SDPMedia) -> [SDPCryptoAttribute] { media.attributes(named: "crypto").compactMap(SDPCryptoAttribute.init(attributeValue:)) }

    @Test func offerAndAnswerAreRewrittenToTheAnchorWithItsOwnKeys() async throws {
        let anchor = try makeAnchor()
        defer { Task { await anchor.close() } }
        let offer = try SDPParser.parse(try await anchor.offer(callID: "c1", fromTag: "alice", sdp: Self.aliceOffer(port: 4000), opensCall: true))
        #expect(offer.connection?.address == "127.0.0.1" && offer.origin.address == "127.0.0.1")
        let audio = offer.media[0]
        #expect((42000...42099).contains(audio.port))
        #expect(audio.attributes(named: "candidate").isEmpty && audio.attributes(named: "rtcp").isEmpty && offer.attributes.allSatisfy { $0.name != "ice-ufrag" })
        let lines = Self.crypto(audio)
        #expect(lines.map(\.tag) == [1, 2], "the suites the anchor can re-key, their tags kept")
        #expect(!lines.contains { $0.keyMaterial == Self.aliceKey1.bytes || $0.keyMaterial == Self.aliceKey2.bytes }, "the anchor's keys, not Alice's")
        #expect(offer.media[1].port == 0, "the video stream is not carried past the anchor")
        #expect(audio.formats == ["9", "101"] && audio.direction == .sendrecv)

        let bobKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_32)
        let answer = try SDPParser.parse(try await anchor.answer(callID: "c1", fromTag: "alice", toTag: "bob", sdp: Self.bobAnswer(port: 6000, key: bobKey), confirmed: true))
        let answered = Self.crypto(answer.media[0])
        #expect(answered.map(\.tag) == [2] && answered.first?.suite == "AES_CM_128_HMAC_SHA1_32")
        #expect(answered.first?.keyMaterial != bobKey.bytes)
        #expect(answer.media[0].port != audio.port && (42000...42099).contains(answer.media[0].port))
        #expect(answer.connection?.address == "127.0.0.1")

        // A re-INVITE from Bob (the other side now offers): the same suite keeps the same key.
        let reoffer = try SDPParser.parse(try await anchor.offer(callID: "c1", fromTag: "bob", sdp: Self.bobAnswer(port: 6000, key: bobKey), opensCall: false))
        #expect(reoffer.media[0].port == answer.media[0].port, "toward Alice: her leg's port")
        #expect(Self.crypto(reoffer.media[0]).first?.keyMaterial == answered.first?.keyMaterial)
        await anchor.delete(callID: "c1", fromTag: "alice")
        #expect(await anchor.anchoredCalls == 0)
        #expect(anchor.relay.portsInUse == 0)
    }

    @Test func srtpCrossesTheRelayReKeyed() async throws {
        let anchor = try makeAnchor()
        defer { Task { await anchor.close() } }
        let alice = try UDPEnd()
        let bob = try UDPEnd()
        let offer = try SDPParser.parse(try await anchor.offer(callID: "c2", fromTag: "a", sdp: Self.aliceOffer(port: alice.port), opensCall: true))
        let bobKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_32)
        let anchorKeyForBob = try SRTPKeyMaterial(suite: .aesCM128HMACSHA1_32, bytes: try #require(Self.crypto(offer.media[0]).first { $0.tag == 2 }).keyMaterial)
        let answer = try SDPParser.parse(try await anchor.answer(callID: "c2", fromTag: "a", toTag: "b", sdp: Self.bobAnswer(port: bob.port, key: bobKey), confirmed: true))
        let anchorKeyForAlice = try SRTPKeyMaterial(suite: .aesCM128HMACSHA1_32, bytes: try #require(Self.crypto(answer.media[0]).first).keyMaterial)

        // Alice sends from her real socket (not the SDP's 192.168.1.10): the relay latches to it,
        // but Bob's SDP address (loopback) is no place to send before Bob is heard: nothing yet.
        let aliceOut = try SRTPSession(key: Self.aliceKey2, direction: .outbound)
        let bobIn = try SRTPSession(key: anchorKeyForBob, direction: .inbound)
        try alice.send(UDPEnd.rtp(sequence: 1, payload: [1], protect: aliceOut), to: answer.media[0].port)
        #expect(bob.receive(timeout: .milliseconds(300)) == nil)

        // Bob sends: it reaches Alice where she was heard from; then Alice's reaches Bob.
        let bobOut = try SRTPSession(key: bobKey, direction: .outbound)
        let aliceIn = try SRTPSession(key: anchorKeyForAlice, direction: .inbound)
        try bob.send(UDPEnd.rtp(sequence: 1, payload: [5, 5], protect: bobOut), to: offer.media[0].port)
        let atAlice = try #require(alice.receive(), "Alice got Bob's packet at the address she was heard from")
        #expect(try UDPEnd.open(atAlice, aliceIn) == [5, 5])
        try alice.send(UDPEnd.rtp(sequence: 2, payload: [7, 7, 7], protect: aliceOut), to: answer.media[0].port)
        let atBob = try #require(bob.receive(), "Bob got Alice's packet through the relay")
        #expect(try UDPEnd.open(atBob, bobIn) == [7, 7, 7])
        let handle = try #require(await anchor.handle(callID: "c2"))
        let (a, b) = (try await handle.counters(.a), try await handle.counters(.b))
        #expect(a.relayed == 2 && b.relayed == 1 && b.undeliverable == 1, "\(a) \(b)")
    }

    /// A fork: two branches answer. The first 2xx decides side b for good; the second branch's
    /// 2xx is rewritten (the caller gets valid SDP, and ends that branch) but moves nothing.
    @Test func theFirstConfirmedAnswerOwnsSideB() async throws {
        let anchor = try makeAnchor()
        defer { Task { await anchor.close() } }
        _ = try await anchor.offer(callID: "f1", fromTag: "a", sdp: Self.aliceOffer(port: 4000), opensCall: true)
        let early = SRTPKeyMaterial.random(.aesCM128HMACSHA1_32), winner = SRTPKeyMaterial.random(.aesCM128HMACSHA1_32), late = SRTPKeyMaterial.random(.aesCM128HMACSHA1_32)
        _ = try await anchor.answer(callID: "f1", fromTag: "a", toTag: "b1", sdp: Self.bobAnswer(port: 6100, key: early), confirmed: false)
        _ = try await anchor.answer(callID: "f1", fromTag: "a", toTag: "b2", sdp: Self.bobAnswer(port: 6200, key: winner), confirmed: true)
        _ = try await anchor.answer(callID: "f1", fromTag: "a", toTag: "b1", sdp: Self.bobAnswer(port: 6100, key: late), confirmed: true)
        let handle = try #require(await anchor.handle(callID: "f1"))
        let b = try await handle.configuration(.b)
        #expect(b.remote?.port == 6200 && b.srtp?.remote == winner, "side b is the first 2xx's branch")
        await #expect(throws: (any Error).self, "the losing branch cannot offer into the call") {
            _ = try await anchor.offer(callID: "f1", fromTag: "b1", sdp: Self.bobAnswer(port: 6100, key: late), opensCall: false)
        }
        _ = try await anchor.offer(callID: "f1", fromTag: "b2", sdp: Self.bobAnswer(port: 6200, key: winner), opensCall: false)
    }

    @Test func onlyPublicAddressesAreSentToBeforeTheEndIsHeard() throws {
        for (address, sends) in [("203.0.113.7", true), ("2001:db8::7", true), ("192.168.1.10", false), ("10.9.0.10", false), ("127.0.0.1", false), ("::1", false), ("fe80::1", false), ("100.64.0.1", false)] {
            let remote = try SocketAddress(ipAddress: address, port: 4000)
            #expect(AnchorSDP.isPublicUnicast(remote) == sends, "\(address)")
        }
        let multicast = try SDPParser.parse(Self.aliceOffer(port: 4000).replacingOccurrences(of: "c=IN IP4 192.168.1.10", with: "c=IN IP4 239.1.1.1"))
        #expect(AnchorSDP.describe(multicast, section: 0)?.remote == nil, "a multicast group is no peer")
    }

    @Test func whatTheAnchorRefuses() async throws {
        let anchor = try makeAnchor(maxCalls: 1)
        defer { Task { await anchor.close() } }
        await #expect(throws: (any Error).self, "an answer to nothing") {
            _ = try await anchor.answer(callID: "none", fromTag: "a", toTag: "b", sdp: Self.bobAnswer(port: 6000, key: .random(.aesCM128HMACSHA1_80)), confirmed: true)
        }
        await #expect(throws: (any Error).self, "not SDP") { _ = try await anchor.offer(callID: "c3", fromTag: "a", sdp: "hello", opensCall: true) }
        let onlyF8 = Self.aliceOffer(port: 4000).split(separator: "\r\n").filter { !$0.contains("AES_CM") }.joined(separator: "\r\n") + "\r\n"
        await #expect(throws: (any Error).self, "no suite it can re-key") { _ = try await anchor.offer(callID: "c3", fromTag: "a", sdp: onlyF8, opensCall: true) }
        await anchor.delete(callID: "c3", fromTag: "a")
        _ = try await anchor.offer(callID: "c4", fromTag: "a", sdp: Self.aliceOffer(port: 4000), opensCall: true)
        await #expect(throws: (any Error).self, "a tag that was not offered") {
            _ = try await anchor.answer(callID: "c4", fromTag: "a", toTag: "b", sdp: Self.bobAnswer(port: 6000, key: .random(.aesCM128HMACSHA1_80), tag: 9), confirmed: true)
        }
        await #expect(throws: (any Error).self, "a new call reusing an anchored Call-ID") {
            _ = try await anchor.offer(callID: "c4", fromTag: "a", sdp: Self.aliceOffer(port: 4000), opensCall: true)
        }
        await #expect(throws: (any Error).self, "an in-dialog offer for a call the anchor does not hold") {
            _ = try await anchor.offer(callID: "gone", fromTag: "a", sdp: Self.aliceOffer(port: 4000), opensCall: false)
        }
        await #expect(throws: (any Error).self, "an answer from tags that are not the offer's") {
            _ = try await anchor.answer(callID: "c4", fromTag: "mallory", toTag: "b", sdp: Self.bobAnswer(port: 6000, key: .random(.aesCM128HMACSHA1_32)), confirmed: true)
        }
        await #expect(throws: (any Error).self, "past limits.max_calls") { _ = try await anchor.offer(callID: "c5", fromTag: "a", sdp: Self.aliceOffer(port: 4000), opensCall: true) }
        await anchor.delete(callID: "c4", fromTag: "a")
        #expect(await anchor.anchoredCalls == 0 && anchor.relay.portsInUse == 0)
    }
}

/// A plain UDP socket on 127.0.0.1 standing in for a phone's media socket.
final class UDPEnd {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    static func rtp(sequence: UInt16, payload: [UInt8], protect session: SRTPSession) throws -> [UInt8] {
        var bytes = [0x80, 9, UInt8(sequence >> 8), UInt8(sequence & 0xFF), 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78] + payload
        let length = bytes.count
        bytes += [UInt8](repeating: 0, count: SRTPSession.maxTrailer)
        let protected = try bytes.withUnsafeMutableBytes { try session.protect($0, length: length) }
        return Array(bytes[..<protected])
    }

    static func open(_ packet: [UInt8], _ session: SRTPSession) throws -> [UInt8] {
        var bytes = packet
        let length = try bytes.withUnsafeMutableBytes { try session.unprotect($0, length: packet.count) }
        return Array(bytes[12..<length])
    }

    func send(_ packet: [UInt8], to port: Int) throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, packet, packet.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard sent == packet.count else { throw POSIXError(.EIO) }
    }

    func receive(timeout: Duration = .seconds(2)) -> [UInt8]? {
        let (seconds, attoseconds) = timeout.components
        var wait = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 2048)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 ? Array(buffer[..<n]) : nil
    }
}
