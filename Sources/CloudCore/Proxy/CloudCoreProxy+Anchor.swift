import Foundation
import NIOCore
import SIP
import SIPTransport

/// Media anchoring (`[media] anchor = "rtpengine"`, issue 19, docs/CLOUD-CORE.md "Media
/// anchoring"): every SDP the core relays goes through rtpengine's ng protocol — an offer (the
/// INVITE's, a re-INVITE's or UPDATE's, or a 2xx's to an offerless re-INVITE) as `offer` from the
/// offerer's tag, its answer as `answer` — so that both ends send their media to rtpengine, which
/// meets two NATed ends and re-keys SDES per leg. The call's media ends there with the call
/// (`delete`). The steps of one call run in order (`anchored`), so a 200 never overtakes its 183.
extension CloudCoreProxy {
    /// The SDP of `message`, when it carries one.
    static func sdp(of message: SIPMessage) -> String? {
        guard message.contentType?.lowercased().hasPrefix("application/sdp") == true, message.body.readableBytes > 0 else { return nil }
        return String(buffer: message.body)
    }

    static func replacingSDP(_ message: SIPMessage, with sdp: String) -> SIPMessage {
        var message = message
        message.body = ByteBuffer(string: sdp)
        return message
    }

    /// Runs `work` after the call's earlier anchored steps.
    func anchored(_ callID: String, _ work: @escaping @Sendable (isolated CloudCoreProxy) async -> Void) {
        let previous = anchorSteps[callID]
        anchorSteps[callID] = Task { [self] in
            await previous?.value
            await work(self)
        }
    }

    /// The INVITE's offer through the anchor, then `start` (the branches); a relay that does not
    /// answer fails the call with 500: media that would bypass it could not meet behind NAT.
    func anchorOffer(_ key: SIPTransactionKey, start: @escaping @Sendable (isolated CloudCoreProxy) -> Void) {
        guard let anchor = settings.anchor, let call = calls[key], let sdp = Self.sdp(of: call.invite), let callID = call.invite.callID,
            let fromTag = call.invite.from?.tag
        else { return start(self) }
        anchored(callID) { proxy in
            do {
                let rewritten = try await anchor.offer(callID: callID, fromTag: fromTag, sdp: sdp, opensCall: true)
                guard var current = proxy.calls[key], !current.fork.callerCancelled, !current.fork.finished else { return }
                current.invite = Self.replacingSDP(current.invite, with: rewritten)
                proxy.calls[key] = current
                start(proxy)
            } catch {
                proxy.logger.error("media anchor: the offer was not anchored; call refused", metadata: ["call-id": "\(callID)", "error": "\(error)"])
                guard let current = proxy.calls[key] else { return }
                proxy.reply(current.invite, key: key, status: 500, reason: "Media Relay Unavailable")
                proxy.callFailed(key, status: 500)
            }
        }
    }

    /// A response to the INVITE on its way to the caller: its SDP (the answer) through the anchor.
    func anchorResponse(_ response: SIPMessage, call: ProxiedCall, relay: @escaping @Sendable (isolated CloudCoreProxy, SIPMessage) -> Void) {
        guard settings.anchor != nil, let callID = call.invite.callID else { return relay(self, response) }
        var step: AnchorStep?
        if let code = response.statusCode, (101...299).contains(code), let fromTag = call.invite.from?.tag, let toTag = response.to?.tag {
            step = .answer(offerer: fromTag, answerer: toTag, confirmed: code >= 200)
        }
        throughAnchor(response, callID: callID, step, what: "an answer", deliver: relay)
    }

    /// What a relayed SDP is to the anchor: an offer from a tag, or the answer of one tag to the
    /// other's offer.
    enum AnchorStep {
        case offer(from: String)
        /// `confirmed`: in a 2xx or an ACK.
        case answer(offerer: String, answerer: String, confirmed: Bool)
    }

    /// `message`'s SDP through the anchor as `step`, then `deliver`, in the call's order (one
    /// without SDP, or with `step` nil, waits its turn too: a 180 does not overtake the 183
    /// before it). One that cannot be anchored goes on as it is, with an error in the log:
    /// refusing it is no option.
    func throughAnchor(
        _ message: SIPMessage, callID: String, _ step: AnchorStep?, what: String, deliver: @escaping @Sendable (isolated CloudCoreProxy, SIPMessage) -> Void
    ) {
        guard let anchor = settings.anchor else { return deliver(self, message) }
        anchored(callID) { proxy in
            var message = message
            guard let step, let sdp = Self.sdp(of: message) else { return deliver(proxy, message) }
            do {
                let rewritten: String
                switch step {
                case .offer(let from): rewritten = try await anchor.offer(callID: callID, fromTag: from, sdp: sdp, opensCall: false)
                case .answer(let offerer, let answerer, let confirmed):
                    rewritten = try await anchor.answer(callID: callID, fromTag: offerer, toTag: answerer, sdp: sdp, confirmed: confirmed)
                }
                message = Self.replacingSDP(message, with: rewritten)
            } catch {
                proxy.logger.error("media anchor: \(what) was not anchored; relayed as it is", metadata: ["call-id": "\(callID)", "error": "\(error)"])
            }
            deliver(proxy, message)
        }
    }

    /// An in-dialog request through the anchor (re-INVITE, UPDATE, an ACK with the answer to a
    /// 2xx's offer), in the call's order.
    func anchorInDialog(_ request: SIPMessage, forward: @escaping @Sendable (isolated CloudCoreProxy, SIPMessage) -> Void) {
        guard settings.anchor != nil, let callID = request.callID, let method = request.method, [.invite, .update, .ack].contains(method),
            let fromTag = request.from?.tag, let toTag = request.to?.tag
        else { return forward(self, request) }
        // An ACK's SDP answers the offer its 2xx made (the sender of the 2xx offered).
        let step: AnchorStep = method == .ack ? .answer(offerer: toTag, answerer: fromTag, confirmed: true) : .offer(from: fromTag)
        throughAnchor(request, callID: callID, step, what: "an in-dialog \(method.rawValue)", deliver: forward)
    }

    /// A response to an in-dialog request on its way back: an answer to the request's offer, or
    /// the 2xx's own offer to an offerless re-INVITE.
    func anchorInDialogResponse(_ response: SIPMessage, to request: SIPMessage, relay: @escaping @Sendable (isolated CloudCoreProxy, SIPMessage) -> Void) {
        guard settings.anchor != nil, let callID = request.callID, let code = response.statusCode, (101...299).contains(code),
            let fromTag = request.from?.tag, let toTag = request.to?.tag
        else { return relay(self, response) }
        guard Self.sdp(of: response) != nil else { return relay(self, response) }
        let step: AnchorStep = Self.sdp(of: request) != nil ? .answer(offerer: fromTag, answerer: toTag, confirmed: code >= 200) : .offer(from: toTag)
        throughAnchor(response, callID: callID, step, what: "an in-dialog answer", deliver: relay)
    }

    /// The call is over (failed, cancelled, hung up, cut at the limit): its media at the anchor too.
    func releaseAnchor(callID: String, fromTag: String?) {
        guard let anchor = settings.anchor else { return }
        anchored(callID) { _ in await anchor.delete(callID: callID, fromTag: fromTag ?? "") }
        // The call's queue goes once the release has run — unless a step came after it.
        guard let release = anchorSteps[callID] else { return }
        Task { [self] in
            await release.value
            self.forgetAnchorSteps(callID, after: release)
        }
    }

    func forgetAnchorSteps(_ callID: String, after release: Task<Void, Never>) {
        if anchorSteps[callID] == release { anchorSteps[callID] = nil }
    }
}
