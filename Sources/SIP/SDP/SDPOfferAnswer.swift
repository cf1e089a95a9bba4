/// The audio codecs the offer/answer model knows, ranked by audio bandwidth: the answer picks the
/// shared codec with the highest rank, whatever order the offer lists them in (ARCHITECTURE.md:
/// Opus up to 20 kHz, then G.722 7 kHz, then G.711).
public enum SDPAudioCodec: String, Sendable, CaseIterable, Hashable {
    case opus, g722, pcma, pcmu

    /// Encoding name as in `a=rtpmap`.
    public var encoding: String {
        switch self {
        case .opus: "opus"
        case .g722: "G722"
        case .pcma: "PCMA"
        case .pcmu: "PCMU"
        }
    }

    /// RTP clock rate, which is not the sample rate for Opus and G.722 (RFC 7587 §4.1: always
    /// 48000/2; RFC 3551 §4.5.2: G722/8000 although it samples at 16 kHz).
    public var clockRate: Int { self == .opus ? 48000 : 8000 }
    public var channels: Int { self == .opus ? 2 : 1 }

    /// The RFC 3551 static payload type, or the dynamic one this engine offers.
    public var defaultPayloadType: Int {
        switch self {
        case .opus: 111
        case .g722: 9
        case .pcma: 8
        case .pcmu: 0
        }
    }

    public var bandwidthRank: Int {
        switch self {
        case .opus: 4
        case .g722: 3
        case .pcma: 2
        case .pcmu: 1
        }
    }

    public func matches(_ map: SDPRTPMap) -> Bool {
        map.isEncoding(encoding) && map.clockRate == clockRate && (self != .opus || map.channels == 2)
    }

    public init?(_ map: SDPRTPMap) {
        guard let codec = Self.allCases.first(where: { $0.matches(map) }) else { return nil }
        self = codec
    }
}

/// What one side is willing to do for audio; the input of both offer and answer.
public struct SDPAudioPolicy: Sendable {
    public enum SRTPUse: Sendable, Equatable {
        /// Plain RTP/AVP only (the legacy LAN side).
        case off
        /// RTP/SAVP with SDES only (the cloud and mesh side, ARCHITECTURE.md).
        case required
        /// Answer either; offer RTP/SAVP.
        case optional
    }

    public var codecs: [SDPAudioCodec]
    public var telephoneEvent: Bool
    public var srtp: SRTPUse
    /// Crypto suite names in the order of preference of an offer, with their key‖salt length.
    public var cryptoSuites: [(name: String, keyLength: Int)]
    public var ptime: Int
    public var rtcpMux: Bool
    /// Opus fmtp (RFC 7587 §6.1): in-band FEC on, 10 ms minimum.
    public var opusParameters: String

    public init(
        codecs: [SDPAudioCodec], telephoneEvent: Bool = true, srtp: SRTPUse = .off,
        cryptoSuites: [(name: String, keyLength: Int)] = [], ptime: Int = 20, rtcpMux: Bool = true,
        opusParameters: String = "minptime=10;useinbandfec=1"
    ) {
        self.codecs = codecs
        self.telephoneEvent = telephoneEvent
        self.srtp = srtp
        self.cryptoSuites = cryptoSuites
        self.ptime = ptime
        self.rtcpMux = rtcpMux
        self.opusParameters = opusParameters
    }
}

/// The result of offer/answer for the one audio stream a call carries.
public struct SDPNegotiatedAudio: Sendable, Equatable {
    public struct SRTP: Sendable, Equatable {
        public var suite: String
        /// Key‖salt we protect with (sent in our SDP).
        public var localKey: [UInt8]
        /// Key‖salt the peer protects with (from its SDP).
        public var remoteKey: [UInt8]
    }

    /// Index of the m-line in the description.
    public var mediaIndex: Int
    public var codec: SDPAudioCodec
    public var payloadType: Int
    /// The peer's fmtp for the codec, if any (a hint: RFC 7587 §7).
    public var remoteFormatParameters: String?
    public var telephoneEventPayloadType: Int?
    /// The telephone-event's clock rate. It should be the codec's (RFC 4733 §2.1, and we offer one
    /// per clock rate); peers that pair Opus with telephone-event/8000 (baresip 1.0, many
    /// phones) are taken as they are.
    public var telephoneEventClockRate: Int?
    public var remoteAddress: String
    public var remotePort: Int
    public var remoteRTCPPort: Int
    public var rtcpMux: Bool
    /// Our direction after negotiation.
    public var direction: SDPDirection
    /// The peer's `a=ptime` when it is within `SDPValueRules.packetTimeMilliseconds`; nil means
    /// the 20 ms default.
    public var ptime: Int?
    public var srtp: SRTP?
}

