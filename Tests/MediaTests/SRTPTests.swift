import Crypto
import _CryptoExtras
import Foundation
import Testing
@testable import Media

/// An independent SRTP (RFC 3711) written from the RFC for the tests only, on swift-crypto's AES
/// and HMAC-SHA1: checked against the Appendix B vectors, then used to check what libsrtp does.
enum RFC3711Reference {
    /// AES in counter mode from a 128-bit IV (§4.1.1): the keystream for `count` bytes.
    static func keystream(key: [UInt8], iv: [UInt8], count: Int) throws -> [UInt8] {
        let zeros = [UInt8](repeating: 0, count: count)
        return Array(try AES._CTR.encrypt(zeros, using: SymmetricKey(data: key), nonce: AES._CTR.Nonce(nonceBytes: iv)))
    }

    /// Key derivation (§4.3.1) with key_derivation_rate 0: x = label·2^48 XOR master_salt, as IV x·2^16.
    static func derive(masterKey: [UInt8], masterSalt: [UInt8], label: UInt8, count: Int) throws -> [UInt8] {
        var iv = masterSalt + [0, 0]
        iv[7] ^= label
        return try keystream(key: masterKey, iv: iv, count: count)
    }

    /// Protects an RTP packet with AES_CM_128_HMAC_SHA1_80 and the given rollover counter.
    static func protect(_ packet: [UInt8], keyMaterial: [UInt8], roc: UInt32, tagLength: Int = 10) throws -> [UInt8] {
        let masterKey = Array(keyMaterial[0..<16]), masterSalt = Array(keyMaterial[16..<30])
        let cipherKey = try derive(masterKey: masterKey, masterSalt: masterSalt, label: 0, count: 16)
        let authKey = try derive(masterKey: masterKey, masterSalt: masterSalt, label: 1, count: 20)
        let salt = try derive(masterKey: masterKey, masterSalt: masterSalt, label: 2, count: 14)
        let header = try packet.withUnsafeBytes { try RTPHeader.parse($0) }
        // IV = (salt·2^16) XOR (SSRC·2^64) XOR (index·2^16), index = ROC·2^16 + SEQ (§4.1.1).
        var iv = salt + [0, 0]
        let ssrc = withUnsafeBytes(of: header.ssrc.bigEndian, Array.init)
        for i in 0..<4 { iv[4 + i] ^= ssrc[i] }
        let index = UInt64(roc) << 16 | UInt64(header.sequenceNumber)
        let indexBytes = withUnsafeBytes(of: (index << 16).bigEndian, Array.init)
        for i in 0..<8 { iv[8 + i] ^= indexBytes[i] }
        let payload = Array(packet[header.headerLength...])
        let stream = try keystream(key: cipherKey, iv: iv, count: payload.count)
        var out = Array(packet[..<header.headerLength]) + zip(payload, stream).map { $0 ^ $1 }
        // Tag = HMAC-SHA1(auth key, packet ‖ ROC), truncated (§4.2).
        var mac = HMAC<Insecure.SHA1>(key: SymmetricKey(data: authKey))
        mac.update(data: out)
        mac.update(data: withUnsafeBytes(of: roc.bigEndian, Array.init))
        out += Array(mac.finalize()).prefix(tagLength)
        return out
    }
}

func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.filter { !$0.isWhitespace })
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

func rtpPacket(seq: UInt16, ts: UInt32, ssrc: UInt32, payload: [UInt8], pt: UInt8 = 9) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 12)
    bytes.withUnsafeMutableBytes { RTPHeader(payloadType: pt, sequenceNumber: seq, timestamp: ts, ssrc: ssrc).writeFixed(into: $0) }
    return bytes + payload
}

/// Runs libsrtp on one packet in a buffer with room for the trailer.
func libsrtp(_ session: SRTPSession, protect packet: [UInt8]) throws -> [UInt8] {
    var buffer = packet + [UInt8](repeating: 0, count: SRTPSession.maxTrailer)
    let n = try buffer.withUnsafeMutableBytes { try session.protect($0, length: packet.count) }
    return Array(buffer[..<n])
}

func libsrtp(_ session: SRTPSession, unprotect packet: [UInt8]) throws -> [UInt8] {
    var buffer = packet
    let n = try buffer.withUnsafeMutableBytes { try session.unprotect($0, length: packet.count) }
    return Array(buffer[..<n])
}

