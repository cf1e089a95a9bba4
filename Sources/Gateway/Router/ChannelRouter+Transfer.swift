import Logging
import Media
import SIP
import SIPUserAgent

/// Blind transfer from the cloud leg (REFER, RFC 3515): the cloud user moves the legacy party
/// to another cloud target. The gateway places the new cloud leg itself (from the channel's AOR,
/// on the same media socket), tells the transferor how it goes (NOTIFY with sipfrag), and when
/// the new leg answers moves the bridge to it and ends the old leg. A REFER it will not honour
/// is refused, never accepted and dropped: docs/GATEWAY.md.
extension ChannelRouter {
    struct Transfer {
        /// The new cloud leg.
        let handle: SIPCallHandle
        let offer: SDPSession
        /// The cloud leg that sent the REFER.
        let transferor: SIPCallHandle
        let target: String
        /// The transferor hung up before the target answered.
        var transferorGone = false
        /// The target's early media description, when its 2xx brings none.
        var earlyAnswer: SIPMessageBody?
    }

    /// What the gateway does with a REFER (docs/GATEWAY.md), decided from what is known: the
    /// target it will call, or the refusal with its reason.
    public enum TransferVerdict: Sendable, Equatable {
        case accept(target: String)
        case refuse(status: Int, warning: String)
    }

    public static func transferVerdict(
        referTo: String, fromCloud: Bool, connected: Bool, transferUnderWay: Bool, domain: String, cloudReachable: Bool
    ) -> TransferVerdict {
        guard fromCloud else { return .refuse(status: 403, warning: "transfers are taken from the cloud leg only") }
        guard connected else { return .refuse(status: 403, warning: "the call is not connected") }
        guard !transferUnderWay else { return .refuse(status: 491, warning: "a transfer is under way") }
        guard let target = transferTarget(referTo, domain: domain) else {
            return .refuse(status: 403, warning: "Refer-To must name a user or group of \(domain)")
        }
        guard cloudReachable else { return .refuse(status: 503, warning: "the cloud is not reachable") }
        return .accept(target: target)
    }

    func referReceived(_ handle: SIPCallHandle, side: Side, referTo: String) async {
        let agent = agent(side)
        let bridged = side == .cloud ? bridgedCall(handle, side: .cloud) : nil
        let flow = cloudFlow.flatMap { flowAlive($0) ? $0 : nil }
        let verdict = Self.transferVerdict(
            referTo: referTo, fromCloud: side == .cloud, connected: bridged != nil, transferUnderWay: bridged?.call.transfer != nil,
            domain: settings.domain, cloudReachable: flow != nil)
        guard case .accept(let target) = verdict, let (id, call, _, socket) = bridged, let flow else {
            if case .refuse(let status, let warning) = verdict {
                logger.notice("REFER refused with \(status): \(warning)", metadata: ["channel": "\(bridged?.call.channel.index ?? 0)"])
                on(agent) { $0.refuseRefer(handle, status: status, warning: warning) }
            }
            return
        }
        on(agent) { $0.acceptRefer(handle) }
        let previous = CallMediaNegotiation.PreviousDescription(call.ourDescriptions[.b])
        let legacyCodec = await legacyCodec(of: call)
        let offer = SDPOfferAnswer.makeOffer(
            policy: settings.cloudPolicy, address: previous.address ?? socket.localAddress.hostText, port: socket.port,
            sessionID: String(UInt64.random(in: 1...UInt64(Int64.max))), preferring: legacyCodec.map { [$0] } ?? [], makeKey: Self.makeKey)
        let uri = SIPURI(secure: true, user: target, host: settings.domain)
        let display = CallerIdentity.towardCloud(channel: call.channel, station: call.inboundIsLegacy ? call.inboundCall.from : nil)
        let user = settings.accounts.caller(for: call.channel)
        let body = SIPMessageBody(contentType: "application/sdp", text: offer.serialized)
        let placed = on(cloud) { $0.call(uri, on: flow, from: user, displayName: display, body: body) }
        calls[id]?.transfer = Transfer(handle: placed, offer: offer, transferor: handle, target: target)
        transferLegs[placed] = id
        logger.notice("transfer to \(target) requested by the cloud leg", metadata: ["channel": "\(call.channel.index)"])
    }