public enum SDPOfferAnswerError: Error, Sendable, Equatable {
    /// No audio stream of the offer could be accepted: the call gets 488 (RFC 3261 §13.3.1.1).
    case noAcceptableAudio(String)
    /// The answer does not fit our offer.
    case badAnswer(String)
}

/// Offer/answer for audio (RFC 3264) with SDES (RFC 4568). Pure functions: keys come from the
/// caller's `makeKey` (the media engine's CSPRNG), addresses and ports from its port pool.
public enum SDPOfferAnswer {
    public static let telephoneEventPayloadTypes: [Int: Int] = [8000: 100, 16000: 102, 48000: 101]

    /// A new offer with one audio stream.
    /// `preferring`: codecs to list first, in that order (those the policy has) — the codec the
    /// other end of a bridged call speaks, so that an answerer that takes the first it supports
    /// takes the one that needs no transcoding; the rest follow by bandwidth.
    public static func makeOffer(
        policy: SDPAudioPolicy, address: String, port: Int, sessionID: String, sessionVersion: UInt64 = 1,
        preferring: [SDPAudioCodec] = [], makeKey: (String) -> [UInt8]
    ) -> SDPSession {
        var media = SDPMedia(type: "audio", port: port, proto: policy.srtp == .off ? "RTP/AVP" : "RTP/SAVP", formats: [])
        var clockRates: [Int] = []
        let first = preferring.filter { policy.codecs.contains($0) }
        let rest = policy.codecs.filter { !first.contains($0) }.sorted(by: { $0.bandwidthRank > $1.bandwidthRank })
        for codec in Self.unique(first + rest) {
            media.formats.append(String(codec.defaultPayloadType))
            media.attributes.append(SDPAttribute("rtpmap", SDPRTPMap(payloadType: codec.defaultPayloadType, encoding: codec.encoding, clockRate: codec.clockRate, channels: codec.channels).attributeValue))
            if codec == .opus { media.attributes.append(SDPAttribute("fmtp", "\(codec.defaultPayloadType) \(policy.opusParameters)")) }
            if !clockRates.contains(codec.clockRate) { clockRates.append(codec.clockRate) }
        }
        if policy.telephoneEvent {
            // One telephone-event per clock rate offered (RFC 4733 §7.1.1; ARCHITECTURE.md).
            for rate in clockRates {
                guard let pt = telephoneEventPayloadTypes[rate] else { continue }
                media.formats.append(String(pt))
                media.attributes.append(SDPAttribute("rtpmap", "\(pt) telephone-event/\(rate)"))
                media.attributes.append(SDPAttribute("fmtp", "\(pt) 0-16"))
            }
        }
        media.attributes.append(SDPAttribute("ptime", String(policy.ptime)))
        if policy.rtcpMux { media.attributes.append(SDPAttribute("rtcp-mux")) }
        if policy.srtp != .off {
            for (index, suite) in policy.cryptoSuites.enumerated() {
                let crypto = SDPCryptoAttribute(tag: index + 1, suite: suite.name, keyMaterial: makeKey(suite.name))
                media.attributes.append(SDPAttribute("crypto", crypto.attributeValue))
            }
        }
        media.attributes.append(SDPAttribute("sendrecv"))
        let connection = SDPSession.Connection(address: address)
        return SDPSession(
            origin: .init(sessionID: sessionID, sessionVersion: sessionVersion, addressType: connection.addressType, address: address),
            connection: connection, media: [media])
    }

    /// Answers an offer (RFC 3264 §6): the first acceptable audio stream is accepted with the best
    /// shared codec and the matching telephone-event, every other m-line is refused with port 0, in
    /// the offer's order and with the offer's payload type numbers. The best is the first of
    /// `preferring` that both have (the codec the other end of a bridged call took, so that no
    /// transcoding is needed), else the one of the highest bandwidth.
    public static func answer(
        offer: SDPSession, policy: SDPAudioPolicy, address: String, port: Int, sessionID: String,
        sessionVersion: UInt64 = 1, preferring: [SDPAudioCodec] = [], makeKey: (String) -> [UInt8]
    ) throws(SDPOfferAnswerError) -> (answer: SDPSession, negotiated: SDPNegotiatedAudio) {
        var negotiated: SDPNegotiatedAudio?
        var reasons: [String] = []
        var sections: [SDPMedia] = []
        for (index, offered) in offer.media.enumerated() {
            if negotiated == nil {
                switch accept(offered, index: index, session: offer, policy: policy, port: port, preferring: preferring, makeKey: makeKey) {
                case .success(let (section, result)):
                    sections.append(section)
                    negotiated = result
                    continue
                case .failure(let reason):
                    reasons.append("m-line \(index + 1): \(reason)")
                }
            }
            // RFC 3264 §6: a refused stream keeps its place with port 0 and at least one format.
            sections.append(SDPMedia(type: offered.type, port: 0, proto: offered.proto, formats: offered.formats.isEmpty ? ["0"] : offered.formats))
        }
        guard let negotiated else {
            throw .noAcceptableAudio(reasons.isEmpty ? "no media" : reasons.joined(separator: "; "))
        }
        let connection = SDPSession.Connection(address: address)
        let answer = SDPSession(
            origin: .init(sessionID: sessionID, sessionVersion: sessionVersion, addressType: connection.addressType, address: address),
            connection: connection, media: sections)
        return (answer, negotiated)
    }

