import Testing
@testable import SIP

private let suites: [(name: String, keyLength: Int)] = [
    ("AES_CM_128_HMAC_SHA1_80", 30), ("AES_CM_128_HMAC_SHA1_32", 30), ("AEAD_AES_128_GCM", 28),
]

private func key(_ suite: String) -> [UInt8] {
    let length = suites.first { $0.name == suite }!.keyLength
    return (0..<length).map { UInt8($0) &* 3 &+ 1 }
}

private func sdp(_ lines: String...) -> String { lines.joined(separator: "\r\n") + "\r\n" }

@Suite("SDP (RFC 4566) and offer/answer (RFC 3264)")
struct SDPTests {
    let baresipOffer = sdp(
        "v=0", "o=- 1234 5678 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0",
        "m=audio 40000 RTP/AVP 96 9 8 0 101 100", "b=AS:64",
        "a=rtpmap:96 opus/48000/2", "a=fmtp:96 stereo=1;sprop-stereo=1", "a=rtpmap:9 G722/8000",
        "a=rtpmap:101 telephone-event/48000", "a=rtpmap:100 telephone-event/8000", "a=fmtp:100 0-15",
        "a=ptime:20", "a=sendrecv", "a=rtcp-mux",
        "m=video 40002 RTP/AVP 97", "a=rtpmap:97 H264/90000")

    @Test("Parses and serializes back to the same lines")
    func roundTrip() throws {
        let session = try SDPParser.parse(baresipOffer)
        #expect(session.origin.sessionVersion == 5678 && session.connection?.address == "192.0.2.10")
        #expect(session.media.count == 2)
        let audio = session.media[0]
        #expect(audio.formats == ["96", "9", "8", "0", "101", "100"])
        #expect(audio.rtpmap(for: 96) == SDPRTPMap(payloadType: 96, encoding: "opus", clockRate: 48000, channels: 2))
        #expect(audio.payloadFormats.map(\.encoding) == ["opus", "G722", "PCMA", "PCMU", "telephone-event", "telephone-event"])
        #expect(audio.fmtp(for: 100) == "0-15")
        #expect(audio.otherLines == [.init(type: "b", value: "AS:64")])
        #expect(session.serialized == baresipOffer)
        #expect(try SDPParser.parse(session.serialized) == session)
    }

