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
                let rewritten = try await anchor.offer(callID: callID, fromTag: fromTag, sdp: sdp)
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
        guard let anchor = settings.anchor, let callID = call.invite.callID else { return relay(self, response) }
        anchored(callID) { proxy in
            var response = response
            if let sdp = Self.sdp(of: response), let code = response.statusCode, (101...299).contains(code),
                let fromTag = call.invite.from?.tag, let toTag = response.to?.tag
            {
                do {
                    response = Self.replacingSDP(response, with: try await anchor.answer(callID: callID, fromTag: fromTag, toTag: toTag, sdp: sdp))
                } catch {
                    proxy.logger.error("media anchor: an answer was not anchored; relayed as it is", metadata: ["call-id": "\(callID)", "error": "\(error)"])
                }
            }
            relay(proxy, response)
        }
    }

    /// An in-dialog request through the anchor (re-INVITE, UPDATE, an ACK with the answer to a
    /// 2xx's offer), and its responses on their way back.
    func anchorInDialog(_ request: SIPMessage, forward: @escaping @Sendable (isolated CloudCoreProxy, SIPMessage) -> Void) {
        guard let anchor = settings.anchor, let callID = request.callID, let method = request.method, [.invite, .update, .ack].contains(method),
            let fromTag = request.from?.tag, let toTag = request.to?.tag
        else { return forward(self, request) }
        anchored(callID) { proxy in
            var request = request
            if let sdp = Self.sdp(of: request) {
                do {
                    // An ACK's SDP answers the offer its 2xx made (the sender of the 2xx offered).
                    let rewritten = method == .ack
                        ? try await anchor.answer(callID: callID, fromTag: toTag, toTag: fromTag, sdp: sdp)
                        : try await anchor.offer(callID: callID, fromTag: fromTag, sdp: sdp)
                    request = Self.replacingSDP(request, with: rewritten)
                } catch {
                    proxy.logger.error("media anchor: an in-dialog \(method.rawValue) was not anchored; relayed as it is", metadata: ["call-id": "\(callID)", "error": "\(error)"])
                }
            }
            forward(proxy, request)
        }
    }

    /// A response to an in-dialog request on its way back: an answer to the request's offer, or
    /// the 2xx's own offer to an offerless re-INVITE.
    func anchorInDialogResponse(_ response: SIPMessage, to request: SIPMessage, relay: @escaping @Sendable (isolated CloudCoreProxy, SIPMessage) -> Void) {
        guard let anchor = settings.anchor, let callID = request.callID, let sdp = Self.sdp(of: response), let code = response.statusCode,
            (101...299).contains(code), let fromTag = request.from?.tag, let toTag = request.to?.tag
        else { return relay(self, response) }
        let requestOffered = Self.sdp(of: request) != nil
        anchored(callID) { proxy in
            var response = response
            do {
                let rewritten = requestOffered
                    ? try await anchor.answer(callID: callID, fromTag: fromTag, toTag: toTag, sdp: sdp)
                    : try await anchor.offer(callID: callID, fromTag: toTag, sdp: sdp)
                response = Self.replacingSDP(response, with: rewritten)
            } catch {
                proxy.logger.error("media anchor: an in-dialog answer was not anchored; relayed as it is", metadata: ["call-id": "\(callID)", "error": "\(error)"])
            }
            relay(proxy, response)
        }
    }

    /// The call is over (failed, cancelled, hung up, cut at the limit): its media at the anchor too.
    func releaseAnchor(callID: String, fromTag: String?) {
        guard let anchor = settings.anchor else { return }
        anchored(callID) { proxy in
            await anchor.delete(callID: callID, fromTag: fromTag ?? "")
            proxy.anchorSteps[callID] = nil
        }
    }
}
