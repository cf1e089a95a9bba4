public import Media
public import SIP
public import SIPUserAgent

/// The media decisions of a bridged call, as pure functions over what the two peers sent: the
/// caller's offer answered, our offer to the callee accepted by its answer, each turned into the
/// leg the bridge runs. `ChannelRouter` calls these between opening sockets and starting the
/// bridge; the call-path fuzz target (`Fuzz/CallPathFuzzer`) calls the same ones without sockets.
/// Every refusal is a `MediaSetupError` (the caller gets 488, the callee a BYE), never a trap.
public enum CallMediaNegotiation {
    /// The session description an INVITE (or a provisional or final answer) carries.
    public static func description(in body: SIPMessageBody?, noneError: ChannelRouter.MediaSetupError) throws(ChannelRouter.MediaSetupError) -> SDPSession {
        guard let body, body.contentType.lowercased().hasPrefix("application/sdp") else { throw noneError }
        do {
            return try SDPParser.parse(body.text)
        } catch {
            throw .badDescription("\(error)")
        }
    }

    /// Where the caller's media comes from (its first stream's, or the session's, address).
    public static func peerAddress(of session: SDPSession) -> String? {
        session.media.first?.connection?.address ?? session.connection?.address
    }

    /// Answers the caller's offer with `policy` at our `address`:`port`; the answer to send and
    /// the caller's leg.
    public static func answer(
        _ offer: SDPSession, policy: SDPAudioPolicy, address: String, port: Int, codecOptions: AudioCodecOptions, canonicalName: String, scope: UInt32,
        sessionID: String, sessionVersion: UInt64 = 1, preferring: [SDPAudioCodec] = [], makeKey: (String) -> [UInt8]
    ) throws(ChannelRouter.MediaSetupError) -> (answer: SDPSession, leg: MediaLegConfiguration) {
        do {
            let answered = try SDPOfferAnswer.answer(
                offer: offer, policy: policy, address: address, port: port, sessionID: sessionID, sessionVersion: sessionVersion,
                preferring: preferring, makeKey: makeKey)
            let leg = try MediaLegMapping.configuration(answered.negotiated, codecOptions: codecOptions, canonicalName: canonicalName, scope: scope)
            return (answered.answer, leg)
        } catch {
            throw .badDescription("the caller's offer: \(error)")
        }
    }

    /// The callee's leg, from its answer (`body`) to our `offer`.
    public static func leg(
        answeredBy body: SIPMessageBody?, to offer: SDPSession, codecOptions: AudioCodecOptions, canonicalName: String, scope: UInt32
    ) throws(ChannelRouter.MediaSetupError) -> MediaLegConfiguration {
        let answer = try description(in: body, noneError: .badDescription("the callee's answer has no SDP"))
        do {
            let negotiated = try SDPOfferAnswer.negotiate(offer: offer, answer: answer)
            return try MediaLegMapping.configuration(negotiated, codecOptions: codecOptions, canonicalName: canonicalName, scope: scope)
        } catch {
            throw .badDescription("the callee's answer: \(error)")
        }
    }

    /// The codecs a caller offers (its first audio stream that is not refused), highest bandwidth
    /// first: what our offer to the callees lists first, so that the end parties meet on the best
    /// codec both have and the bridge passes it through.
    public static func codecs(offeredIn session: SDPSession) -> [SDPAudioCodec] {
        guard let media = session.media.first(where: { $0.type == "audio" && $0.port != 0 }) else { return [] }
        var codecs: [SDPAudioCodec] = []
        for map in media.payloadFormats {
            if let codec = SDPAudioCodec(map), !codecs.contains(codec) { codecs.append(codec) }
        }
        return codecs.sorted { $0.bandwidthRank > $1.bandwidthRank }
    }

    /// What a new description on a leg keeps from our previous one (RFC 3264 §8): the o= session
    /// id with the version one up, the address, and the SRTP keys per suite (a re-answer that
    /// keeps our key leaves no packet the peer cannot decrypt while the answer travels).
    public struct PreviousDescription: Sendable {
        public var sessionID: String
        public var nextVersion: UInt64
        public var address: String?
        public var keys: [String: [UInt8]]

        public init(_ body: SIPMessageBody?) {
            let session = body.flatMap { try? CallMediaNegotiation.description(in: $0, noneError: .noOffer) }
            sessionID = session?.origin.sessionID ?? String(UInt64.random(in: 1...UInt64(Int64.max)))
            let version = session?.origin.sessionVersion ?? 0
            nextVersion = version < UInt64(Int64.max) ? version + 1 : 1
            address = session.flatMap(CallMediaNegotiation.peerAddress)
            var keys: [String: [UInt8]] = [:]
            for media in session?.media ?? [] {
                for value in media.attributes(named: "crypto") {
                    guard let crypto = SDPCryptoAttribute(attributeValue: value) else { continue }
                    keys[crypto.suite] = crypto.keyMaterial
                }
            }
            self.keys = keys
        }
    }

    /// What the call's record and status say it carries: one codec (passthrough), or both.
    public static func codecLabel(legacy: MediaLegConfiguration, far: MediaLegConfiguration) -> String {
        MediaLegMapping.isPassthrough(legacy, far) ? legacy.codec.rawValue : "\(legacy.codec.rawValue)/\(far.codec.rawValue)"
    }
}
