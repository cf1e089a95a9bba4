import Logging
import Media
import SIP
import SIPUserAgent

/// Offers and answers after the answer (RFC 3264 §8; re-INVITE RFC 3261 §14, UPDATE RFC 3311):
/// a leg that moves, changes key or codec, or holds. Each leg is negotiated on its own — the
/// gateway is a user agent on both — and the bridge follows: `MediaBridge.update` keeps both
/// output streams continuous across the change. A hold is absorbed at the bridge (nothing is
/// sent into a held stream, a held leg's packets are not played); docs/GATEWAY.md.
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
        guard let (_, call, bridge, socket) = bridgedCall(handle, side: side) else {
            // Before the answer (an UPDATE in the early dialog) or a leg on its way out.
            on(agent) { $0.refuseOffer(handle, status: 491, warning: "the call is not connected") }
            return
        }
        let previous = CallMediaNegotiation.PreviousDescription(on(agent) { $0.localBody(of: handle) })
        do {
            let session = try CallMediaNegotiation.description(in: offer, noneError: .badDescription("the offer is not SDP"))
            let answered = try CallMediaNegotiation.answer(
                session, policy: policy(for: side), address: previous.address ?? socket.localAddress.hostText, port: socket.port,
                codecOptions: settings.codecOptions, canonicalName: settings.device, scope: side == .legacy ? 0 : call.farScope,
                sessionID: previous.sessionID, sessionVersion: previous.nextVersion,
                makeKey: { previous.keys[$0] ?? Self.makeKey($0) })
            try await bridge.update(Self.bridgeSide(side), to: answered.leg)
            on(agent) { $0.answerOffer(handle, body: SIPMessageBody(contentType: "application/sdp", text: answered.answer.serialized)) }
            logger.info(
                "\(side) leg renegotiated by \(method): \(answered.leg.codec.rawValue), \(Self.directionText(answered.leg))",
                metadata: ["channel": "\(call.channel.index)"])
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
        let previous = CallMediaNegotiation.PreviousDescription(on(agent) { $0.localBody(of: handle) })
        let offer = SDPOfferAnswer.makeOffer(
            policy: policy(for: side), address: previous.address ?? socket.localAddress.hostText, port: socket.port,
            sessionID: previous.sessionID, sessionVersion: previous.nextVersion, makeKey: { previous.keys[$0] ?? Self.makeKey($0) })
        calls[id]?.midCallOffers[Self.bridgeSide(side)] = offer
        on(agent) { $0.answerOffer(handle, body: SIPMessageBody(contentType: "application/sdp", text: offer.serialized)) }
    }

    /// The peer's answer to our mid-call offer (in the ACK of an offerless re-INVITE).
    func midCallAnswer(_ handle: SIPCallHandle, side: Side, answer: SIPMessageBody) async {
        guard let (id, call, bridge, _) = bridgedCall(handle, side: side),
            let offer = calls[id]?.midCallOffers.removeValue(forKey: Self.bridgeSide(side))
        else { return }
        do {
            let leg = try CallMediaNegotiation.leg(
                answeredBy: answer, to: offer, codecOptions: settings.codecOptions, canonicalName: settings.device,
                scope: side == .legacy ? 0 : call.farScope)
            try await bridge.update(Self.bridgeSide(side), to: leg)
            logger.info("\(side) leg renegotiated by our offer: \(leg.codec.rawValue), \(Self.directionText(leg))", metadata: ["channel": "\(call.channel.index)"])
        } catch {
            // The exchange failed (RFC 3264 §8): the session stays as it was.
            logger.notice("\(side) answer to our offer ignored: \(error)", metadata: ["channel": "\(call.channel.index)"])
        }
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
