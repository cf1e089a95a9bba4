import Logging
import Media
import SIP
import SIPUserAgent

/// Offers and answers after the answer (RFC 3264 §8; re-INVITE RFC 3261 §14, UPDATE RFC 3311):
/// a leg that moves, changes key or codec, or holds. Each leg is negotiated on its own — the
/// gateway is a user agent on both — and the bridge follows: `MediaBridge.update` keeps both
/// output streams continuous across the change. A hold is absorbed at the bridge (nothing is
/// sent into a held stream, a held leg's packets are not played) and, from the cloud or mesh
/// leg, relayed to a station that takes re-INVITEs (`BridgedCall+StationHold.swift`);
/// docs/GATEWAY.md.
extension ChannelRouter {
    /// The bridge's side for a signalling side: a is the legacy leg, b the cloud or mesh leg.
    static func bridgeSide(_ side: Side) -> MediaLegSide { side == .legacy ? .a : .b }

    /// The connected call a leg belongs to, when its media runs through a bridge.
    func bridgedCall(_ handle: SIPCallHandle, side: Side) -> (id: Int, call: ActiveCall, bridge: MediaBridgeHandle, socket: MediaLegSocket)? {
        guard let (id, branch) = legs[LegKey(side: side, handle: handle)], let call = calls[id], call.state.phase == .connected,
            branch == nil || branch == call.bridgedBranch, let bridge = call.bridge,
            let socket = side == .legacy ? call.legacyLeg : call.farLeg
        else { return nil }
        return (id, call, bridge, socket)
    }

    /// The peer's re-INVITE or UPDATE with an offer: answered on its leg, the bridge moved to it.
    func midCallOffer(_ handle: SIPCallHandle, side: Side, offer: SIPMessageBody, method: SIPMethod) async {
        let agent = agent(side)
        guard let (id, call, bridge, socket) = bridgedCall(handle, side: side) else {
            // Before the answer (an UPDATE in the early dialog) or a leg on its way out.
            on(agent) { $0.refuseOffer(handle, status: 491, warning: "the call is not connected") }
            return
        }
        let mediaSide = Self.bridgeSide(side)
        let previous = CallMediaNegotiation.PreviousDescription(call.ourDescriptions[mediaSide])
        do {
            let session = try CallMediaNegotiation.description(in: offer, noneError: .badDescription("the offer is not SDP"))
            let answered = try CallMediaNegotiation.answer(
                session, policy: policy(for: side), address: previous.address ?? socket.localAddress.hostText, port: socket.port,
                codecOptions: settings.codecOptions, canonicalName: settings.device, scope: side == .legacy ? 0 : call.farScope,
                sessionID: previous.sessionID, sessionVersion: previous.nextVersion,
                makeKey: { previous.keys[$0] ?? Self.makeKey($0) })
            try await bridge.update(mediaSide, to: answered.leg)
            let body = SIPMessageBody(contentType: "application/sdp", text: answered.answer.serialized)
            calls[id]?.ourDescriptions[mediaSide] = body
            on(agent) { $0.answerOffer(handle, body: body) }
            logger.info(
                "\(side) leg renegotiated by \(method): \(answered.leg.codec.rawValue), \(Self.directionText(answered.leg))",
                metadata: ["channel": "\(call.channel.index)"])
            if side != .legacy { await farLegChanged(id, answered.leg) }
        } catch {
            logger.notice("\(side) \(method) offer refused: \(error)", metadata: ["channel": "\(call.channel.index)"])
            on(agent) { $0.refuseOffer(handle, status: 488, warning: "\(error)") }
        }
    }

    /// The peer's re-INVITE without an offer: ours goes in the 2xx (what the leg can do now, in
    /// both directions), its answer in the ACK (`midCallAnswer`).
    func midCallOfferRequested(_ handle: SIPCallHandle, side: Side) {
        let agent = agent(side)
        guard let (id, _, _, socket) = bridgedCall(handle, side: side) else {
            on(agent) { $0.refuseOffer(handle, status: 491, warning: "the call is not connected") }
            return
        }
        let (offer, body) = midCallOffer(id, side: side, socket: socket)
        calls[id]?.midCallOffers[Self.bridgeSide(side)] = offer
        calls[id]?.ourDescriptions[Self.bridgeSide(side)] = body
        on(agent) { $0.answerOffer(handle, body: body) }
    }