    @Test("Bad descriptions are refused with the line number", arguments: [
        ("o=- 1 1 IN IP4 h\r\n", 1, "must start with v="),
        ("v=1\r\n", 1, "unsupported version 1"),
        ("v=0\r\no=- 1 IN IP4 h\r\ns=-\r\n", 2, "o= needs 6 fields with a numeric version"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nm=audio x RTP/AVP 0\r\n", 5, "bad port x"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nm=audio /// RTP/AVP 0\r\n", 5, "bad port ///"),  // SDPFuzzer
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nm=audio 5/ RTP/AVP 0\r\n", 5, "bad port count 5/"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 5 RTP/AVP 0\r\n", 4, "no c= for this media section or the session"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nbogus\r\n", 4, "expected <letter>=<value>"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IPX h\r\n", 4, "unknown address type IPX"),
    ])
    func refused(text: String, line: Int, reason: String) {
        #expect(throws: SDPParser.Error(line: line, reason: reason)) { try SDPParser.parse(text) }
    }

    @Test("Bare LF line ends and a missing t= are accepted")
    func liberal() throws {
        let session = try SDPParser.parse("v=0\no=- 1 1 IN IP6 ::1\ns=x\nc=IN IP6 ::1\nm=audio 5004 RTP/AVP 9\n")
        #expect(session.media[0].payloadFormats.first?.encoding == "G722")  // static type, no rtpmap
        #expect(session.otherLines.contains(.init(type: "t", value: "0 0")))
    }

    @Test("Answer: Opus wins when shared; the offerer's payload types and m-line order are kept; video refused with port 0")
    func answerOpus() throws {
        let offer = try SDPParser.parse(baresipOffer)
        let policy = SDPAudioPolicy(codecs: [.g722, .opus, .pcma])
        let (answer, negotiated) = try SDPOfferAnswer.answer(offer: offer, policy: policy, address: "192.0.2.1", port: 20000, sessionID: "9", makeKey: key)
        #expect(negotiated.codec == .opus && negotiated.payloadType == 96)
        #expect(negotiated.telephoneEventPayloadType == 101)  // the 48 kHz one, matching Opus
        #expect(negotiated.remoteAddress == "192.0.2.10" && negotiated.remotePort == 40000)
        #expect(negotiated.rtcpMux && negotiated.remoteRTCPPort == 40000)
        #expect(negotiated.ptime == 20 && negotiated.direction == .sendrecv)
        #expect(answer.media.count == 2)
        #expect(answer.media[0].formats == ["96", "101"] && answer.media[0].port == 20000)
        #expect(answer.media[0].rtpmap(for: 96)?.clockRate == 48000)
        #expect(answer.media[1].port == 0 && answer.media[1].type == "video" && answer.media[1].formats == ["97"])
        // The answer itself parses.
        #expect(try SDPParser.parse(answer.serialized) == answer)
    }

    @Test("Answer: G722/8000 beats PCMA and takes the 8 kHz telephone-event")
    func answerG722() throws {
        let offer = try SDPParser.parse(baresipOffer)
        let (answer, negotiated) = try SDPOfferAnswer.answer(
            offer: offer, policy: SDPAudioPolicy(codecs: [.pcma, .g722]), address: "192.0.2.1", port: 20000, sessionID: "9", makeKey: key)
        #expect(negotiated.codec == .g722 && negotiated.payloadType == 9)
        #expect(negotiated.telephoneEventPayloadType == 100)
        #expect(answer.media[0].formats == ["9", "100"])
        #expect(answer.media[0].rtpmap(for: 9) == SDPRTPMap(payloadType: 9, encoding: "G722", clockRate: 8000))
    }

    @Test("Answer: no shared codec, or plain RTP where SRTP is required, is refused (→ 488)")
    func answerRefused() throws {
        let offer = try SDPParser.parse(baresipOffer)
        #expect(throws: SDPOfferAnswerError.self) {
            try SDPOfferAnswer.answer(offer: offer, policy: SDPAudioPolicy(codecs: [.pcmu, .g722].filter { _ in false }), address: "h", port: 1, sessionID: "1", makeKey: key)
        }
        do {
            _ = try SDPOfferAnswer.answer(offer: offer, policy: SDPAudioPolicy(codecs: [.opus], srtp: .required, cryptoSuites: suites), address: "h", port: 1, sessionID: "1", makeKey: key)
            Issue.record("plain RTP accepted where SRTP is required")
        } catch {
            #expect(error == .noAcceptableAudio("m-line 1: profile RTP/AVP, SRTP required; m-line 2: not audio"))
        }
    }

    @Test("Direction: sendonly is answered recvonly, inactive inactive (RFC 3264 §6.1)", arguments: [
        (SDPDirection.sendonly, SDPDirection.recvonly), (.recvonly, .sendonly), (.inactive, .inactive), (.sendrecv, .sendrecv),
    ])
    func direction(offered: SDPDirection, answered: SDPDirection) throws {
        var offer = try SDPParser.parse(baresipOffer)
        offer.media[0].setDirection(offered)
        let (answer, negotiated) = try SDPOfferAnswer.answer(offer: offer, policy: SDPAudioPolicy(codecs: [.g722]), address: "h", port: 1, sessionID: "1", makeKey: key)
        #expect(answer.media[0].direction == answered && negotiated.direction == answered)
    }

    @Test("Hold the old ways: a session-level direction, and c=0.0.0.0 (RFC 2543 hold, RFC 3264 §8.4), are answered as holds")
    func oldStyleHold() throws {
        // A session-level a=sendonly applies to a stream that states none.
        var text = baresipOffer.replacingOccurrences(of: "a=sendrecv\r\n", with: "")
        text = text.replacingOccurrences(of: "t=0 0\r\n", with: "t=0 0\r\na=sendonly\r\n")
        let sessionLevel = try SDPParser.parse(text)
        let (answer1, negotiated1) = try SDPOfferAnswer.answer(offer: sessionLevel, policy: SDPAudioPolicy(codecs: [.g722]), address: "h", port: 1, sessionID: "1", makeKey: key)
        #expect(answer1.media[0].direction == .recvonly && !negotiated1.direction.sends && negotiated1.direction.receives)

        // c=0.0.0.0 with sendrecv: the peer receives nothing, so we only receive.
        let zero = try SDPParser.parse(baresipOffer.replacingOccurrences(of: "c=IN IP4 192.0.2.10", with: "c=IN IP4 0.0.0.0"))
        let (answer2, negotiated2) = try SDPOfferAnswer.answer(offer: zero, policy: SDPAudioPolicy(codecs: [.g722]), address: "h", port: 1, sessionID: "1", makeKey: key)
        #expect(answer2.media[0].direction == .recvonly && negotiated2.direction == .recvonly)
        // c=0.0.0.0 with sendonly or inactive stays inactive.
        let zeroInactive = try SDPParser.parse(baresipOffer.replacingOccurrences(of: "c=IN IP4 192.0.2.10", with: "c=IN IP4 0.0.0.0")
            .replacingOccurrences(of: "a=sendrecv", with: "a=recvonly"))
        #expect(zeroInactive.media[0].effectiveDirection(in: zeroInactive) == .inactive)
    }

    @Test("The offerer's view never widens its own offer: we offered sendonly, a sendrecv answer leaves us sendonly")
    func answerDirectionWithinOffer() throws {
        var offer = SDPOfferAnswer.makeOffer(policy: SDPAudioPolicy(codecs: [.g722]), address: "192.0.2.1", port: 4000, sessionID: "7", makeKey: key)
        offer.media[0].setDirection(.sendonly)
        var answer = offer
        answer.media[0].setDirection(.sendrecv)
        #expect(try SDPOfferAnswer.negotiate(offer: offer, answer: answer).direction == .sendonly)
        answer.media[0].setDirection(.recvonly)
        #expect(try SDPOfferAnswer.negotiate(offer: offer, answer: answer).direction == .sendonly)
        answer.media[0].setDirection(.inactive)
        #expect(try SDPOfferAnswer.negotiate(offer: offer, answer: answer).direction == .inactive)
        offer.media[0].setDirection(.sendrecv)
        answer.media[0].setDirection(.sendonly)
        #expect(try SDPOfferAnswer.negotiate(offer: offer, answer: answer).direction == .recvonly)
    }

    @Test("A preferred codec (the other end's) wins when both have it, else the best bandwidth; an offer lists preferred codecs first")
    func codecPreference() throws {
        let offer = try SDPParser.parse(baresipOffer)
        let policy = SDPAudioPolicy(codecs: [.opus, .g722, .pcma])
        let plain = try SDPOfferAnswer.answer(offer: offer, policy: policy, address: "h", port: 1, sessionID: "1", makeKey: key)
        #expect(plain.negotiated.codec == .opus)
        let preferred = try SDPOfferAnswer.answer(offer: offer, policy: policy, address: "h", port: 1, sessionID: "1", preferring: [.g722], makeKey: key)
        #expect(preferred.negotiated.codec == .g722 && preferred.answer.media[0].formats.first == "9")
        // PCMU is not ours to answer with: the preference falls back to the best shared.
        let unshared = try SDPOfferAnswer.answer(offer: offer, policy: policy, address: "h", port: 1, sessionID: "1", preferring: [.pcmu], makeKey: key)
        #expect(unshared.negotiated.codec == .opus)

        let ours = SDPOfferAnswer.makeOffer(policy: policy, address: "192.0.2.1", port: 4000, sessionID: "1", preferring: [.g722, .pcmu], makeKey: key)
        #expect(ours.media[0].payloadFormats.compactMap(SDPAudioCodec.init) == [.g722, .opus, .pcma])
        let byBandwidth = SDPOfferAnswer.makeOffer(policy: policy, address: "192.0.2.1", port: 4000, sessionID: "1", makeKey: key)
        #expect(byBandwidth.media[0].payloadFormats.compactMap(SDPAudioCodec.init) == [.opus, .g722, .pcma])
    }

    @Test("SDES: the first usable crypto line is answered with the same tag and a fresh key; MKI lines are skipped")
    func sdesAnswer() throws {
        let theirKey = (0..<30).map { UInt8(200 &- $0) }
        let offer = try SDPParser.parse(sdp(
            "v=0", "o=- 1 1 IN IP4 10.0.0.2", "s=-", "c=IN IP4 10.0.0.2", "t=0 0",
            "m=audio 5004 RTP/SAVP 9 8 101", "a=rtpmap:101 telephone-event/8000",
            "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:" + Base64.encode([UInt8](repeating: 1, count: 46)),
            "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:" + Base64.encode(theirKey) + "|2^20|1:4",
            "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:" + Base64.encode(theirKey) + "|2^31"))
        let policy = SDPAudioPolicy(codecs: [.g722, .pcma], srtp: .required, cryptoSuites: suites)
        let (answer, negotiated) = try SDPOfferAnswer.answer(offer: offer, policy: policy, address: "10.0.0.1", port: 30000, sessionID: "1", makeKey: key)
        #expect(negotiated.srtp == .init(suite: "AES_CM_128_HMAC_SHA1_32", localKey: key("AES_CM_128_HMAC_SHA1_32"), remoteKey: theirKey))
        let crypto = try #require(answer.media[0].attributes(named: "crypto").first.flatMap(SDPCryptoAttribute.init(attributeValue:)))
        #expect(crypto.tag == 3 && crypto.suite == "AES_CM_128_HMAC_SHA1_32" && crypto.keyMaterial == key("AES_CM_128_HMAC_SHA1_32"))
        #expect(answer.media[0].proto == "RTP/SAVP")
        #expect(!negotiated.rtcpMux && negotiated.remoteRTCPPort == 5005)
    }

    @Test("Offer → answer → negotiate: both sides agree on codec, payload types, keys and ports")
    func fullExchange() throws {
        let cloudPolicy = SDPAudioPolicy(codecs: [.opus, .g722, .pcma, .pcmu], srtp: .required, cryptoSuites: suites)
        let offer = SDPOfferAnswer.makeOffer(policy: cloudPolicy, address: "2001:db8::1", port: 10000, sessionID: "77", makeKey: key)
        let offerText = offer.serialized
        #expect(offerText.contains("m=audio 10000 RTP/SAVP 111 9 8 0 101 100\r\n"))
        #expect(offerText.contains("c=IN IP6 2001:db8::1\r\n"))
        #expect(offerText.contains("a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"))
        #expect(offerText.contains("a=rtpmap:101 telephone-event/48000\r\n") && offerText.contains("a=rtpmap:100 telephone-event/8000\r\n"))
        #expect(offerText.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"))

        // A G.722-only legacy-grade answerer.
        let answererKey: (String) -> [UInt8] = { _ in [UInt8](repeating: 9, count: 30) }
        let (answer, theirs) = try SDPOfferAnswer.answer(
            offer: try SDPParser.parse(offerText), policy: SDPAudioPolicy(codecs: [.g722], srtp: .required, cryptoSuites: suites),
            address: "2001:db8::2", port: 20000, sessionID: "5", makeKey: answererKey)
        let ours = try SDPOfferAnswer.negotiate(offer: offer, answer: try SDPParser.parse(answer.serialized))
        #expect(ours.codec == .g722 && theirs.codec == .g722 && ours.payloadType == 9)
        #expect(ours.telephoneEventPayloadType == 100 && theirs.telephoneEventPayloadType == 100)
        #expect(ours.remoteAddress == "2001:db8::2" && ours.remotePort == 20000 && theirs.remotePort == 10000)
        #expect(ours.srtp?.localKey == theirs.srtp?.remoteKey && ours.srtp?.remoteKey == theirs.srtp?.localKey)
        #expect(ours.srtp?.suite == "AES_CM_128_HMAC_SHA1_80" && ours.rtcpMux)
    }

    @Test("A bad answer is refused: wrong m-line count, crypto tag never offered")
    func badAnswer() throws {
        let policy = SDPAudioPolicy(codecs: [.g722], srtp: .required, cryptoSuites: suites)
        let offer = SDPOfferAnswer.makeOffer(policy: policy, address: "10.0.0.1", port: 10000, sessionID: "1", makeKey: key)
        var answer = offer
        answer.media.append(answer.media[0])
        #expect(throws: SDPOfferAnswerError.badAnswer("answer has 2 m-lines, offer 1")) { try SDPOfferAnswer.negotiate(offer: offer, answer: answer) }
        answer = offer
        answer.media[0].attributes.removeAll { $0.name == "crypto" }
        answer.media[0].attributes.append(SDPAttribute("crypto", SDPCryptoAttribute(tag: 9, suite: "AES_CM_128_HMAC_SHA1_80", keyMaterial: key("AES_CM_128_HMAC_SHA1_80")).attributeValue))
        #expect(throws: SDPOfferAnswerError.badAnswer("a=crypto tag 9 does not match an offered suite")) { try SDPOfferAnswer.negotiate(offer: offer, answer: answer) }
    }

    @Test("Base64 round-trips and refuses junk; dtmf-relay bodies parse and print")
    func base64AndDTMFRelay() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("Man".utf8)) == "TWFu" && Base64.encode(Array("Ma".utf8)) == "TWE=")
        #expect(Base64.decode("TW=u") == nil && Base64.decode("T*") == nil)

        #expect(DTMFRelayBody("Signal=5\r\nDuration=160\r\n") == DTMFRelayBody(signal: "5", duration: 160))
        #expect(DTMFRelayBody("signal = #\nduration= 100") == DTMFRelayBody(signal: "#", duration: 100))
        #expect(DTMFRelayBody("Signal=a\r\n")?.signal == "A")
        #expect(DTMFRelayBody("Signal=x\r\nDuration=100") == nil)
        // "ß" uppercases to "SS", two characters: that trapped in Character(_:) (debug builds).
        #expect(DTMFRelayBody("Signal=ß\r\n") == nil && DTMFRelayBody("Signal=ﬀ") == nil && DTMFRelayBody(signal: "ß", duration: 100) == nil)
        #expect(DTMFRelayBody("Duration=100") == nil)
        #expect(DTMFRelayBody(signal: "9", duration: 250)?.text == "Signal=9\r\nDuration=250\r\n")
    }
}

@Suite("SDP line order")
struct SDPLineOrderTests {
    @Test("Session and media lines sent out of RFC 4566 order are put in it, so the description round-trips (found by SDPFuzzer)")
    func outOfOrder() throws {
        let text = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nz=0 0\r\na=x\r\nt=1 2\r\nb=AS:1\r\nm=audio 5 RTP/AVP 0\r\nk=clear:x\r\nb=AS:2\r\ni=info\r\n"
        let session = try SDPParser.parse(text)
        #expect(session.otherLines.map(\.type) == ["b", "t", "t", "z"])
        #expect(session.media[0].otherLines.map(\.type) == ["i", "b", "k"])
        #expect(try SDPParser.parse(session.serialized) == session)
    }

    @Test("An empty s= reads as \"-\", what we write for it, so it round-trips (found by SDPFuzzer)")
    func emptySessionName() throws {
        for text in ["v=0\no=- 1 1 IN IP6 ::1\ns=", "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=\r\n"] {
            let session = try SDPParser.parse(text)
            #expect(session.sessionName == "-")
            #expect(try SDPParser.parse(session.serialized) == session)
        }
    }
}
