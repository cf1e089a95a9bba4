import Logging
import Media
import NIOCore
import SIP
import SIPTransport
import SIPUserAgent

/// The media side of a bridged call: the two legs' sockets, our SDP on each side, the bridge.
extension ChannelRouter {
    public enum MediaSetupError: Error, CustomStringConvertible {
        case noOffer
        case badDescription(String)
        case callGone

        public var description: String {
            switch self {
            case .noOffer: "the INVITE carries no SDP offer (offerless INVITEs are not supported)"
            case .badDescription(let reason): reason
            case .callGone: "the call ended during media setup"
            }
        }
    }

    static func makeKey(_ suite: String) -> [UInt8] {
        SRTPKeyMaterial.random(SRTPCryptoSuite(rawValue: suite) ?? .aesCM128HMACSHA1_80).bytes
    }

    /// Opens both legs' sockets (on one media thread), answers the caller's offer and makes our
    /// offer for the callees.
    func prepareMedia(_ id: Int, offer: SIPMessageBody?) async throws {
        guard let call = calls[id] else { throw MediaSetupError.callGone }
        let session = try CallMediaNegotiation.description(in: offer, noneError: .noOffer)
        let peer = CallMediaNegotiation.peerAddress(of: session)
        let legacyHost = legacyMediaHost(inboundIsLegacy: call.inboundIsLegacy, inboundPeer: peer, targets: call.targets)
        let legacyLeg = try await relay.openLeg(host: legacyHost)
        guard calls[id] != nil else {
            await legacyLeg.close()
            throw MediaSetupError.callGone
        }
        calls[id]?.legacyLeg = legacyLeg
        let (farLeg, far) = try await openFarLeg(id, call, alongside: legacyLeg, inboundPeer: peer)

        let legacySide = (policy: settings.legacyPolicy, socket: legacyLeg, host: legacyHost)
        let farSide = (policy: policy(for: call.farSide), socket: farLeg, host: far.sdp)
        let (inbound, outbound) = call.inboundIsLegacy ? (legacySide, farSide) : (farSide, legacySide)
        let answering = InboundAnswering(
            offer: session, policy: inbound.policy, address: inbound.host, port: inbound.socket.port, scope: call.inboundIsLegacy ? 0 : far.scope,
            sessionID: String(UInt64.random(in: 1...UInt64(Int64.max))))
        let answered = try answerInbound(answering, preferring: [])
        // The end parties should meet on the best codec both have (issue 15): the callees are
        // offered first what the caller speaks — a station's codec as we answered it, or what a
        // cloud or mesh caller offered, best first.
        let preferred = call.inboundIsLegacy ? [MediaLegMapping.sdpCodec(answered.leg.codec)] : CallMediaNegotiation.codecs(offeredIn: session)
        let outboundOffer = SDPOfferAnswer.makeOffer(
            policy: outbound.policy, address: outbound.host, port: outbound.socket.port,
            sessionID: String(UInt64.random(in: 1...UInt64(Int64.max))), preferring: preferred, makeKey: Self.makeKey)
        calls[id]?.inboundAnswering = answering
        calls[id]?.inboundLeg = answered.leg
        calls[id]?.inboundAnswer = SIPMessageBody(contentType: "application/sdp", text: answered.answer.serialized)
        calls[id]?.outboundOffer = outboundOffer
    }

    /// What answering the caller's offer takes; kept so that a caller from the cloud or the mesh
    /// can be answered again, before anything went back to it, with the codec its callee took.
    struct InboundAnswering {
        let offer: SDPSession
        let policy: SDPAudioPolicy
        let address: String
        let port: Int
        let scope: UInt32
        let sessionID: String
    }

    func answerInbound(_ answering: InboundAnswering, preferring: [SDPAudioCodec]) throws -> (answer: SDPSession, leg: MediaLegConfiguration) {
        try CallMediaNegotiation.answer(
            answering.offer, policy: answering.policy, address: answering.address, port: answering.port, codecOptions: settings.codecOptions,
            canonicalName: settings.device, scope: answering.scope, sessionID: answering.sessionID, preferring: preferring, makeKey: Self.makeKey)
    }

    /// The callee's codec for a caller who has had no answer yet: if the caller offered it too,
    /// the caller's answer takes it (passthrough instead of transcoding between two codecs both
    /// ends have). The caller's answer is fixed from the first 183 or 200 that carries it
    /// (RFC 3261 §13.3.1.1: the same description in both).
    private func matchInboundCodec(_ id: Int, to outbound: MediaLegConfiguration) {
        guard let call = calls[id], !call.inboundIsLegacy, !call.inboundAnswerSent, let answering = call.inboundAnswering,
            let current = call.inboundLeg, current.codec != outbound.codec,
            let answered = try? answerInbound(answering, preferring: [MediaLegMapping.sdpCodec(outbound.codec)]),
            answered.leg.codec == outbound.codec
        else { return }
        calls[id]?.inboundLeg = answered.leg
        calls[id]?.inboundAnswer = SIPMessageBody(contentType: "application/sdp", text: answered.answer.serialized)
    }