    /// Our offer on a connected leg (`sendrecv`, every codec of its policy, the one it runs
    /// first): the same session id, address and keys as our description on it, the version one
    /// up. Once it went, the caller keeps it as the offer the answer is read against
    /// (`midCallOffers`) and as our description on the leg.
    private func midCallOffer(
        _ id: Int, side: Side, socket: MediaLegSocket, preferring: [SDPAudioCodec] = [], direction: SDPDirection = .sendrecv
    ) -> (SDPSession, SIPMessageBody) {
        let mediaSide = Self.bridgeSide(side)
        let previous = CallMediaNegotiation.PreviousDescription(calls[id]?.ourDescriptions[mediaSide])
        var offer = SDPOfferAnswer.makeOffer(
            policy: policy(for: side), address: previous.address ?? socket.localAddress.hostText, port: socket.port,
            sessionID: previous.sessionID, sessionVersion: previous.nextVersion, preferring: preferring,
            makeKey: { previous.keys[$0] ?? Self.makeKey($0) })
        if direction != .sendrecv {
            for index in offer.media.indices { offer.media[index].setDirection(direction) }
        }
        return (offer, SIPMessageBody(contentType: "application/sdp", text: offer.serialized))
    }

    /// The peer's answer to our mid-call offer: in the ACK of its offerless re-INVITE, or in
    /// the 2xx to our re-INVITE (a hold relayed to the station).
    func midCallAnswer(_ handle: SIPCallHandle, side: Side, answer: SIPMessageBody) async {
        guard let (id, call, bridge, _) = bridgedCall(handle, side: side),
            let offer = calls[id]?.midCallOffers.removeValue(forKey: Self.bridgeSide(side))
        else { return }
        let ours = side == .legacy && call.state.stationHold.inFlight != nil
        do {
            let leg = try CallMediaNegotiation.leg(
                answeredBy: answer, to: offer, codecOptions: settings.codecOptions, canonicalName: settings.device,
                scope: side == .legacy ? 0 : call.farScope)
            try await bridge.update(Self.bridgeSide(side), to: leg)
            logger.info("\(side) leg renegotiated by our offer: \(leg.codec.rawValue), \(Self.directionText(leg))", metadata: ["channel": "\(call.channel.index)"])
            if ours {
                await updateState(id) { $0.stationAnswered() }
            } else if side != .legacy {
                await farLegChanged(id, leg)
            }
        } catch {
            // The exchange failed (RFC 3264 §8): the session stays as it was.
            logger.notice("\(side) answer to our offer ignored: \(error)", metadata: ["channel": "\(call.channel.index)"])
            if ours { await updateState(id) { $0.stationRefused(status: 488) } }
        }
    }

    // MARK: Holds relayed to the station

    /// The far leg's party changed direction: the call's state decides whether the station hears of it.
    private func farLegChanged(_ id: Int, _ leg: MediaLegConfiguration) async {
        let now = clock()
        // What we send the party is what it receives, and the other way round.
        await updateState(id) { $0.farLegChanged(sends: leg.receives, receives: leg.sends, at: now) }
    }

    /// `.offerToStation`: a re-INVITE to the station with the far party's direction mirrored,
    /// every codec of the legacy policy with the one the leg runs first.
    func offerToStation(_ id: Int, _ direction: SDPDirection) async {
        guard let call = calls[id], let handle = call.legacyHandle, let socket = call.legacyLeg else { return }
        let running = try? await call.bridge?.withBridge { $0.legCodec(.a) }
        let (offer, body) = midCallOffer(
            id, side: .legacy, socket: socket, preferring: running.map { [MediaLegMapping.sdpCodec($0)] } ?? [], direction: direction)
        let sent = on(legacy) { $0.reinvite(handle, body: body) }
        if sent {
            // The station's own exchange is over (else the re-INVITE could not go): nothing else waits for an answer on this leg.
            calls[id]?.midCallOffers[.a] = offer
            calls[id]?.ourDescriptions[.a] = body
            logger.info("hold relayed to the station: \(direction.rawValue)", metadata: ["channel": "\(call.channel.index)"])
        }
        let now = clock()
        await updateState(id) { $0.stationOffer(direction, sent: sent, at: now) }
    }

    /// The station refused our re-INVITE: holds stay at the bridge on this call.
    func stationRefused(_ handle: SIPCallHandle, status: Int) async {
        guard let (id, _) = legs[LegKey(side: .legacy, handle: handle)], let call = calls[id], call.state.stationHold.inFlight != nil else { return }
        calls[id]?.midCallOffers[.a] = nil
        logger.notice("the station refused a relayed hold (\(status)); holds stay at the gateway on this call", metadata: ["channel": "\(call.channel.index)"])
        await updateState(id) { $0.stationRefused(status: status) }
    }

    /// Runs one transition of a call's state and carries out what it says.
    func updateState(_ id: Int, _ transition: (inout BridgedCall) -> [BridgedCall.Action]) async {
        guard var call = calls[id] else { return }
        let actions = transition(&call.state)
        calls[id] = call
        await perform(actions, call: id)
    }

    static func directionText(_ leg: MediaLegConfiguration) -> String {
        switch (leg.sends, leg.receives) {
        case (true, true): "sendrecv"
        case (true, false): "we hold it"
        case (false, true): "held by the peer"
        case (false, false): "inactive"
        }
    }
}
