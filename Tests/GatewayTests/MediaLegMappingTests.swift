import Gateway
import Media
import NIOCore
import SIP
import Testing

/// Offer/answer results (SIP) turned into media-leg configurations (Media), through a real
/// exchange: a legacy G.722 offer answered, a cloud SRTP offer negotiated.
@Suite("SDP to media legs")
struct MediaLegMappingTests {
    static func key(_ suite: String) -> [UInt8] { SRTPKeyMaterial.random(SRTPCryptoSuite(rawValue: suite)!).bytes }

    @Test func aLegacyG722OfferBecomesAPlainG722Leg() throws {
        let offer = SDPOfferAnswer.makeOffer(
            policy: SDPAudioPolicy(codecs: [.g722, .pcma]), address: "192.0.2.10", port: 40000, sessionID: "1", makeKey: Self.key)
        let (_, negotiated) = try SDPOfferAnswer.answer(
            offer: offer, policy: SDPAudioPolicy(codecs: [.g722, .pcma, .pcmu]), address: "192.0.2.1", port: 20000, sessionID: "2", makeKey: Self.key)
        let leg = try MediaLegMapping.configuration(negotiated)
        #expect(leg.codec == .g722 && leg.payloadType == 9)
        #expect(leg.remote == (try SocketAddress(ipAddress: "192.0.2.10", port: 40000)))
        #expect(leg.srtp == nil)
        #expect(leg.dtmf == .telephoneEvent(payloadType: 100), "telephone-event at G.722's 8 kHz RTP clock")
    }

    @Test("Whatever a negotiated result holds — ports past 16 bits, any ptime, any event clock — the mapping gives a leg or an error, never a trap")
    func outOfRangeValuesAreErrorsOrDefaults() throws {
        let offer = SDPOfferAnswer.makeOffer(
            policy: SDPAudioPolicy(codecs: [.g722]), address: "192.0.2.10", port: 40000, sessionID: "1", makeKey: Self.key)
        var (_, negotiated) = try SDPOfferAnswer.answer(
            offer: offer, policy: SDPAudioPolicy(codecs: [.g722], rtcpMux: false), address: "192.0.2.1", port: 20000, sessionID: "2", makeKey: Self.key)
        negotiated.rtcpMux = false
        for port in [65536, 70000, -1, Int.max, Int.min] {
            negotiated.remoteRTCPPort = port
            #expect(try MediaLegMapping.configuration(negotiated).remoteRTCP == nil)
            var bad = negotiated
            bad.remotePort = port
            #expect(throws: MediaLegMapping.MappingError.badAddress("192.0.2.10", port)) { try MediaLegMapping.configuration(bad) }
        }
        negotiated.ptime = 999_999_999_999_999
        negotiated.telephoneEventClockRate = 9_000_000_000_000_000_000
        let leg = try MediaLegMapping.configuration(negotiated)
        #expect(leg.ptime == 20 && leg.dtmf == .sipInfo)
    }

    @Test func aCloudOpusAnswerBecomesAnSRTPOpusLegAndTranscodesAgainstG722() throws {
        let policy = SDPAudioPolicy(
            codecs: [.opus, .g722], srtp: .required, cryptoSuites: [("AES_CM_128_HMAC_SHA1_80", 30)])
        let offer = SDPOfferAnswer.makeOffer(policy: policy, address: "192.0.2.1", port: 20002, sessionID: "3", makeKey: Self.key)
        let (answer, answered) = try SDPOfferAnswer.answer(
            offer: offer, policy: SDPAudioPolicy(codecs: [.opus], srtp: .required, cryptoSuites: [("AES_CM_128_HMAC_SHA1_80", 30)]),
            address: "198.51.100.7", port: 30000, sessionID: "4", makeKey: Self.key)
        let negotiated = try SDPOfferAnswer.negotiate(offer: offer, answer: answer)
        let cloud = try MediaLegMapping.configuration(negotiated)
        #expect(cloud.codec == .opus && cloud.payloadType == 111)
        #expect(cloud.srtp?.local.suite == .aesCM128HMACSHA1_80)
        // Our local key is the one in our offer; the peer's is the one in its answer.
        #expect(cloud.srtp?.local.bytes == negotiated.srtp?.localKey && cloud.srtp?.remote.bytes == answered.srtp?.localKey)
        #expect(cloud.dtmf == .telephoneEvent(payloadType: 101), "telephone-event at Opus's 48 kHz clock")

        let legacy = MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .sipInfo, remote: try SocketAddress(ipAddress: "192.0.2.10", port: 40000))
        #expect(!MediaLegMapping.isPassthrough(legacy, cloud))
        var g722Cloud = cloud
        g722Cloud.codec = .g722
        #expect(MediaLegMapping.isPassthrough(legacy, g722Cloud))
    }

    @Test func aPeerWithoutTelephoneEventGetsDigitsBySIPInfo() throws {
        let offer = SDPOfferAnswer.makeOffer(
            policy: SDPAudioPolicy(codecs: [.pcmu], telephoneEvent: false), address: "192.0.2.10", port: 40010, sessionID: "5", makeKey: Self.key)
        let (_, negotiated) = try SDPOfferAnswer.answer(
            offer: offer, policy: SDPAudioPolicy(codecs: [.g722, .pcmu]), address: "192.0.2.1", port: 20010, sessionID: "6", makeKey: Self.key)
        #expect(try MediaLegMapping.configuration(negotiated).dtmf == .sipInfo)
    }
}