    /// A new far leg and offer for a call that changed its outbound side (the mesh fallback):
    /// the legacy leg and the caller's answer stay as they were.
    func prepareFarLeg(_ id: Int) async throws {
        guard let call = calls[id], let legacyLeg = call.legacyLeg else { throw MediaSetupError.callGone }
        let (farLeg, far) = try await openFarLeg(id, call, alongside: legacyLeg, inboundPeer: nil)
        calls[id]?.outboundOffer = SDPOfferAnswer.makeOffer(
            policy: policy(for: call.outboundSide), address: far.sdp, port: farLeg.port,
            sessionID: String(UInt64.random(in: 1...UInt64(Int64.max))), makeKey: Self.makeKey)
    }

    /// The far (cloud or mesh) leg's socket beside the legacy leg, kept in the call.
    private func openFarLeg(
        _ id: Int, _ call: ActiveCall, alongside legacyLeg: MediaLegSocket, inboundPeer: String?
    ) async throws -> (MediaLegSocket, (bind: String, sdp: String, scope: UInt32)) {
        let far = try farMediaHost(call, inboundPeer: inboundPeer)
        let farLeg = try await relay.openLeg(host: far.bind, alongside: legacyLeg)
        guard calls[id] != nil else {
            await farLeg.close()
            throw MediaSetupError.callGone
        }
        calls[id]?.farLeg = farLeg
        calls[id]?.farScope = far.scope
        return (farLeg, far)
    }

    func policy(for side: Side) -> SDPAudioPolicy {
        switch side {
        case .legacy: settings.legacyPolicy
        case .cloud: settings.cloudPolicy
        case .mesh: settings.meshPolicy
        }
    }

    /// The far leg's socket address (with zone for link-local), the address for SDP (never a
    /// zone), and the scope a link-local peer is reached through.
    func farMediaHost(_ call: ActiveCall, inboundPeer: String?) throws -> (bind: String, sdp: String, scope: UInt32) {
        switch call.farSide {
        case .mesh where call.inboundIsLegacy:
            guard let host = meshMediaHost(targets: call.targets) else {
                throw MediaSetupError.badDescription("no mesh interface has a link-local address")
            }
            return host
        case .mesh:
            // A mesh peer called: our address on the interface its call came in on.
            let flow = call.inboundCall.flow
            guard let address = flow.local.ipAddress else { throw MediaSetupError.callGone }
            let scope = flow.local.scopeID
            return (scope == 0 ? address : "\(address)%\(scope)", address, scope)
        default:
            let flowLocal = cloudFlow.map { $0.local.hostText }
            let host = (!call.inboundIsLegacy ? inboundPeer.flatMap(LocalMediaAddress.toward) : nil) ?? flowLocal ?? "127.0.0.1"
            return (host, host, 0)
        }
    }

    /// Where the legacy leg binds and what its SDP says: the configured legacy media address, else
    /// the source address toward the peer.
    func legacyMediaHost(inboundIsLegacy: Bool, inboundPeer: String?, targets: [String]) -> String {
        if let configured = settings.legacyMediaAddress.flatMap({ LocalMediaAddress.isWildcard($0) ? nil : $0 }) { return configured }
        let toward = inboundIsLegacy ? inboundPeer : targets.lazy.compactMap { self.legacyDestination($0)?.1.host }.first
        return toward.flatMap(LocalMediaAddress.toward) ?? "127.0.0.1"
    }

