import Foundation
import NIOCore
import SIP
import SIPTransport

/// An answered call the proxy record-routed: enough to route in-dialog requests over the right
/// flows, to end the call at the duration limit with a BYE to each side, and to write its
/// history record when it ends.
struct ProxiedDialog {
    var call: ProxiedCall
    var callerTag: String
    var calleeTag: String
    var calleeFlow: SIPFlow
    /// Where each side is reached: its Contact.
    var callerContact: AnyURI?
    var calleeContact: AnyURI?
    /// The highest CSeq each side has used, so that our BYE comes after it (§12.2.1.1).
    var callerCSeq: UInt32
    var calleeCSeq: UInt32 = 0
    var answeredAt: Double
    var answeredBy: String
    var limitTimer: Scheduled<Void>?
}

extension CloudCoreProxy {
    /// The winning 2xx: the dialog begins; the ring timer stops; the duration limit starts.
    func answered(_ key: SIPTransactionKey, branch: Int, response: SIPMessage) {
        guard var call = calls[key], let callID = call.invite.callID, dialogs[callID] == nil,
            let callerTag = call.invite.from?.tag, let calleeTag = response.to?.tag, let calleeFlow = call.branchFlows[branch]
        else { return }
        call.ringTimer?.cancel()
        call.ringTimer = nil
        calls[key] = call
        statistics.callsAnswered += 1
        let limit = TimeAmount(settings.maxCallDuration)
        var dialog = ProxiedDialog(
            call: call, callerTag: callerTag, calleeTag: calleeTag, calleeFlow: calleeFlow,
            callerContact: call.invite.contacts.first?.uri, calleeContact: response.contacts.first?.uri,
            callerCSeq: call.invite.cseq?.sequence ?? 1, answeredAt: clock(), answeredBy: call.branchNames[branch])
        dialog.limitTimer = endpoint.eventLoop.scheduleTask(in: limit) { [self] in
            self.assumeIsolated { $0.durationLimitReached(callID) }
        }
        dialogs[callID] = dialog
        // The fork's context stays for Timer L's 32 s, to relay the winner's 2xx retransmissions.
        endpoint.eventLoop.scheduleTask(in: .seconds(32)) { [self] in
            self.assumeIsolated { $0.calls[key] = nil }
        }
        logger.info("answered", metadata: ["call-id": "\(callID)", "by": "\(dialog.answeredBy)"])
    }

    // MARK: In-dialog requests (loose routing, RFC 3261 §16.4, §16.12)

    /// Pops our Route entries and relays the request to the other side of its dialog: over the
    /// flow that side used (RFC 5626 §5.3), else to the next Route or the Request-URI.
    func routeInDialog(_ request: SIPMessage, key: SIPTransactionKey?, flow: SIPFlow) {
        var request = request
        let routes = request.routes
        let ours = routes.prefix { $0.sipURI?.parameters.has(Self.routeMarker) == true }
        guard !ours.isEmpty || dialogs[request.callID ?? ""] != nil else {
            // Not a dialog we are in: §16.4 would forward by Request-URI, but we route only
            // our own dialogs.
            if let key { reply(request, key: key, status: 404, reason: "Not Found (no such dialog)") }
            return
        }
        request.headers.remove(.route)
        for route in routes.dropFirst(ours.count) { request.headers.add(.route, route.description) }
        request.headers.set(.maxForwards, String(max(0, (request.maxForwards ?? 70) - 1)))
        if let hops = request.maxForwards, hops <= 0, key != nil {
            reply(request, key: key!, status: 483)
            return
        }

        let callID = request.callID ?? ""
        let method = request.method
        var outFlow: SIPFlow?
        if var dialog = dialogs[callID] {
            let fromCaller = request.from?.tag == dialog.callerTag
            let sequence = request.cseq?.sequence ?? 0
            if method != .ack, method != .cancel {
                if fromCaller { dialog.callerCSeq = max(dialog.callerCSeq, sequence) } else { dialog.calleeCSeq = max(dialog.calleeCSeq, sequence) }
            }
            dialogs[callID] = dialog
            let candidate = fromCaller ? dialog.calleeFlow : dialog.call.callerFlow
            if endpoint.assumeIsolated({ $0.isAlive(candidate) }) { outFlow = candidate }
            if method == .bye { endDialog(callID, reason: fromCaller ? "caller hung up" : "callee hung up", sendBye: false) }
        }
        let nextHop: AnyURI? = request.routes.first?.uri ?? request.requestURI
        if let outFlow {
            forwardInDialog(request, key: key, on: outFlow)
            return
        }
        let relayed = request
        Task { [self] in
            do {
                guard case .sip(let uri)? = nextHop else { throw SIPTransportError.noTransaction }
                forwardInDialog(relayed, key: key, on: try await endpoint.flow(to: Self.destination(of: uri)))
            } catch {
                logger.notice("in-dialog request unroutable", metadata: ["method": "\(method?.rawValue ?? "?")", "call-id": "\(callID)"])
                if let key { reply(relayed, key: key, status: 480) }
            }
        }
    }