    private enum Acceptance {
        case success((SDPMedia, SDPNegotiatedAudio))
        case failure(String)
    }

    private static func accept(
        _ offered: SDPMedia, index: Int, session: SDPSession, policy: SDPAudioPolicy, port: Int, preferring: [SDPAudioCodec],
        makeKey: (String) -> [UInt8]
    ) -> Acceptance {
        guard offered.type == "audio" else { return .failure("not audio") }
        guard offered.port != 0 else { return .failure("port 0") }
        let secure = offered.proto == "RTP/SAVP" || offered.proto == "RTP/SAVPF"
        let plain = offered.proto == "RTP/AVP" || offered.proto == "RTP/AVPF"
        switch policy.srtp {
        case .off where !plain: return .failure("profile \(offered.proto), only RTP/AVP here")
        case .required where !secure: return .failure("profile \(offered.proto), SRTP required")
        case .optional where !plain && !secure: return .failure("profile \(offered.proto)")
        default: break
        }
        guard let address = (offered.connection ?? session.connection)?.address else { return .failure("no address") }

        let formats = offered.payloadFormats
        var best: (codec: SDPAudioCodec, map: SDPRTPMap)?
        var shared: [(codec: SDPAudioCodec, map: SDPRTPMap)] = []
        for map in formats {
            guard let codec = SDPAudioCodec(map), policy.codecs.contains(codec) else { continue }
            shared.append((codec, map))
            if best == nil || codec.bandwidthRank > best!.codec.bandwidthRank { best = (codec, map) }
        }
        if let preferred = preferring.lazy.compactMap({ codec in shared.first { $0.codec == codec } }).first { best = preferred }
        guard let best else { return .failure("no shared codec") }

        var srtp: SDPNegotiatedAudio.SRTP?
        var cryptoLine: SDPCryptoAttribute?
        if secure {
            // The first offered line we can use, in the offerer's order (RFC 4568 §7.1.2).
            for value in offered.attributes(named: "crypto") {
                guard let crypto = SDPCryptoAttribute(attributeValue: value),
                    let suite = policy.cryptoSuites.first(where: { $0.name == crypto.suite }),
                    crypto.isUsable(keyLength: suite.keyLength)
                else { continue }
                let local = makeKey(suite.name)
                srtp = .init(suite: suite.name, localKey: local, remoteKey: crypto.keyMaterial)
                cryptoLine = SDPCryptoAttribute(tag: crypto.tag, suite: crypto.suite, keyMaterial: local)
                break
            }
            guard srtp != nil else { return .failure("no usable a=crypto line") }
        }

        let telephoneEvent = policy.telephoneEvent ? preferredTelephoneEvent(formats, clockRate: best.codec.clockRate) : nil
        let rtcpMux = policy.rtcpMux && offered.hasAttribute("rtcp-mux")
        var rtcpPort = offered.port
        if !rtcpMux {
            switch SDPValueRules.rtcpPort(of: offered) {
            case .success(let port): rtcpPort = port
            case .failure(let problem): return .failure(problem.description)
            }
        }
        var section = SDPMedia(type: "audio", port: port, proto: offered.proto, formats: [String(best.map.payloadType)])
        section.attributes.append(SDPAttribute("rtpmap", best.map.attributeValue))
        if best.codec == .opus { section.attributes.append(SDPAttribute("fmtp", "\(best.map.payloadType) \(policy.opusParameters)")) }
        if let telephoneEvent {
            section.formats.append(String(telephoneEvent.payloadType))
            section.attributes.append(SDPAttribute("rtpmap", telephoneEvent.attributeValue))
            section.attributes.append(SDPAttribute("fmtp", "\(telephoneEvent.payloadType) 0-16"))
        }
        section.attributes.append(SDPAttribute("ptime", String(policy.ptime)))
        if rtcpMux { section.attributes.append(SDPAttribute("rtcp-mux")) }
        if let cryptoLine { section.attributes.append(SDPAttribute("crypto", cryptoLine.attributeValue)) }
        let direction = offered.effectiveDirection(in: session).answer
        section.setDirection(direction)

        let result = SDPNegotiatedAudio(
            mediaIndex: index, codec: best.codec, payloadType: best.map.payloadType,
            remoteFormatParameters: offered.fmtp(for: best.map.payloadType),
            telephoneEventPayloadType: telephoneEvent?.payloadType, telephoneEventClockRate: telephoneEvent?.clockRate,
            remoteAddress: address, remotePort: offered.port,
            remoteRTCPPort: rtcpPort, rtcpMux: rtcpMux, direction: direction,
            ptime: SDPValueRules.packetTime(offered.attributes(named: "ptime").first), srtp: srtp)
        return .success((section, result))
    }

