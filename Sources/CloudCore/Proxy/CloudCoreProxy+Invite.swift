import DeviceTrust
import Foundation
import NIOCore
import SIP
import SIPTransport

/// One INVITE the proxy forked: the caller's server transaction, a client transaction per
/// branch, and the fork's response context.
struct ProxiedCall {
    var invite: SIPMessage
    var callerFlow: SIPFlow
    var fork: ForkedInvite
    var branchKeys: [SIPTransactionKey?]
    var branchNames: [String]
    var branchFlows: [SIPFlow?]
    var finalResponses: [SIPMessage?]
    var ringTimer: Scheduled<Void>?
    /// Wall time (the record's); `startedUptime` the monotonic time at the same moment (the
    /// record's later times are the start plus the monotonic time elapsed).
    var startedAt: Double
    var startedUptime: Double
    /// The call's record (`CallRecord.ref`): written when routing starts, at the answer and at the end.
    let recordRef = CallRecord.newRef()
    var target: String
    var channel: String?
    var caller: String
    var callee: String
    /// Who placed it: the per-principal limit counts it.
    var principal: Principal
}

extension CloudCoreProxy {
    // MARK: Location and relay for INVITE

    func routeInvite(_ request: SIPMessage, key: SIPTransactionKey, flow: SIPFlow, principal: Principal) {
        guard case .sip(let requestURI)? = request.requestURI, let calleeUser = requestURI.user.map(SIPURI.unescaped),
            let callerUser = request.from?.sipURI?.user.map(SIPURI.unescaped)
        else {
            reply(request, key: key, status: 404)
            return
        }
        // A principal calls as itself: no From spoofing.
        guard principal.owns(callerUser) else {
            forbid(request, key: key, "\(principal) calls as \(callerUser)", flow: flow)
            return
        }
        // RFC 4028 §8.1: an interval below what we allow is refused with our Min-SE.
        if let asked = SIPSessionTimer.sessionExpires(in: request), asked.interval < SIPSessionTimer.floor {
            var tooSmall = SIPResponseFactory.response(to: request, status: 422, toTag: SIPIdentifiers.tag())
            tooSmall.headers.add(SIPSessionTimer.minSE, String(SIPSessionTimer.floor))
            endpoint.assumeIsolated { $0.respond(tooSmall, to: key) }
            return
        }
        guard admitCall(request, key: key, principal: principal) else { return }
        let request = assertIdentity(request, caller: callerUser, principal: principal)
        let now = clock()
        let plan: CallTargetResolver.Plan
        do {
            plan = try resolver.plan(for: calleeUser, caller: Directory.Party(principal), at: Date(timeIntervalSince1970: now))
        } catch {
            logger.error("directory lookup failed", metadata: ["error": "\(error)"])
            reply(request, key: key, status: 500)
            return
        }
        let callerChannel = Directory.channelParts(callerUser) != nil ? callerUser : nil
        let calleeChannel = Directory.channelParts(calleeUser) != nil ? calleeUser : nil
        var call = ProxiedCall(
            invite: request, callerFlow: flow, fork: ForkedInvite(branchCount: 0), branchKeys: [], branchNames: [], branchFlows: [],
            finalResponses: [], startedAt: now, startedUptime: uptime(), target: calleeUser, channel: calleeChannel ?? callerChannel,
            caller: callerUser, callee: calleeUser, principal: principal)

        var targets: [(name: String, uri: SIPURI, flow: SIPFlow?)] = []
        switch plan {
        case .reject(let status, let reason, let target):
            call.target = target
            reply(request, key: key, status: status, reason: reason)
            record(call, status: status, cancelled: false, answeredAt: nil, answeredBy: nil, endedAt: now, reason: reason)
            return
        case .refuse(let reason, let target):
            // One answer for "no such name" and "not yours to call" (no enumeration).
            call.target = target
            statistics.forbidden += 1
            if mayLogRefusal() {
                logger.notice("call refused by the call policy", metadata: ["principal": "\(principal)", "to": "\(calleeUser)", "reason": "\(reason)"])
            }
            reply(request, key: key, status: 404, reason: "Not Found")
            record(call, status: 404, cancelled: false, answeredAt: nil, answeredBy: nil, endedAt: now, reason: "call policy: \(reason)")
            return
        case .external(let uri, let target):
            call.target = target
            guard let parsed = try? SIPURIParser.parseSIP(uri) else {
                reply(request, key: key, status: 480)
                return
            }
            targets = [(uri, parsed, nil)]
        case .ring(let aors, let ringSeconds, let target):
            call.target = target
            for aor in aors {
                for binding in bindings(for: aor, now: uptime()) where targets.count < settings.maxBranches {
                    guard case .sip(var uri) = binding.contact.uri else { continue }
                    if binding.addressOfRecord != aor { uri.user = aor }  // a channel reached through its device's binding
                    switch route(to: binding, uri: uri) {
                    case .flow(let flow): targets.append((aor, uri, flow))
                    case .contact: targets.append((aor, uri, nil))
                    case .unreachable: continue
                    }
                }
            }
            guard !targets.isEmpty else {
                reply(request, key: key, status: 480, reason: "Temporarily Unavailable")
                record(call, status: 480, cancelled: false, answeredAt: nil, answeredBy: nil, endedAt: now, reason: "nobody registered")
                return
            }
            call.ringTimer = endpoint.eventLoop.scheduleTask(in: .seconds(Int64(ringSeconds))) { [self] in
                self.assumeIsolated { $0.ringTimeout(key) }
            }
        }
        statistics.callsRouted += 1
        call.fork = ForkedInvite(branchCount: targets.count)
        call.branchKeys = Array(repeating: nil, count: targets.count)
        call.branchNames = targets.map(\.name)
        call.branchFlows = targets.map(\.flow)
        call.finalResponses = Array(repeating: nil, count: targets.count)
        calls[key] = call
        record(call, status: .inProgress, answeredAt: nil, answeredBy: nil, endedAt: nil, reason: nil)
        logger.info("call", metadata: ["call-id": "\(request.callID ?? "")", "from": "\(callerUser)", "to": "\(call.target)", "branches": "\(targets.count)"])
        let branches = targets.map { (uri: $0.uri, flow: $0.flow) }
        anchorOffer(key) { proxy in
            for (index, target) in branches.enumerated() {
                proxy.startBranch(index, of: key, uri: target.uri, flow: target.flow)
            }
        }
    }

