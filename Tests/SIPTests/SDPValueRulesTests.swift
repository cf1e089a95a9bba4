import Testing
@testable import SIP

private func sdp(_ lines: String...) -> String { lines.joined(separator: "\r\n") + "\r\n" }

private func legacyOffer(port: Int = 40000, _ extra: String...) -> String {
    sdp(["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0", "m=audio \(port) RTP/AVP 9 101",
         "a=rtpmap:9 G722/8000", "a=rtpmap:101 telephone-event/8000"] + extra)
}

private func sdp(_ lines: [String]) -> String { lines.joined(separator: "\r\n") + "\r\n" }

/// The SDP values that become ports, frame sizes and clocks, as a hostile caller would set them
/// (docs/RELIABILITY.md). Each of the refusals here was a trap in the gateway before.
@Suite("SDP values from outside are range-checked")
struct SDPValueRulesTests {
    let legacy = SDPAudioPolicy(codecs: [.g722, .pcma, .pcmu], srtp: .off, rtcpMux: false)

    func answer(_ text: String, policy: SDPAudioPolicy? = nil) throws -> SDPNegotiatedAudio {
        let offer = try SDPParser.parse(text)
        return try SDPOfferAnswer.answer(offer: offer, policy: policy ?? legacy, address: "192.0.2.1", port: 20000, sessionID: "1") { _ in [] }.negotiated
    }

    @Test("An RTCP port outside 1–65535 refuses the stream (→ 488): RTP port 65535 without rtcp-mux, a=rtcp:70000, 65536, 0, -1", arguments: [
        legacyOffer(port: 65535), legacyOffer("a=rtcp:70000"), legacyOffer("a=rtcp:65536"), legacyOffer("a=rtcp:0"), legacyOffer("a=rtcp:-1"),
        legacyOffer("a=rtcp:99999999999999999999999 IN IP4 192.0.2.10"), legacyOffer("a=rtcp:+65536"),
    ])
    func rtcpPortOutOfRange(offer: String) {
        #expect(throws: SDPOfferAnswerError.self) { try answer(offer) }
    }

    @Test("RTCP ports in range are taken: a=rtcp (RFC 3605), else RTP + 1; an a=rtcp that is no number is ignored")
    func rtcpPortInRange() throws {
        #expect(try answer(legacyOffer(port: 65534)).remoteRTCPPort == 65535)
        #expect(try answer(legacyOffer("a=rtcp:65535")).remoteRTCPPort == 65535)
        #expect(try answer(legacyOffer("a=rtcp:53020 IN IP4 192.0.2.11")).remoteRTCPPort == 53020)
        #expect(try answer(legacyOffer("a=rtcp:junk")).remoteRTCPPort == 40001)
        // With rtcp-mux agreed, RTP port 65535 is fine: RTCP goes to the same port (RFC 5761).
        var muxed = legacy
        muxed.rtcpMux = true
        let negotiated = try answer(legacyOffer(port: 65535, "a=rtcp-mux"), policy: muxed)
        #expect(negotiated.rtcpMux && negotiated.remoteRTCPPort == 65535)
    }

    @Test("The same holds for an answer to our offer (→ the call is refused, never a socket address that traps)")
    func answerWithBadRTCPPort() throws {
        let ours = SDPOfferAnswer.makeOffer(policy: legacy, address: "192.0.2.1", port: 20000, sessionID: "1") { _ in [] }
        for extra in ["a=rtcp:70000", ""] {
            let theirs = try SDPParser.parse(legacyOffer(port: extra.isEmpty ? 65535 : 40000, extra))
            #expect(throws: SDPOfferAnswerError.self) { try SDPOfferAnswer.negotiate(offer: ours, answer: theirs) }
        }
    }

    @Test("ptime outside 10–120 ms is taken as absent (the 20 ms default, RFC 4566 §6); in range it is kept", arguments: [
        ("999999999999999", nil), ("0", nil), ("-20", nil), ("9", nil), ("121", nil), ("1e400", nil), ("nan", nil), ("inf", nil),
        ("0.5", nil), ("9223372036854775808", nil), ("", nil), ("twenty", nil), ("20", 20), ("30", 30), ("120", 120), ("10", 10),
        ("20.0", 20), (" 40 ", 40),
    ] as [(String, Int?)])
    func packetTime(value: String, expected: Int?) throws {
        #expect(SDPValueRules.packetTime(value) == expected)
        #expect(try answer(legacyOffer("a=ptime:\(value)")).ptime == expected)
    }

    @Test("A telephone-event at a clock no codec here counts in is not used: the leg takes SIP INFO", arguments: [
        "9000000000000000000", "49", "1", "2147483648",
    ])
    func telephoneEventClock(rate: String) throws {
        let text = sdp(["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0", "m=audio 40000 RTP/AVP 9 101",
                        "a=rtpmap:9 G722/8000", "a=rtpmap:101 telephone-event/\(rate)"])
        let negotiated = try answer(text)
        #expect(negotiated.telephoneEventPayloadType == nil && negotiated.telephoneEventClockRate == nil)
    }

    @Test("Opus with telephone-event/8000 (baresip 1.0) keeps its events; the codec's own clock is preferred")
    func telephoneEventOtherKnownClock() throws {
        let policy = SDPAudioPolicy(codecs: [.opus], srtp: .off)
        let text = sdp(["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0", "m=audio 40000 RTP/AVP 96 100",
                        "a=rtpmap:96 opus/48000/2", "a=rtpmap:100 telephone-event/8000"])
        #expect(try answer(text, policy: policy).telephoneEventClockRate == 8000)
    }

    @Test("Payload formats: each payload type once, the first rtpmap wins, numbers outside 0–127 and junk skipped, in one pass over thousands")
    func payloadFormats() throws {
        var lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0"]
        let formats = (0..<4000).map { String($0 % 300) } + ["-1", "0009", "99999999999999999999", "x"]
        lines.append("m=audio 40000 RTP/AVP " + formats.joined(separator: " "))
        lines.append("a=rtpmap:96 opus/48000/2")
        lines.append("a=rtpmap:96 PCMU/8000")
        for n in 0..<1000 { lines.append("a=rtpmap:\(97 + n % 30) telephone-event/8000") }
        let media = try SDPParser.parse(sdp(lines)).media[0]
        let maps = media.payloadFormats
        #expect(Set(maps.map(\.payloadType)).count == maps.count, "no payload type twice")
        #expect(maps.first { $0.payloadType == 96 }?.encoding == "opus")
        #expect(maps.allSatisfy { (0...127).contains($0.payloadType) })
        #expect(maps.map(\.payloadType).prefix(3) == [0, 8, 9], "m-line order, static types resolved")
    }
}
