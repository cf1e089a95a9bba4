import DeviceTrust
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
    /// Each side's RFC 5626 registration when it came over one: when the side's flow fails and
    /// it registers again over a new one (a NAT that changed address), its in-dialog requests go
    /// over the new flow.
    var callerInstance: PartyRegistration?
    var calleeInstance: PartyRegistration?
    /// Where each side is reached: its Contact.
    var callerContact: AnyURI?
    var calleeContact: AnyURI?
    /// The highest CSeq each side has used, so that our BYE comes after it (§12.2.1.1).
    var callerCSeq: UInt32
    var calleeCSeq: UInt32 = 0
    var answeredAt: Double
    var answeredBy: String
    var limitTimer: Scheduled<Void>?

    /// The request's tags are this dialog's, in either direction.
    func matches(fromTag: String?, toTag: String?) -> Bool {
        (fromTag == callerTag && toTag == calleeTag) || (fromTag == calleeTag && toTag == callerTag)
    }
}

/// What pins a dialog's side to its registration: the binding's AOR and `instance#reg-id`, and
/// what only the same UA in the same boot cycle has — the principal, the REGISTER's Call-ID
/// (RFC 3261 §10.2.4: one for all its registrations) and, for a device, the certificate's
/// serial. A name deleted and created again, whose new holder registers the same instance and
/// reg-id (the REGISTER 200 lists them), matches none of the last three.
struct PartyRegistration: Sendable {
    var aor: String
    var key: String
    var principal: String
    var registrationCallID: String
    var certificateSerial: String?
}