    /// The limits on calls at once (docs/CLOUD-CORE.md "Limits"): per principal (403, authorization
    /// will not help until one ends) and in the whole core (503 with Retry-After). A call counts
    /// from its INVITE until it ends.
    func admitCall(_ request: SIPMessage, key: SIPTransactionKey, principal: Principal) -> Bool {
        var total = dialogs.count, own = 0
        for dialog in dialogs.values where dialog.call.principal == principal { own += 1 }
        // Answered calls stay in `calls` for Timer L after their dialog ended: not counted.
        for call in calls.values where call.fork.answeredBranch == nil {
            total += 1
            if call.principal == principal { own += 1 }
        }
        if total >= settings.maxCalls {
            statistics.callsOverLimit += 1
            logger.warning("call refused: the core's call limit is reached", metadata: ["limit": "\(settings.maxCalls)", "principal": "\(principal)"])
            var busy = SIPResponseFactory.response(to: request, status: 503, toTag: SIPIdentifiers.tag())
            busy.headers.add(.retryAfter, "10")
            endpoint.assumeIsolated { $0.respond(busy, to: key) }
            return false
        }
        if own >= settings.callsPerPrincipal {
            statistics.callsOverLimit += 1
            logger.notice("call refused: too many calls at once", metadata: ["principal": "\(principal)", "limit": "\(settings.callsPerPrincipal)"])
            reply(request, key: key, status: 403, reason: "Too Many Calls")
            return false
        }
        return true
    }