    /// What the new cloud leg reports, until it answers or fails.
    func transferLegEvent(_ event: SIPUserAgentEvent, call id: Int) async {
        guard let call = calls[id], let transfer = call.transfer else { return }
        let notify = { (status: Int, reason: String, final: Bool) in
            self.on(self.cloud) { $0.notifyRefer(transfer.transferor, status: status, reason: reason, final: final) }
        }
        switch event {
        case .ringing:
            notify(180, "Ringing", false)
        case .earlyMedia(_, let answer):
            calls[id]?.transfer?.earlyAnswer = answer
            notify(180, "Ringing", false)
        case .answered(let handle, let answer, _):
            do {
                guard let bridge = call.bridge else { throw MediaSetupError.callGone }
                let leg = try CallMediaNegotiation.leg(
                    answeredBy: answer ?? transfer.earlyAnswer, to: transfer.offer, codecOptions: settings.codecOptions, canonicalName: settings.device, scope: 0)
                try await bridge.update(.b, to: leg)
                completeTransfer(id, to: handle, codec: leg.codec)
                notify(200, "OK", true)
                // The transferor's leg is over (RFC 5589 §6: it may send BYE itself; ours is harmless).
                on(cloud) { $0.hangUp(transfer.transferor) }
                logger.notice("transferred to \(transfer.target)", metadata: ["channel": "\(call.channel.index)"])
            } catch {
                logger.warning("transfer target's answer cannot be bridged: \(error)", metadata: ["channel": "\(call.channel.index)"])
                on(cloud) { $0.hangUp(handle) }
                await failTransfer(id, status: 488, reason: "Not Acceptable Here")
            }
        case .failed(_, let status):
            await failTransfer(id, status: status, reason: "Failed")
        case .ended:
            await failTransfer(id, status: 487, reason: "Request Terminated")
        default:
            return
        }
    }

    /// The new leg is the call's cloud leg now: the old one leaves the leg table (its BYE
    /// ends nothing), the new one takes its place.
    private func completeTransfer(_ id: Int, to handle: SIPCallHandle, codec: AudioCodecKind) {
        guard var call = calls[id], let transfer = call.transfer else { return }
        transferLegs[handle] = nil
        legs[LegKey(side: .cloud, handle: transfer.transferor)] = nil
        if call.inboundSide == .cloud {
            call.inbound = handle
            legs[LegKey(side: .cloud, handle: handle)] = (id, nil)
        } else if let branch = call.state.connectedBranch {
            call.branches[branch] = handle
            legs[LegKey(side: .cloud, handle: handle)] = (id, branch)
        }
        call.transfer = nil
        call.ourDescriptions[.b] = SIPMessageBody(contentType: "application/sdp", text: transfer.offer.serialized)
        call.peer += " → \(transfer.target)"
        // The record's codec: one name when the legacy leg runs the same (passthrough).
        let legacy = call.codec?.split(separator: "/").first.map(String.init)
        call.codec = legacy == codec.rawValue ? codec.rawValue : "\(legacy ?? "?")/\(codec.rawValue)"
        calls[id] = call
    }

    /// The target did not answer: the transferor hears why (it may take the call back); if it
    /// has left already, nobody is left on the cloud side and the call ends.
    private func failTransfer(_ id: Int, status: Int, reason: String) async {
        guard let transfer = calls[id]?.transfer else { return }
        transferLegs[transfer.handle] = nil
        calls[id]?.transfer = nil
        logger.notice("transfer to \(transfer.target) failed: \(status)", metadata: ["channel": "\(calls[id]?.channel.index ?? 0)"])
        if transfer.transferorGone {
            await abort(id, status: 480, reason: "transfer to \(transfer.target) failed (\(status)) after the transferor left")
            return
        }
        on(cloud) { $0.notifyRefer(transfer.transferor, status: status >= 300 ? status : 500, reason: reason, final: true) }
    }

    /// The codec the legacy leg runs, offered first to the transfer target (no transcoding
    /// when it has it too).
    private func legacyCodec(of call: ActiveCall) async -> SDPAudioCodec? {
        guard let bridge = call.bridge, let kind = try? await bridge.withBridge({ $0.legCodec(.a) }) else { return nil }
        return MediaLegMapping.sdpCodec(kind)
    }

    /// A Refer-To the gateway will call: a sip/sips URI of the cloud's own domain whose user is
    /// a directory name, without embedded headers (no Replaces: attended transfer is not ours)
    /// or a method other than INVITE.
    public static func transferTarget(_ referTo: String, domain: String) -> String? {
        var scanner = SIPScanner(referTo)
        guard referTo.utf8.count <= 512, let address = try? SIPNameAddress.parseSingle(&scanner, header: "Refer-To"),
            let uri = address.sipURI, uri.host.lowercased() == domain.lowercased(), uri.headers.isEmpty,
            uri.parameters.value("method").map({ $0?.uppercased() == "INVITE" }) ?? true,
            let user = uri.user.map(SIPURI.unescaped), BridgeConfiguration.isName(user)
        else { return nil }
        return user
    }
}