extension CloudCoreProxy {
    /// The winning 2xx: the dialog begins; the ring timer stops; the duration limit starts.
    func answered(_ key: SIPTransactionKey, branch: Int, response: SIPMessage) {
        guard var call = calls[key], let callID = call.invite.callID, dialogs[callID] == nil,
            let callerTag = call.invite.from?.tag, let calleeTag = response.to?.tag, let calleeFlow = call.branchFlows[branch]
        else {
            // Answered, but no dialog the core can keep (tags missing, a Call-ID already in a
            // dialog): its record is closed now rather than left open.
            if let call = calls[key] {
                let now = recordTime(call)
                record(call, status: .answered, answeredAt: now, answeredBy: call.branchNames.indices.contains(branch) ? call.branchNames[branch] : nil, endedAt: now, reason: "answered; no dialog kept (tags missing or Call-ID in use)")
                // Its media too, unless the Call-ID is another dialog's (whose media it is).
                if let callID = call.invite.callID, dialogs[callID] == nil { releaseAnchor(callID: callID, fromTag: call.invite.from?.tag) }
            }
            return
        }
        call.ringTimer?.cancel()
        call.ringTimer = nil
        calls[key] = call
        statistics.callsAnswered += 1
        let limit = TimeAmount(settings.maxCallDuration)
        var dialog = ProxiedDialog(
            call: call, callerTag: callerTag, calleeTag: calleeTag, calleeFlow: calleeFlow,
            callerContact: call.invite.contacts.first?.uri, calleeContact: response.contacts.first?.uri,
            callerCSeq: call.invite.cseq?.sequence ?? 1, answeredAt: recordTime(call), answeredBy: call.branchNames[branch])
        dialog.callerInstance = outboundInstance(of: call.caller, on: call.callerFlow)
        dialog.calleeInstance = outboundInstance(of: dialog.answeredBy, on: calleeFlow)
        record(call, status: .inProgress, answeredAt: dialog.answeredAt, answeredBy: dialog.answeredBy, endedAt: nil, reason: nil)
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

    /// Relays a request inside a dialog to its other side — only along a dialog the core knows
    /// (with From and To tags matching it) or a route the core signed (`RouteSignature`; a
    /// dialog lost in a restart), and only to where that side is: its flow (RFC 5626 §5.3), the
    /// flow of its registration, or its address. Everything else is refused: no relaying for
    /// strangers (docs/CLOUD-CORE.md "Who the core relays for").
    func routeInDialog(_ request: SIPMessage, key: SIPTransactionKey?, flow: SIPFlow) {
        var request = request
        let callID = request.callID ?? ""
        let routes = request.routes
        let ours = routes.prefix { $0.sipURI?.parameters.has(Self.routeMarker) == true }
        let tags = [request.from?.tag, request.to?.tag].compactMap { $0 }
        let signed = !ours.isEmpty && ours.allSatisfy { isSigned($0, callID: callID, tags: tags) }
        let dialog = dialogs[callID]
        if !ours.isEmpty, !signed {
            refuseInDialog(request, key: key, flow: flow, status: 403, "Route not signed by this core")
            return
        }
        if let dialog, !dialog.matches(fromTag: request.from?.tag, toTag: request.to?.tag) {
            refuseInDialog(request, key: key, flow: flow, status: 481, "tags do not match the dialog")
            return
        }
        if dialog == nil, !signed {
            refuseInDialog(request, key: key, flow: flow, status: 481, "no such dialog")
            return
        }
        request.headers.remove(.route)
        for route in routes.dropFirst(ours.count) { request.headers.add(.route, route.description) }
        request.headers.set(.maxForwards, String(max(0, (request.maxForwards ?? 70) - 1)))
        if let hops = request.maxForwards, hops <= 0, key != nil {
            reply(request, key: key!, status: 483)
            return
        }

        let method = request.method
        var sideFlow: SIPFlow?
        if var dialog {
            let fromCaller = request.from?.tag == dialog.callerTag
            let sequence = request.cseq?.sequence ?? 0
            if method != .ack, method != .cancel {
                if fromCaller { dialog.callerCSeq = max(dialog.callerCSeq, sequence) } else { dialog.calleeCSeq = max(dialog.calleeCSeq, sequence) }
            }
            dialogs[callID] = dialog
            // A side that registered again over a new flow (its NAT changed address) is reached
            // there: its old flow can look alive here long after it went dead.
            let instance = fromCaller ? dialog.calleeInstance : dialog.callerInstance
            sideFlow = instance.flatMap(currentFlow(of:)) ?? (fromCaller ? dialog.calleeFlow : dialog.call.callerFlow)
            if method == .bye { endDialog(callID, reason: fromCaller ? "caller hung up" : "callee hung up", sendBye: false) }
        }
        if let sideFlow, endpoint.assumeIsolated({ $0.isAlive(sideFlow) }) {
            forwardInDialog(request, key: key, on: sideFlow)
            return
        }
        // The side's flow is gone (a reconnect, a restart of ours): where its registration or its
        // address says, never anywhere a header names.
        let nextHop = request.routes.first?.sipURI ?? request.requestURI?.sipURI
        var target: BindingRoute = .unreachable
        if let nextHop, let binding = registeredBinding(at: nextHop) {
            target = route(to: binding, uri: nextHop)
        } else if let nextHop, let sideFlow, Self.sameHost(nextHop.host, sideFlow.remote.hostText) {
            target = .contact
        }
        switch target {
        case .flow(let flow):
            forwardInDialog(request, key: key, on: flow)
        case .contact:
            let relayed = request
            Task { [self] in
                do {
                    guard let nextHop else { throw SIPTransportError.noTransaction }
                    forwardInDialog(relayed, key: key, on: try await endpoint.flow(to: Self.destination(of: nextHop)))
                } catch {
                    logger.notice("in-dialog request unroutable", metadata: ["method": "\(method?.rawValue ?? "?")", "call-id": "\(callID)"])
                    if let key { reply(relayed, key: key, status: 480) }
                }
            }
        case .unreachable:
            logger.notice("in-dialog request: the other side is not reachable", metadata: ["method": "\(method?.rawValue ?? "?")", "call-id": "\(callID)"])
            // A BYE still ends the dialog for its sender (§15.1.1): 481 says it is gone here.
            if let key { reply(request, key: key, status: method == .bye ? 481 : 480) }
        }
    }

    /// The RFC 5626 registration among `aor`'s bindings that `flow` belongs to.
    func outboundInstance(of aor: String, on flow: SIPFlow) -> PartyRegistration? {
        guard let binding = bindings(for: aor, now: uptime()).first(where: { $0.isOutbound && $0.flow == flow }) else { return nil }
        return PartyRegistration(
            aor: binding.addressOfRecord, key: binding.key, principal: binding.principal, registrationCallID: binding.callID,
            certificateSerial: certificateSerial(on: flow))
    }

    /// The live flow of the same registration now (`PartyRegistration`), if it has one the core
    /// may use (`route(to:uri:)`: a device's only with its current certificate).
    func currentFlow(of party: PartyRegistration) -> SIPFlow? {
        guard
            let binding = bindings(for: party.aor, now: uptime()).first(where: {
                $0.isOutbound && $0.key == party.key && $0.principal == party.principal && $0.callID == party.registrationCallID
            }),
            certificateSerial(on: binding.flow) == party.certificateSerial,
            case .sip(let contact) = binding.contact.uri, case .flow(let flow) = route(to: binding, uri: contact)
        else { return nil }
        return flow
    }

    /// The serial of the client certificate on `flow` (a device's), nil without one.
    func certificateSerial(on flow: SIPFlow) -> String? {
        guard let presented = endpoint.assumeIsolated({ $0.peerCertificate(on: flow) }), let certificate = DeviceCertificateName.certificate(presented) else { return nil }
        return DeviceCertificateName.serial(of: certificate)
    }

    /// Whether `route` carries our signature for this dialog (either tag as the caller's).
    func isSigned(_ route: SIPNameAddress, callID: String, tags: [String]) -> Bool {
        guard let uri = route.sipURI, let value = uri.parameters.value(Self.routeMarker) ?? nil else { return false }
        return settings.routeSignature.verify(value, callID: callID, tags: tags, uri: Self.routeIdentity(host: uri.host, port: uri.port, transport: uri.transport))
    }

    /// What a Record-Route signature covers of its URI: the listener and transport it faces.
    static func routeIdentity(host: String, port: Int?, transport: String?) -> String {
        "\(host.lowercased()):\(port.map(String.init) ?? "");\(transport ?? "")"
    }

    /// A live binding whose contact is `uri`'s host, port and transport.
    func registeredBinding(at uri: SIPURI) -> LocationBinding? {
        let now = uptime()
        let wanted = Self.destination(of: uri)
        for list in location.bindings.values {
            for binding in list where binding.expiresAt > now {
                guard case .sip(let contact) = binding.contact.uri else { continue }
                let candidate = Self.destination(of: contact)
                if candidate.transport == wanted.transport, Self.sameHost(candidate.host, wanted.host),
                    candidate.port == wanted.port
                {
                    return binding
                }
            }
        }
        return nil
    }

    static func sameHost(_ a: String, _ b: String) -> Bool {
        a.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased() == b.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
    }

    /// An in-dialog request the core will not relay: answered (ACKs never are) while the source
    /// is within its allowance, dropped after — a forged-route flood gets nothing back.
    private func refuseInDialog(_ request: SIPMessage, key: SIPTransactionKey?, flow: SIPFlow, status: Int, _ reason: String) {
        let source = flow.remote.hostText
        guard limiter.allow(source, now: uptime()) else {
            dropped(source, key: key)
            return
        }
        statistics.inDialogRefused += 1
        if mayLogRefusal() { logger.notice("in-dialog request refused", metadata: [
            "method": "\(request.method?.rawValue ?? "?")", "reason": "\(reason)", "call-id": "\(request.callID?.prefix(80) ?? "")", "flow": "\(flow)",
        ]) }
        if let key { reply(request, key: key, status: status) }
    }

    private func forwardInDialog(_ request: SIPMessage, key: SIPTransactionKey?, on flow: SIPFlow) {
        anchorInDialog(request) { proxy, request in proxy.forwardInDialogNow(request, key: key, on: flow) }
    }

    private func forwardInDialogNow(_ request: SIPMessage, key: SIPTransactionKey?, on flow: SIPFlow) {
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
                    let relayed = response
                    self.assumeIsolated { proxy in
                        proxy.anchorInDialogResponse(relayed, to: request) { proxy, response in
                            proxy.endpoint.assumeIsolated { $0.respond(response, to: key, relayed: true) }
                        }
                    }
                case .timedOut:
                    endpoint.respond(SIPResponseFactory.response(to: request, status: 408), to: key)
                case .transportFailed:
                    endpoint.respond(SIPResponseFactory.response(to: request, status: 500), to: key)
                }
            }
        }
    }

    // MARK: Ending dialogs

    /// Forgets every dialog without a BYE or a record, as a crash does (tests of what follows).
    func forgetDialogs() {
        for dialog in dialogs.values { dialog.limitTimer?.cancel() }
        dialogs = [:]
    }

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
        releaseAnchor(callID: callID, fromTag: dialog.callerTag)
        if sendBye {
            sendLimitBye(in: dialog, toCallee: true)
            sendLimitBye(in: dialog, toCallee: false)
        }
        record(dialog.call, status: 200, cancelled: false, answeredAt: dialog.answeredAt, answeredBy: dialog.answeredBy, endedAt: recordTime(dialog.call), reason: reason)
    }

    /// A BYE inside a dialog we only proxied (what Kamailio's dialog module does on timeout):
    /// From/To/tags and a CSeq above what the side being spoken for has used.
    private func sendLimitBye(in dialog: ProxiedDialog, toCallee: Bool) {
        let invite = dialog.call.invite
        guard let target = toCallee ? dialog.calleeContact : dialog.callerContact, var from = invite.from, var to = invite.to else { return }
        to.tag = dialog.calleeTag
        let party = toCallee ? dialog.calleeInstance : dialog.callerInstance
        let flow = party.flatMap(currentFlow(of:)) ?? (toCallee ? dialog.calleeFlow : dialog.call.callerFlow)
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