    /// RFC 3325: the identity this request's caller authenticated as, asserted by us. Whatever
    /// P-Asserted-Identity or P-Preferred-Identity the caller sent is removed (no client is
    /// trusted to assert itself, §5). The display name: a user's from the directory; a gateway
    /// channel's as the gateway gave it in From ("Lobby door (801)": the device is trusted for
    /// the names of its own channels); either made safe for a header.
    func assertIdentity(_ request: SIPMessage, caller: String, principal: Principal) -> SIPMessage {
        var request = request
        request.headers.remove(.pAssertedIdentity)
        request.headers.remove(.pPreferredIdentity)
        let display: String?
        switch principal {
        case .user: display = SIPNameAddress.safeDisplayName(directory.displayName(ofUser: caller))
        case .device: display = SIPNameAddress.safeDisplayName(request.from?.displayText)
        }
        let asserted = SIPNameAddress(displayName: SIPNameAddress.quoted(display), uri: SIPURI(secure: true, user: caller, host: settings.domain))
        request.headers.add(.pAssertedIdentity, asserted.description)
        return request
    }

    enum BindingRoute { case flow(SIPFlow), contact, unreachable }

    /// Where a request for a binding goes (the NAT-detection stage's decision): an RFC 5626
    /// binding only over its flow (§5.3); another binding over the flow it registered on while
    /// that flow lives and speaks the contact's transport — the client's own TLS connection, or
    /// the address its UDP packets really came from (behind NAT the Contact is often
    /// unreachable) — and to its Contact URI otherwise (a Contact asking for another transport,
    /// a flow gone after a restart), but only at the address the REGISTER came from: a Contact
    /// cannot make the core connect to a third party (issue 16).
    func route(to binding: LocationBinding, uri: SIPURI) -> BindingRoute {
        // A gateway's binding only while its flow carries the device's current certificate: a
        // re-claimed or deleted device's old hardware gets no more calls (issue 17).
        if binding.principal.hasPrefix("device:"), !carriesCurrentCertificate(binding.flow) { return .unreachable }
        let alive = endpoint.assumeIsolated { $0.isAlive(binding.flow) }
        if binding.isOutbound { return alive ? .flow(binding.flow) : .unreachable }
        let destination = Self.destination(of: uri)
        if alive, binding.flow.transport == destination.transport { return .flow(binding.flow) }
        return Self.sameHost(destination.host, binding.flow.remote.hostText) ? .contact : .unreachable
    }

    /// Whether `flow`'s client certificate is the one the directory pins for the device it names.
    func carriesCurrentCertificate(_ flow: SIPFlow) -> Bool {
        guard let presented = endpoint.assumeIsolated({ $0.peerCertificate(on: flow) }), let certificate = DeviceCertificateName.certificate(presented),
            let device = DeviceCertificateName.deviceName(of: certificate)
        else { return false }
        return directory.isCurrentCertificate(device: device, serial: DeviceCertificateName.serial(of: certificate))
    }

    /// The AOR's bindings; a channel without its own registration is reached through the
    /// registration of its device.
    func bindings(for aor: String, now: Double) -> [LocationBinding] {
        let own = location.lookup(aor, now: now)
        if own.isEmpty, let device = Directory.channelParts(aor)?.device { return location.lookup(device, now: now) }
        return own
    }

    /// §16.6: copy, new Request-URI, Max-Forwards less one, Record-Route, our Via; send.
    func startBranch(_ index: Int, of key: SIPTransactionKey, uri: SIPURI, flow: SIPFlow?) {
        guard let call = calls[key] else { return }
        var request = call.invite
        request.startLine = .request(SIPRequestLine(method: .invite, uri: .sip(uri)))
        request.headers.set(.maxForwards, String(max(0, (request.maxForwards ?? 70) - 1)))
        request.headers.remove(.proxyAuthorization)  // credentials were for us (§22.3)
        if let flow {
            sendBranch(index, of: key, request: request, on: flow)
            return
        }
        let prepared = request
        Task { [self] in
            do {
                let resolved = try await endpoint.flow(to: Self.destination(of: uri))
                sendBranch(index, of: key, request: prepared, on: resolved)
            } catch {
                logger.notice("branch unreachable", metadata: ["uri": "\(uri)", "error": "\(error)"])
                branchEvent(key, index: index, event: .transportFailed)
            }
        }
    }