    private func forwardInDialog(_ request: SIPMessage, key: SIPTransactionKey?, on flow: SIPFlow) {
        endpoint.assumeIsolated { endpoint in
            var forwarded = request
            forwarded.headers.prepend(.via, endpoint.makeVia(for: flow.transport).description)
            guard let key else {
                endpoint.send(forwarded, on: flow)  // ACK for a 2xx: stateless (§16.11)
                return
            }
            let sent = forwarded
            endpoint.sendRequest(sent, on: flow) { endpoint, event in
                // Stateful relay: the final response goes back up; a timeout or transport
                // failure becomes our own 408 / 500 (§16.7 step 6, §16.9).
                switch event {
                case .response(var response, _):
                    Self.removeTopVia(&response)
                    endpoint.respond(response, to: key, relayed: true)
                case .timedOut:
                    endpoint.respond(SIPResponseFactory.response(to: request, status: 408), to: key)
                case .transportFailed:
                    endpoint.respond(SIPResponseFactory.response(to: request, status: 500), to: key)
                }
            }
        }
    }

    // MARK: Ending dialogs

    /// The product's duration limit: BYE to both sides, then the record.
    func durationLimitReached(_ callID: String) {
        guard dialogs[callID] != nil else { return }
        statistics.callsEndedByLimit += 1
        logger.info("call duration limit reached; ending call", metadata: ["call-id": "\(callID)", "limit": "\(settings.maxCallDuration)"])
        endDialog(callID, reason: "duration limit", sendBye: true)
    }

    func endDialog(_ callID: String, reason: String, sendBye: Bool) {
        guard let dialog = dialogs.removeValue(forKey: callID) else { return }
        dialog.limitTimer?.cancel()
        if sendBye {
            sendLimitBye(in: dialog, toCallee: true)
            sendLimitBye(in: dialog, toCallee: false)
        }
        record(dialog.call, status: 200, cancelled: false, answeredAt: dialog.answeredAt, answeredBy: dialog.answeredBy, endedAt: clock(), reason: reason)
    }

    /// A BYE inside a dialog we only proxied (what Kamailio's dialog module does on timeout):
    /// From/To/tags and a CSeq above what the side being spoken for has used.
    private func sendLimitBye(in dialog: ProxiedDialog, toCallee: Bool) {
        let invite = dialog.call.invite
        guard let target = toCallee ? dialog.calleeContact : dialog.callerContact, var from = invite.from, var to = invite.to else { return }
        to.tag = dialog.calleeTag
        let flow = toCallee ? dialog.calleeFlow : dialog.call.callerFlow
        var bye = SIPMessage.request(.bye, target)
        bye.headers.add(.via, endpoint.assumeIsolated { $0.makeVia(for: flow.transport) }.description)
        bye.headers.add(.maxForwards, "70")
        if toCallee {
            bye.headers.add(.from, from.description)
            bye.headers.add(.to, to.description)
            bye.headers.add(.cseq, "\(dialog.callerCSeq + 1) BYE")
        } else {
            from.tag = dialog.callerTag
            bye.headers.add(.from, to.description)
            bye.headers.add(.to, from.description)
            bye.headers.add(.cseq, "\(dialog.calleeCSeq + 1) BYE")
        }
        bye.headers.add(.callID, invite.callID ?? "")
        // RFC 3326 with the Q.850 cause for "recovery on timer expiry".
        bye.headers.add(.reason, "Q.850;cause=102;text=\"Call duration limit\"")
        let logger = logger
        endpoint.assumeIsolated { endpoint in
            guard endpoint.isAlive(flow) else {
                logger.notice("BYE not sent: flow is gone", metadata: ["flow": "\(flow)"])
                return
            }
            endpoint.sendRequest(bye, on: flow) { _, event in
                if case .response(let response, _) = event, let code = response.statusCode, code >= 300 {
                    logger.info("BYE refused", metadata: ["status": "\(code)"])
                }
            }
        }
    }
}