@Suite("SRTP (RFC 3711, libsrtp2)")
struct SRTPTests {
    @Test("Appendix B.2: AES-CM keystream")
    func appendixB2() throws {
        let stream = try RFC3711Reference.keystream(
            key: hex("2B7E151628AED2A6ABF7158809CF4F3C"), iv: hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"), count: 0xFF02 * 16)
        #expect(Array(stream[0..<16]) == hex("E03EAD0935C95E80E166B16DD92B4EB4"))
        #expect(Array(stream[16..<32]) == hex("D23513162B02D0F72A43A2FE4A5F97AB"))
        #expect(Array(stream[32..<48]) == hex("41E95B3BB0A2E8DD477901E4FCA894C0"))
        #expect(Array(stream[(0xFEFF * 16)..<(0xFF00 * 16)]) == hex("EC8CDF7398607CB0F2D21675EA9EA1E4"))
        #expect(Array(stream[(0xFF00 * 16)..<(0xFF01 * 16)]) == hex("362B7C3C6773516318A077D7FC5073AE"))
        #expect(Array(stream[(0xFF01 * 16)..<(0xFF02 * 16)]) == hex("6A2CC3787889374FBEB4C81B17BA6C44"))
    }

    @Test("Appendix B.3: key derivation")
    func appendixB3() throws {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139"), salt = hex("0EC675AD498AFEEBB6960B3AABE6")
        #expect(try RFC3711Reference.derive(masterKey: key, masterSalt: salt, label: 0, count: 16) == hex("C61E7A93744F39EE10734AFE3FF7A087"))
        #expect(try RFC3711Reference.derive(masterKey: key, masterSalt: salt, label: 1, count: 20) == hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"))
        #expect(try RFC3711Reference.derive(masterKey: key, masterSalt: salt, label: 2, count: 14) == hex("30CBBC08863D8C85D49DB34A9AE1"))
    }

    @Test("libsrtp's packets equal the RFC's, byte for byte, with the B.3 master key, across a sequence wrap (ROC 0 → 1)")
    func libsrtpMatchesReference() throws {
        let material = hex("E1F97A0D3E018BE0D64FA32C06DE4139") + hex("0EC675AD498AFEEBB6960B3AABE6")
        let key = try SRTPKeyMaterial(suite: .aesCM128HMACSHA1_80, bytes: material)
        let sender = try SRTPSession(key: key, direction: .outbound)
        let receiver = try SRTPSession(key: key, direction: .inbound)
        var roc: UInt32 = 0
        var seq: UInt16 = 65530
        for n in 0..<12 {
            let payload = (0..<160).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ n) }
            let plain = rtpPacket(seq: seq, ts: UInt32(n * 160), ssrc: 0xCAFE_BABE, payload: payload)
            let protected = try libsrtp(sender, protect: plain)
            #expect(protected == (try RFC3711Reference.protect(plain, keyMaterial: material, roc: roc)), "seq \(seq) roc \(roc)")
            #expect(try libsrtp(receiver, unprotect: protected) == plain)
            seq &+= 1
            if seq == 0 { roc += 1 }
        }
        #expect(roc == 1)
    }

    @Test("Every suite round-trips RTP and RTCP; tags have the suite's length", arguments: SRTPCryptoSuite.allCases)
    func roundTrip(suite: SRTPCryptoSuite) throws {
        let key = SRTPKeyMaterial.random(suite)
        let sender = try SRTPSession(key: key, direction: .outbound)
        let receiver = try SRTPSession(key: key, direction: .inbound)
        let plain = rtpPacket(seq: 1, ts: 0, ssrc: 5, payload: [UInt8](repeating: 0x55, count: 80))
        let protected = try libsrtp(sender, protect: plain)
        #expect(protected.count == plain.count + suite.rtpTagLength)
        #expect(Array(protected[12...]) != Array(plain[12...]))  // encrypted
        #expect(try libsrtp(receiver, unprotect: protected) == plain)

        var rtcp: [UInt8] = []
        RTCPPacket.receiverReport(RTCPReceiverReport(ssrc: 5, reports: [])).serialize(into: &rtcp)
        RTCPPacket.sourceDescription([RTCPSourceDescription(ssrc: 5, canonicalName: "c")]).serialize(into: &rtcp)
        var buffer = rtcp + [UInt8](repeating: 0, count: SRTPSession.maxTrailer + 4)
        let n = try buffer.withUnsafeMutableBytes { try sender.protectRTCP($0, length: rtcp.count) }
        let m = try buffer.withUnsafeMutableBytes { try receiver.unprotectRTCP($0, length: n) }
        #expect(Array(buffer[..<m]) == rtcp)
    }

    @Test("Replayed, tampered and wrongly keyed packets are refused", arguments: SRTPCryptoSuite.allCases)
    func rejection(suite: SRTPCryptoSuite) throws {
        let key = SRTPKeyMaterial.random(suite)
        let sender = try SRTPSession(key: key, direction: .outbound)
        let receiver = try SRTPSession(key: key, direction: .inbound)
        let stranger = try SRTPSession(key: SRTPKeyMaterial.random(suite), direction: .inbound)
        var packets: [[UInt8]] = []
        for seq in UInt16(1000)..<1200 {
            packets.append(try libsrtp(sender, protect: rtpPacket(seq: seq, ts: UInt32(seq) * 160, ssrc: 9, payload: [UInt8](repeating: 1, count: 40))))
        }
        var tampered = packets[0]
        tampered[20] ^= 0x01
        #expect(throws: SRTPSession.Failure.authentication) { try libsrtp(receiver, unprotect: tampered) }
        #expect(throws: SRTPSession.Failure.authentication) { try libsrtp(stranger, unprotect: packets[0]) }
        _ = try libsrtp(receiver, unprotect: packets[0])
        #expect(throws: SRTPSession.Failure.replay) { try libsrtp(receiver, unprotect: packets[0]) }
        for packet in packets[150...] { _ = try libsrtp(receiver, unprotect: packet) }
        // Packet 1010 is now 189 behind the newest: outside the 128-packet window.
        #expect(throws: SRTPSession.Failure.replay) { try libsrtp(receiver, unprotect: packets[10]) }
        // Packet 1100 is inside the window and was never seen: accepted out of order.
        #expect(try libsrtp(receiver, unprotect: packets[100]).count == 52)
    }

    @Test("Key material has the suite's length and never prints")
    func keyMaterial() {
        #expect(throws: SRTPKeyMaterial.KeyError.wrongLength(expected: 30, got: 3)) {
            try SRTPKeyMaterial(suite: .aesCM128HMACSHA1_80, bytes: [1, 2, 3])
        }
        let a = SRTPKeyMaterial.random(.aeadAES128GCM), b = SRTPKeyMaterial.random(.aeadAES128GCM)
        #expect(a.bytes.count == 28 && a != b)
        #expect(!"\(a)".contains(String(a.bytes[0], radix: 16)) || "\(a)" == "SRTPKeyMaterial(AEAD_AES_128_GCM, 28 bytes)")
    }
}