    private func sendBranch(_ index: Int, of key: SIPTransactionKey, request: SIPMessage, on outFlow: SIPFlow) {
        guard let call = calls[key] else { return }
        var request = request
        addRecordRoute(&request, incoming: call.callerFlow, outgoing: outFlow, callID: call.invite.callID ?? "", callerTag: call.invite.from?.tag ?? "")
        let forwarded = request
        let branchKey = endpoint.assumeIsolated { endpoint in
            var withVia = forwarded
            withVia.headers.prepend(.via, endpoint.makeVia(for: outFlow.transport).description)
            return endpoint.sendRequest(withVia, on: outFlow) { [self] _, event in
                self.assumeIsolated { $0.branchEvent(key, index: index, event: event) }
            }
        }
        calls[key]?.branchKeys[index] = branchKey
        calls[key]?.branchFlows[index] = outFlow
        // The caller cancelled, or another branch answered, while we were connecting.
        if let state = calls[key]?.fork, state.finished || state.callerCancelled, let branchKey {
            endpoint.assumeIsolated { $0.cancel(branchKey) }
        }
    }

    static func destination(of uri: SIPURI) -> SIPDestination {
        let transport: SIPTransportProtocol = uri.isSecure ? .tls : (uri.transport.flatMap { SIPTransportProtocol(token: $0) } ?? .udp)
        return SIPDestination(transport: transport, host: uri.host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: uri.port)
    }

    /// §16.6 step 4: Record-Route, twice when the request changes transport (the caller and the
    /// callee each reach us over their own; the top entry faces the callee).
    func addRecordRoute(_ request: inout SIPMessage, incoming: SIPFlow, outgoing: SIPFlow, callID: String, callerTag: String) {
        let inbound = recordRouteURI(for: incoming, callID: callID, callerTag: callerTag)
        let outbound = recordRouteURI(for: outgoing, callID: callID, callerTag: callerTag)
        if inbound != outbound { request.headers.prepend(.recordRoute, "<\(inbound)>") }
        request.headers.prepend(.recordRoute, "<\(outbound)>")
    }

    /// `sip:<advertised>:<port>;transport=…;lr;symcore=<signature>` (`RouteSignature`).
    func recordRouteURI(for flow: SIPFlow, callID: String, callerTag: String) -> String {
        let (hostText, port) = endpoint.assumeIsolated { $0.advertisedAddress(for: flow) }
        let host = hostText.contains(":") ? "[\(hostText)]" : hostText
        let transport = flow.transport.rawValue.lowercased()
        let signature = settings.routeSignature.sign(
            callID: callID, callerTag: callerTag, uri: Self.routeIdentity(host: hostText, port: port, transport: transport))
        return "sip:\(host):\(port);transport=\(transport);lr;\(Self.routeMarker)=\(signature)"
    }

    // MARK: Responses on the branches

    func branchEvent(_ key: SIPTransactionKey, index: Int, event: SIPClientEvent) {
        guard var call = calls[key] else {
            // The call is over; a late 2xx still goes to the caller (§16.7 step 5).
            return
        }
        var response: SIPMessage
        switch event {
        case .response(let message, _):
            response = message
        case .timedOut:
            response = SIPResponseFactory.response(to: call.invite, status: 408)
        case .transportFailed:
            response = SIPResponseFactory.response(to: call.invite, status: 503)
        }
        let status = response.statusCode ?? 500
        if case .response = event { Self.removeTopVia(&response) }
        if status >= 200 { call.finalResponses[index] = response }
        let actions = call.fork.response(status, on: index)
        calls[key] = call
        if status >= 200, status < 300, call.fork.answeredBranch == index { answered(key, branch: index, response: response) }
        perform(actions, key: key, current: (index, response))
    }

    func ringTimeout(_ key: SIPTransactionKey) {
        guard var call = calls[key] else { return }
        let actions = call.fork.ringTimerFired()
        calls[key] = call
        perform(actions, key: key)
    }

    func callerCancelled(_ key: SIPTransactionKey) {
        guard var call = calls[key] else { return }
        let actions = call.fork.callerCancel()
        calls[key] = call
        perform(actions, key: key)
    }

