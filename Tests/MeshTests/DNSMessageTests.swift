import Mesh
import NetworkAddress
import Testing

@Suite("DNS messages (mDNS)")
struct DNSMessageTests {
    @Test func aResponseSurvivesEncodingAndDecoding() throws {
        let message = DNSMessage(flags: DNSMessage.responseFlags, answers: [
            .init(name: "_symphony-mesh._tcp.local", data: .ptr("gw1._symphony-mesh._tcp.local"), ttl: 120),
            .init(name: "gw1._symphony-mesh._tcp.local", data: .srv(priority: 0, weight: 0, port: 5061, target: "symphony-gw1.local"), cacheFlush: true, ttl: 120),
            .init(name: "gw1._symphony-mesh._tcp.local", data: .txt(["txtvers=1", "numbers=101,102"]), cacheFlush: true, ttl: 120),
            .init(name: "symphony-gw1.local", data: .aaaa([0xFE, 0x80] + Array(repeating: 0, count: 13) + [1]), cacheFlush: true, ttl: 0),
        ])
        let decoded = try DNSMessage(decoding: message.encoded())
        #expect(decoded == message)
        #expect(decoded.isResponse)
    }

    @Test func questionsKeepTheirUnicastBit() throws {
        let query = DNSMessage(questions: [.init(name: "_symphony-mesh._tcp.local", type: .ptr, unicastResponse: true)])
        let decoded = try DNSMessage(decoding: query.encoded())
        #expect(decoded.questions.first?.unicastResponse == true && decoded.questions.first?.type == 12 && !decoded.isResponse)
    }

    /// RFC 1035 §4.1.4: a name may end in a pointer to an earlier one (avahi compresses).
    @Test func compressedNamesAreFollowed() throws {
        var bytes: [UInt8] = [0, 0, 0x84, 0, 0, 0, 0, 2, 0, 0, 0, 0]
        // answer 1: _svc._tcp.local PTR → a._svc._tcp.local (compressed)
        let ownerOffset = bytes.count
        bytes += [4] + Array("_svc".utf8) + [4] + Array("_tcp".utf8) + [5] + Array("local".utf8) + [0]
        bytes += [0, 12, 0, 1, 0, 0, 0, 120]
        bytes += [0, 4, 1, UInt8(ascii: "a"), 0xC0, UInt8(ownerOffset)]
        // answer 2: the owner name entirely a pointer
        bytes += [0xC0, UInt8(ownerOffset), 0, 12, 0, 1, 0, 0, 0, 60, 0, 2, 0xC0, UInt8(ownerOffset)]
        let decoded = try DNSMessage(decoding: bytes)
        #expect(decoded.answers.count == 2)
        #expect(decoded.answers[0].data == .ptr("a._svc._tcp.local"))
        #expect(decoded.answers[1].name == "_svc._tcp.local" && decoded.answers[1].ttl == 60)
    }

    @Test func brokenPacketsAreRefusedNotCrashedOn() {
        #expect(throws: DNSMessage.DecodingError.truncated) { try DNSMessage(decoding: [0, 0, 0]) }
        // A pointer loop: the name points at itself.
        let loop: [UInt8] = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 12, 0, 1]
        #expect(throws: DNSMessage.DecodingError.badName) { try DNSMessage(decoding: loop) }
        // An AAAA of the wrong length.
        var bad = DNSMessage(flags: DNSMessage.responseFlags, answers: [.init(name: "x.local", data: .other(type: 28, bytes: [1, 2, 3]), ttl: 1)]).encoded()
        #expect(throws: DNSMessage.DecodingError.badRecord) { try DNSMessage(decoding: bad) }
        bad.removeLast()
        #expect(throws: DNSMessage.DecodingError.truncated) { try DNSMessage(decoding: bad) }
    }

    @Test("A name or TXT record too long for DNS is cut to what DNS allows, never a trap in the 16-bit length (a device name from the claim answer went there)")
    func oversizedRecordsAreCut() throws {
        let long = Array(repeating: "a", count: 33_000).joined(separator: ".")
        let message = DNSMessage(flags: DNSMessage.responseFlags, answers: [
            .init(name: "_symphony-mesh._tcp.local", data: .ptr(long), ttl: 120),
            .init(name: long, data: .srv(priority: 0, weight: 0, port: 5061, target: long), ttl: 120),
            .init(name: "x.local", data: .txt(Array(repeating: String(repeating: "t", count: 255), count: 300)), ttl: 120),
        ])
        let decoded = try DNSMessage(decoding: message.encoded())
        #expect(decoded.answers.count == 3)
        if case .ptr(let name) = decoded.answers[0].data { #expect(name.utf8.count <= 255) } else { Issue.record("no PTR") }
        if case .txt(let strings) = decoded.answers[2].data { #expect(strings.count < 300 && !strings.isEmpty) } else { Issue.record("no TXT") }
    }
}
