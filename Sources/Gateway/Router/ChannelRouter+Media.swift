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
        guard let offer, offer.contentType.lowercased().hasPrefix("application/sdp") else { throw MediaSetupError.noOffer }
        let session: SDPSession
        do { session = try SDPParser.parse(offer.text) } catch { throw MediaSetupError.badDescription("\(error)") }
        logger.debug("the caller's session description", metadata: ["channel": "\(call.channel.index)", "sdp": "\(offer.text)"])
        let peer = session.media.first?.connection?.address ?? session.connection?.address
        let hosts = mediaHosts(inboundIsCloud: call.inboundIsCloud, inboundPeer: peer, targets: call.targets)
        let legacyLeg = try await relay.openLeg(host: hosts.legacy)
        guard calls[id] != nil else {
            await legacyLeg.close()
            throw MediaSetupError.callGone
        }
        calls[id]?.legacyLeg = legacyLeg
        let cloudLeg = try await relay.openLeg(host: hosts.cloud, alongside: legacyLeg)
        guard calls[id] != nil else {
            await cloudLeg.close()
            throw MediaSetupError.callGone
        }
        calls[id]?.cloudLeg = cloudLeg

        let (inboundPolicy, outboundPolicy) = call.inboundIsCloud ? (settings.cloudPolicy, settings.legacyPolicy) : (settings.legacyPolicy, settings.cloudPolicy)
        let (inboundSocket, outboundSocket) = call.inboundIsCloud ? (cloudLeg, legacyLeg) : (legacyLeg, cloudLeg)
        let (inboundHost, outboundHost) = call.inboundIsCloud ? (hosts.cloud, hosts.legacy) : (hosts.legacy, hosts.cloud)
        let answered: (answer: SDPSession, negotiated: SDPNegotiatedAudio)
        do {
            answered = try SDPOfferAnswer.answer(
                offer: session, policy: inboundPolicy, address: inboundHost, port: inboundSocket.port,
                sessionID: String(UInt64.random(in: 1...UInt64(Int64.max))), makeKey: Self.makeKey)
        } catch {
            throw MediaSetupError.badDescription("the caller's offer: \(error)")
        }
        let inboundLeg = try MediaLegMapping.configuration(answered.negotiated, codecOptions: settings.codecOptions, canonicalName: settings.device)
        let outboundOffer = SDPOfferAnswer.makeOffer(
            policy: outboundPolicy, address: outboundHost, port: outboundSocket.port,
            sessionID: String(UInt64.random(in: 1...UInt64(Int64.max))), makeKey: Self.makeKey)
        calls[id]?.inboundLeg = inboundLeg
        calls[id]?.inboundAnswer = SIPMessageBody(contentType: "application/sdp", text: answered.answer.serialized)
        calls[id]?.outboundOffer = outboundOffer
    }

    /// Where our RTP sockets bind and what our SDP says: the configured legacy media address, else
    /// the source address toward the peer; on the cloud side the source address toward the caller,
    /// else the registration flow's own.
    func mediaHosts(inboundIsCloud: Bool, inboundPeer: String?, targets: [String]) -> (legacy: String, cloud: String) {
        let flowLocal = cloudFlow.map { $0.local.hostText }
        let cloudHost = (inboundIsCloud ? inboundPeer.flatMap(LocalMediaAddress.toward) : nil) ?? flowLocal ?? "127.0.0.1"
        var legacyHost = settings.legacyMediaAddress.flatMap { LocalMediaAddress.isWildcard($0) ? nil : $0 }
        if legacyHost == nil {
            let toward = inboundIsCloud ? targets.lazy.compactMap { self.legacyDestination($0)?.1.host }.first : inboundPeer
            legacyHost = toward.flatMap(LocalMediaAddress.toward)
        }
        return (legacyHost ?? "127.0.0.1", cloudHost)
    }

    /// Bridges media to `branch`'s answer (or early media): negotiates our offer against it and
    /// starts the bridge, or moves the bridge's outbound leg to it when another branch's early
    /// media had it.
    func connectMedia(_ id: Int, branch: Int) async throws {
        guard let call = calls[id], let handle = call.branches[branch], let offer = call.outboundOffer, let inboundLeg = call.inboundLeg,
            let legacyLeg = call.legacyLeg, let cloudLeg = call.cloudLeg
        else { throw MediaSetupError.callGone }
        if call.bridge != nil, call.bridgedBranch == branch { return }
        let agent = call.inboundIsCloud ? legacy : cloud
        guard let body = on(agent, { $0.remoteBody(of: handle) }) else {
            throw MediaSetupError.badDescription("the callee's answer has no SDP")
        }
        logger.debug("the callee's session description", metadata: ["channel": "\(call.channel.index)", "sdp": "\(body.text)"])
        let outboundLeg: MediaLegConfiguration
        do {
            let negotiated = try SDPOfferAnswer.negotiate(offer: offer, answer: try SDPParser.parse(body.text))
            outboundLeg = try MediaLegMapping.configuration(negotiated, codecOptions: settings.codecOptions, canonicalName: settings.device)
        } catch {
            throw MediaSetupError.badDescription("the callee's answer: \(error)")
        }
        let (legacyConfig, cloudConfig) = call.inboundIsCloud ? (outboundLeg, inboundLeg) : (inboundLeg, outboundLeg)
        let codec = MediaLegMapping.isPassthrough(legacyConfig, cloudConfig)
            ? legacyConfig.codec.rawValue : "\(legacyConfig.codec.rawValue)/\(cloudConfig.codec.rawValue)"
        if let bridge = call.bridge {
            try await bridge.update(call.inboundIsCloud ? .a : .b, to: outboundLeg)
        } else {
            let forwarder = DigitForwarder(router: self, call: id)
            let bridge = try await relay.bridge(
                legacyLeg, legacyConfig, cloudLeg, cloudConfig, jitterBufferMax: settings.jitterBufferMax, delegate: forwarder)
            guard calls[id] != nil else {
                await bridge.close()
                throw MediaSetupError.callGone
            }
            calls[id]?.bridge = bridge
            calls[id]?.digitForwarder = forwarder
        }
        calls[id]?.bridgedBranch = branch
        calls[id]?.codec = codec
    }

    // MARK: Door openers

    /// A digit arrived as SIP INFO: it goes into the other leg's media (RFC 4733 event).
    func digitByInfo(_ handle: SIPCallHandle, cloudSide: Bool, body: String) async {
        guard let (id, _) = legs[LegKey(cloudSide: cloudSide, handle: handle)], let call = calls[id], let bridge = call.bridge else { return }
        guard let relay = DTMFRelayBody(body) else {
            logger.notice("INFO without a usable dtmf-relay body ignored", metadata: ["channel": "\(call.channel.index)"])
            return
        }
        let sent = (try? await bridge.sendDigit(relay.signal, durationMilliseconds: max(relay.duration, 40), on: cloudSide ? .a : .b)) ?? false
        reportDigit(call, relay.signal, fromLegacy: !cloudSide, delivered: sent)
    }

    /// The bridge heard a digit on `leg` whose other leg takes SIP INFO: send it there.
    func digitForInfo(_ id: Int, digit: Character, durationMilliseconds: Int, arrivedOn leg: MediaLegSide) {
        guard let call = calls[id], let body = DTMFRelayBody(signal: digit, duration: durationMilliseconds) else { return }
        // Leg a is the legacy leg, b the cloud leg.
        let toCloud = leg == .a
        let handle: SIPCallHandle?
        if call.inboundIsCloud == toCloud {
            handle = call.inbound
        } else {
            handle = call.bridgedBranch.flatMap { call.branches[$0] }
        }
        guard let handle else { return }
        let info = SIPMessageBody(contentType: DTMFRelayBody.contentType, text: body.text)
        on(toCloud ? cloud : legacy) { $0.sendInfo(handle, body: info) }
        reportDigit(call, digit, fromLegacy: leg == .a, delivered: true)
    }

    /// The bridge relayed a digit as RFC 4733 events: report it (logs, MQTT `door_open`).
    func digitRelayed(_ id: Int, digit: Character, arrivedOn leg: MediaLegSide) {
        guard let call = calls[id] else { return }
        reportDigit(call, digit, fromLegacy: leg == .a, delivered: true)
    }

    func reportDigit(_ call: ActiveCall, _ digit: Character, fromLegacy: Bool, delivered: Bool) {
        logger.notice(
            "door-opener digit \(digit) \(fromLegacy ? "legacy → cloud" : "cloud → legacy")\(delivered ? "" : " (not delivered)")",
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