    /// `current` is the response that caused the actions: what a relay of its branch sends.
    private func perform(_ actions: [ForkedInvite.Action], key: SIPTransactionKey, current: (branch: Int, response: SIPMessage)? = nil) {
        guard let call = calls[key] else { return }
        for action in actions {
            switch action {
            case .relay(let branch, let status):
                guard var response = current?.branch == branch ? current?.response : call.finalResponses[branch] else { continue }
                if status == 503 {
                    // §16.7 step 6: a 503 from downstream goes up as 500.
                    response.startLine = .response(SIPStatusLine(statusCode: 500, reasonPhrase: "Server Internal Error"))
                }
                relayResponse(response, key: key, call: call)
                if status >= 300, !call.fork.branches.contains(where: { if case .final(200...299) = $0 { true } else { false } }) {
                    callFailed(key, status: status)
                }
            case .reply(let status, let reason):
                reply(call.invite, key: key, status: status, reason: reason)
                callFailed(key, status: status)
            case .cancel(let branches, let reason):
                let headers: [(SIPHeaderName, String)] = reason.headerValue.map { [(.reason, $0)] } ?? []
                for branch in branches {
                    guard let branchKey = call.branchKeys[branch] else { continue }
                    endpoint.assumeIsolated { $0.cancel(branchKey, headers: headers) }
                }
            }
        }
    }

    func relayResponse(_ response: SIPMessage, key: SIPTransactionKey, call: ProxiedCall) {
        anchorResponse(response, call: call) { proxy, response in proxy.relayNow(response, key: key, call: call) }
    }

    func relayNow(_ response: SIPMessage, key: SIPTransactionKey, call: ProxiedCall) {
        endpoint.assumeIsolated { endpoint in
            if endpoint.request(of: key) != nil {
                endpoint.respond(response, to: key, relayed: true)
            } else if let code = response.statusCode, (200...299).contains(code) {
                // The server transaction ended (Timer L): 2xx go statelessly (§16.7 step 10).
                endpoint.send(response, on: call.callerFlow)
            }
        }
    }

    /// The call failed or was cancelled: record it and forget it.
    func callFailed(_ key: SIPTransactionKey, status: Int) {
        guard let call = calls.removeValue(forKey: key) else { return }
        call.ringTimer?.cancel()
        if let callID = call.invite.callID, dialogs[callID] == nil { releaseAnchor(callID: callID, fromTag: call.invite.from?.tag) }
        record(call, status: status, cancelled: call.fork.callerCancelled, answeredAt: nil, answeredBy: nil, endedAt: recordTime(call),
               reason: call.fork.timedOut ? "no answer" : nil)
    }

    static func removeTopVia(_ message: inout SIPMessage) {
        guard let index = message.headers.indices(of: .via).first else { return }
        var scanner = message.headers.scanner(at: index)
        guard let vias = try? SIPVia.parseList(&scanner), vias.count > 1 else {
            message.headers.remove(at: index)
            return
        }
        message.headers.replaceValue(at: index, with: vias.dropFirst().map(\.description).joined(separator: ", "))
    }

    /// The call's record as it ends (`status` the caller's final status).
    func record(_ call: ProxiedCall, status: Int, cancelled: Bool, answeredAt: Double?, answeredBy: String?, endedAt: Double, reason: String?) {
        record(call, status: DialStatus(finalStatus: status, callerCancelled: cancelled), answeredAt: answeredAt, answeredBy: answeredBy, endedAt: endedAt, reason: reason)
    }

    /// Hands the call's record as it stands to the writer, which batches, retries and never
    /// loses it (docs/RELIABILITY.md "No call record lost").
    func record(_ call: ProxiedCall, status: DialStatus, answeredAt: Double?, answeredBy: String?, endedAt: Double?, reason: String?) {
        callRecords.add(CallRecord(
            ref: call.recordRef, callId: call.invite.callID ?? "", caller: call.caller, callee: call.callee, target: call.target, channel: call.channel,
            answeredBy: answeredBy, startedAt: call.startedAt, answeredAt: answeredAt, endedAt: endedAt, status: status, reason: reason))
    }

    /// Now, as the wall time of `call`'s record: its start plus the monotonic time since.
    func recordTime(_ call: ProxiedCall) -> Double { call.startedAt + max(0, uptime() - call.startedUptime) }
}