    private static func unique(_ codecs: [SDPAudioCodec]) -> [SDPAudioCodec] {
        var seen: [SDPAudioCodec] = []
        for codec in codecs where !seen.contains(codec) { seen.append(codec) }
        return seen
    }

    /// The telephone-event at the codec's clock rate, else (a peer that ignores RFC 4733 §2.1)
    /// the first one offered at a clock we can count in (`SDPValueRules`).
    private static func preferredTelephoneEvent(_ formats: [SDPRTPMap], clockRate: Int) -> SDPRTPMap? {
        let events = formats.filter { $0.isEncoding("telephone-event") && SDPValueRules.isUsableTelephoneEvent($0, codecClockRate: clockRate) }
        return events.first { $0.clockRate == clockRate } ?? events.first
    }

    /// What our offer and the peer's answer agree on (the offerer's side of RFC 3264 §7).
    public static func negotiate(offer: SDPSession, answer: SDPSession) throws(SDPOfferAnswerError) -> SDPNegotiatedAudio {
        guard answer.media.count == offer.media.count else {
            throw .badAnswer("answer has \(answer.media.count) m-lines, offer \(offer.media.count)")
        }
        for (index, answered) in answer.media.enumerated() where answered.type == "audio" && answered.port != 0 {
            let ours = offer.media[index]
            guard answered.proto == ours.proto else { throw .badAnswer("profile \(answered.proto) for \(ours.proto)") }
            guard let address = (answered.connection ?? answer.connection)?.address else { throw .badAnswer("no address") }
            let offeredFormats = ours.payloadFormats
            // The first answered format that we offered is what the peer will send (RFC 3264 §7).
            var chosen: (SDPAudioCodec, Int)?
            for map in answered.payloadFormats {
                if let codec = SDPAudioCodec(map), offeredFormats.contains(where: { codec.matches($0) }) {
                    chosen = (codec, map.payloadType)
                    break
                }
            }
            guard let (codec, payloadType) = chosen else { throw .badAnswer("no offered codec in the answer") }
            let telephoneEvent = preferredTelephoneEvent(answered.payloadFormats, clockRate: codec.clockRate)
            var srtp: SDPNegotiatedAudio.SRTP?
            if ours.proto.hasPrefix("RTP/SAVP") {
                guard let value = answered.attributes(named: "crypto").first, let theirs = SDPCryptoAttribute(attributeValue: value) else {
                    throw .badAnswer("SRTP answer without a=crypto")
                }
                let offeredLine = ours.attributes(named: "crypto").compactMap(SDPCryptoAttribute.init(attributeValue:)).first { $0.tag == theirs.tag }
                guard let offeredLine, offeredLine.suite == theirs.suite, theirs.isUsable(keyLength: offeredLine.keyMaterial.count) else {
                    throw .badAnswer("a=crypto tag \(theirs.tag) does not match an offered suite")
                }
                srtp = .init(suite: theirs.suite, localKey: offeredLine.keyMaterial, remoteKey: theirs.keyMaterial)
            }
            let rtcpMux = answered.hasAttribute("rtcp-mux") && ours.hasAttribute("rtcp-mux")
            var rtcpPort = answered.port
            if !rtcpMux {
                switch SDPValueRules.rtcpPort(of: answered) {
                case .success(let port): rtcpPort = port
                case .failure(let problem): throw .badAnswer(problem.description)
                }
            }
            return SDPNegotiatedAudio(
                mediaIndex: index, codec: codec, payloadType: payloadType, remoteFormatParameters: answered.fmtp(for: payloadType),
                telephoneEventPayloadType: telephoneEvent?.payloadType, telephoneEventClockRate: telephoneEvent?.clockRate,
                remoteAddress: address, remotePort: answered.port,
                remoteRTCPPort: rtcpPort, rtcpMux: rtcpMux,
                direction: answered.effectiveDirection(in: answer).answer.restricted(to: ours.direction),
                ptime: SDPValueRules.packetTime(answered.attributes(named: "ptime").first), srtp: srtp)
        }
        throw .badAnswer("every stream refused")
    }
}