    /// Bridges media to `branch`'s answer (or early media): negotiates our offer against it and
    /// starts the bridge, or moves the bridge's outbound leg to it when another branch's early
    /// media had it.
    func connectMedia(_ id: Int, branch: Int) async throws {
        guard let call = calls[id], call.branches[branch] != nil, let offer = call.outboundOffer, call.inboundLeg != nil,
            let legacyLeg = call.legacyLeg, let farLeg = call.farLeg
        else { throw MediaSetupError.callGone }
        if call.bridge != nil, call.bridgedBranch == branch { return }
        let body = call.outboundAnswers[branch]
        let outboundLeg = try CallMediaNegotiation.leg(
            answeredBy: body, to: offer, codecOptions: settings.codecOptions, canonicalName: settings.device, scope: call.inboundIsLegacy ? call.farScope : 0)
        matchInboundCodec(id, to: outboundLeg)
        guard let inboundLeg = calls[id]?.inboundLeg else { throw MediaSetupError.callGone }
        let (legacyConfig, farConfig) = call.inboundIsLegacy ? (inboundLeg, outboundLeg) : (outboundLeg, inboundLeg)
        let codec = CallMediaNegotiation.codecLabel(legacy: legacyConfig, far: farConfig)
        if let bridge = call.bridge {
            try await bridge.update(call.outboundMediaSide, to: outboundLeg)
        } else {
            let forwarder = DigitForwarder(router: self, call: id)
            let callID = call.inboundCall.callID
            let bridge = try await relay.bridge(
                legacyLeg, legacyConfig, farLeg, farConfig, jitterBufferMax: settings.jitterBufferMax, delegate: forwarder,
                label: "channel \(call.channel.index), Call-ID \(callID.prefix(120))")
            guard calls[id] != nil else {
                await bridge.close()
                throw MediaSetupError.callGone
            }
            calls[id]?.bridge = bridge
            calls[id]?.digitForwarder = forwarder
        }
        calls[id]?.bridgedBranch = branch
        calls[id]?.codec = codec
        calls[id]?.ourDescriptions[call.outboundMediaSide] = SIPMessageBody(contentType: "application/sdp", text: offer.serialized)
    }

    // MARK: Door openers

    /// A digit arrived as SIP INFO: it goes into the other leg's media (RFC 4733 event).
    func digitByInfo(_ handle: SIPCallHandle, side: Side, body: String) async {
        guard let (id, _) = legs[LegKey(side: side, handle: handle)], let call = calls[id], let bridge = call.bridge else { return }
        guard let relay = DTMFRelayBody(body) else {
            logger.notice("INFO without a usable dtmf-relay body ignored", metadata: ["channel": "\(call.channel.index)"])
            return
        }
        let sent = (try? await bridge.sendDigit(relay.signal, durationMilliseconds: max(relay.duration, 40), on: side == .legacy ? .b : .a)) ?? false
        reportDigit(call, relay.signal, fromLegacy: side == .legacy, delivered: sent)
    }

    /// The bridge heard a digit on `leg` whose other leg takes SIP INFO: send it there.
    func digitForInfo(_ id: Int, digit: Character, durationMilliseconds: Int, arrivedOn leg: MediaLegSide) {
        guard let call = calls[id], let body = DTMFRelayBody(signal: digit, duration: durationMilliseconds) else { return }
        // Leg a is the legacy leg, b the cloud or mesh leg.
        let toFar = leg == .a
        let handle: SIPCallHandle?
        if call.inboundIsLegacy != toFar {
            handle = call.inbound
        } else {
            handle = call.bridgedBranch.flatMap { call.branches[$0] }
        }
        guard let handle else { return }
        let info = SIPMessageBody(contentType: DTMFRelayBody.contentType, text: body.text)
        on(toFar ? agent(call.farSide) : legacy) { $0.sendInfo(handle, body: info) }
        reportDigit(call, digit, fromLegacy: leg == .a, delivered: true)
    }

    /// The bridge relayed a digit as RFC 4733 events: report it (logs, MQTT `door_open`).
    func digitRelayed(_ id: Int, digit: Character, arrivedOn leg: MediaLegSide) {
        guard let call = calls[id] else { return }
        reportDigit(call, digit, fromLegacy: leg == .a, delivered: true)
    }

    func reportDigit(_ call: ActiveCall, _ digit: Character, fromLegacy: Bool, delivered: Bool) {
        // Which digit never goes to the log (a door PIN is a secret); MQTT carries it only when
        // the config asks (`[mqtt] include_digits`).
        logger.notice(
            "door-opener digit \(fromLegacy ? "legacy → \(call.farSide)" : "\(call.farSide) → legacy")\(delivered ? "" : " (not delivered)")",
            metadata: ["channel": "\(call.channel.index)"])
        eventContinuation.yield(.digit(channel: call.channel.index, digit: digit, fromLegacy: fromLegacy))
    }
}

/// The bridge's delegate for one call: a digit for a SIP INFO leg hops to the router.
final class DigitForwarder: MediaBridgeDelegate, @unchecked Sendable {
    let router: ChannelRouter
    let call: Int

    init(router: ChannelRouter, call: Int) {
        self.router = router
        self.call = call
    }

    func mediaBridge(_ bridge: MediaBridge, receivedDigit digit: Character, durationMilliseconds: Int, on leg: MediaLegSide) {
        let (router, call) = (router, call)
        Task { await router.digitForInfo(call, digit: digit, durationMilliseconds: durationMilliseconds, arrivedOn: leg) }
    }

    func mediaBridge(_ bridge: MediaBridge, relayedDigit digit: Character, on leg: MediaLegSide) {
        let (router, call) = (router, call)
        Task { await router.digitRelayed(call, digit: digit, arrivedOn: leg) }
    }
}
