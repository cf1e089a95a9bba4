import NIOCore
public import SIP
public import SIPTransport

extension SIPUserAgent {
    // MARK: Outgoing calls (UAC, RFC 3261 §13.2)

    /// Calls `target` (a SIP URI) through `destination`. The call's progress arrives as events.
    /// `from` replaces the agent's own user in From and Contact (a gateway calls as one of its
    /// channels); `body` replaces the configured session description for this call.
    @discardableResult
    public func call(
        _ target: SIPURI, via destination: SIPDestination, from user: String? = nil, displayName: String? = nil, body: SIPMessageBody? = nil
    ) async throws -> SIPCallHandle {
        let flow = try await endpoint.flow(to: destination)
        return startCall(target, on: flow, from: user, displayName: displayName, body: body)
    }

    /// The same over a flow that exists (a registration's flow to the cloud, RFC 5626 §5.3).
    @discardableResult
    public func call(_ target: SIPURI, on flow: SIPFlow, from user: String? = nil, displayName: String? = nil, body: SIPMessageBody? = nil) -> SIPCallHandle {
        startCall(target, on: flow, from: user, displayName: displayName, body: body)
    }

    /// `displayName` (text, made safe here) replaces the configured one in From.
    func startCall(_ target: SIPURI, on flow: SIPFlow, from user: String? = nil, displayName: String? = nil, body: SIPMessageBody? = nil) -> SIPCallHandle {
        var from = localAddressOfRecord
        if let display = SIPNameAddress.safeDisplayName(displayName) { from.displayName = SIPNameAddress.quoted(display) }
        if let user, case .sip(var uri) = from.uri {
            uri.user = user
            from.uri = .sip(uri)
        }
        from.tag = SIPIdentifiers.tag()
        var invite = SIPMessage.request(.invite, .sip(target))
        invite.headers.add(.maxForwards, "70")
        invite.headers.add(.from, from.description)
        invite.headers.add(.to, SIPNameAddress(uri: target).description)
        invite.headers.add(.callID, SIPIdentifiers.callID(host: configuration.domain))
        invite.headers.add(.cseq, "1 INVITE")
        if let route = configuration.preloadedRoute { invite.headers.add(.route, route) }
        invite.headers.add(.contact, contact(for: flow, user: user).description)
        invite.headers.add(.allow, validator.allowedMethods.map(\.rawValue).joined(separator: ", "))
        invite.headers.add(.supported, "timer")
        if let interval = configuration.sessionExpires {
            invite.headers.add(.sessionExpires, String(interval))
            invite.headers.add(SIPSessionTimer.minSE, String(configuration.minimumSessionExpires))
        }
        invite.headers.add(.userAgent, endpoint.configuration.productName)
        addBody(to: &invite, body)
        let handle = newHandle()
        var call = SIPInviteSession(handle: handle, direction: .outgoing, state: .calling, flow: flow, invite: invite, timers: newCallTimers())
        call.localBody = body
        calls[handle] = call
        sendInvite(handle)
        return handle
    }

    private func sendInvite(_ handle: SIPCallHandle) {
        guard let call = calls[handle] else { return }
        let key = endpoint.assumeIsolated { endpoint in
            endpoint.sendRequest(call.invite, on: call.flow) { [self] _, event in
                self.assumeIsolated { $0.inviteEvent(handle, event) }
            }
        }
        calls[handle]?.inviteTransaction = key
    }

    private func inviteEvent(_ handle: SIPCallHandle, _ event: SIPClientEvent) {
        guard var call = calls[handle] else { return }
        switch event {
        case .timedOut:
            endCall(handle, reason: "timeout")
            emit(.failed(handle, status: 408))
        case .transportFailed:
            endCall(handle, reason: "transport failure")
            emit(.failed(handle, status: 503))
        case .response(let response, let flow):
            guard let code = response.statusCode else { return }
            switch code {
            case 100:
                // The next hop has the INVITE: the path works, even if nobody rings yet.
                if call.state == .calling { emit(.trying(handle)) }
            case 101...199:
                let (rings, early) = call.provisional(response)
                calls[handle] = call
                if rings { emit(.ringing(handle)) }
                if let early { emit(.earlyMedia(handle, answer: early)) }
            case 200...299:
                receiveInviteOK(handle, response, flow: flow)
            case 422:
                guard call.retryAfterIntervalTooSmall(response, asked: configuration.sessionExpires) else {
                    endCall(handle, reason: "rejected 422")
                    emit(.failed(handle, status: 422))
                    return
                }
                calls[handle] = call
                sendInvite(handle)
            case 401, 407:
                let credentials = call.authenticated ? nil : try? authorize(call.invite, challenge: response)
                guard call.retryAuthenticated(with: credentials.map { ($0.name, $0.value) }) else {
                    endCall(handle, reason: "authentication failed")
                    emit(.failed(handle, status: code))
                    return
                }
                calls[handle] = call
                sendInvite(handle)
            default:
                endCall(handle, reason: "rejected \(code)")
                emit(.failed(handle, status: code))
            }
        }
    }

    /// The Authorization for `request` after `challenge`: the agent's credentials, else the
    /// caller credentials as the user the request is from.
    private func authorize(_ request: SIPMessage, challenge: SIPMessage) throws -> (name: SIPHeaderName, value: String)? {
        let method = request.method ?? .invite, uri = request.requestURI?.description ?? ""
        if digestClient != nil { return try digestClient?.authorize(challenge, method: method, uri: uri, cnonce: SIPIdentifiers.random(16)) }
        guard let credentials = configuration.callerCredentials else { return nil }
        var client = DigestClient(username: credentials.username ?? request.from?.sipURI?.user ?? configuration.user, password: credentials.password)
        return try client.authorize(challenge, method: method, uri: uri, cnonce: SIPIdentifiers.random(16))
    }

    private func receiveInviteOK(_ handle: SIPCallHandle, _ response: SIPMessage, flow: SIPFlow) {
        guard var call = calls[handle] else { return }
        if let ack = call.ack {
            // A retransmitted 2xx: our ACK was lost (§13.2.2.4).
            endpoint.assumeIsolated { $0.send(ack, on: call.flow) }
            return
        }
        guard var dialog = SIPDialog(uacRequest: call.invite, response: response, localContact: contact(for: flow)) else {
            return
        }
        dialog.confirm(with: response)
        let via = endpoint.assumeIsolated { $0.makeVia(for: call.flow.transport) }
        let ack = dialog.makeACK(inviteSequence: call.invite.cseq?.sequence ?? 1, via: via)
        endpoint.assumeIsolated { $0.send(ack, on: call.flow) }
        let answer = call.established(by: response, dialog: dialog, ack: ack)
        calls[handle] = call
        callsByDialog[dialog.id] = handle
        startDurationLimit(handle)
        scheduleSessionTimer(handle)
        emit(.answered(handle, answer: answer, peerAllows: SIPAllowedMethods(response)))
    }

    /// Ends a call: CANCEL before the answer, BYE after (RFC 3261 §15). `reason` is an RFC 3326
    /// Reason header value for the CANCEL ("SIP;cause=200;text=\"Call completed elsewhere\"").
    /// An incoming call not answered yet is declined with `declineStatus` (486; 503 when the agent stops).
    public func hangUp(_ handle: SIPCallHandle, reason: String? = nil, declineStatus: Int = 486) {
        guard let call = calls[handle] else { return }
        switch call.ending {
        case .cancel(let key):
            calls[handle]?.state = .ending
            let headers: [(SIPHeaderName, String)] = reason.map { [(.reason, $0)] } ?? []
            endpoint.assumeIsolated { $0.cancel(key, headers: headers) }
        case .decline(let key):
            let status = (400...699).contains(declineStatus) ? declineStatus : 486
            if let key { respond(SIPResponseFactory.response(to: call.invite, status: status, toTag: call.dialog?.id.localTag), to: key) }
            endCall(handle, reason: "declined")
        case .bye:
            sendBYE(handle, reason: reason)
        case .nothing:
            return
        }
    }

    /// BYE, with a `Reason` (RFC 3326) when the call ends for a reason the peer should know.
    /// `endingNow`: the peer is presumed gone (a timer ran out), so the call ends at once with
    /// that reason instead of when the BYE's transaction does (up to 64·T1 later).
    func sendBYE(_ handle: SIPCallHandle, reason: String? = nil, endingNow: String? = nil) {
        guard var call = calls[handle], var dialog = call.dialog else { return }
        let via = endpoint.assumeIsolated { $0.makeVia(for: call.flow.transport) }
        var bye = dialog.makeRequest(.bye, via: via)
        if let reason { bye.headers.add(.reason, reason) }
        call.dialog = dialog
        call.state = .ending
        calls[handle] = call
        _ = endpoint.assumeIsolated { endpoint in
            endpoint.sendRequest(bye, on: call.flow) { [self] _, event in
                self.assumeIsolated { agent in
                    if case .response(let response, _) = event, (response.statusCode ?? 0) < 200 { return }
                    agent.endCall(handle, reason: "local BYE")
                }
            }
        }
        if let endingNow { endCall(handle, reason: endingNow) }
    }

    // MARK: Incoming calls (UAS, RFC 3261 §13.3)

    func receiveInvite(_ request: SIPMessage, key: SIPTransactionKey, flow: SIPFlow) {
        let tag = SIPIdentifiers.tag()
        if refuseShortSession(request, key: key, toTag: tag) { return }
        let handle = newHandle()
        let called = Self.contactUser(request.requestURI?.sipURI?.user)
        guard let dialog = SIPDialog(uasRequest: request, localTag: tag, localContact: contact(for: flow, user: called), early: true) else {
            respond(SIPResponseFactory.response(to: request, status: 400, toTag: tag), to: key)
            return
        }
        var call = SIPInviteSession(handle: handle, direction: .incoming, state: .ringing, flow: flow, invite: request, timers: newCallTimers())
        call.remoteBody = SIPMessageBody(request)
        call.dialog = dialog
        call.inviteTransaction = key
        calls[handle] = call
        callsByDialog[dialog.id] = handle
        callsByServerTransaction[key] = handle
        emit(.incomingCall(handle, SIPIncomingCall(request, flow: flow)))
        guard case .softphone(let answerAfter) = configuration.role else { return }  // the owner rings and answers
        ring(handle)
        if let delay = answerAfter { updateTimers(handle) { $0.answer(after: Self.seconds(delay), now: $1) } }
    }

    /// Tells the caller the call rings: 180, or 183 Session Progress with our session description
    /// when `body` carries early media (RFC 3261 §13.3.1.1; the same description goes in the 2xx).
    public func ring(_ handle: SIPCallHandle, status: Int = 180, body: SIPMessageBody? = nil) {
        guard var call = calls[handle], call.direction == .incoming, call.state == .ringing, let key = call.inviteTransaction,
            let dialog = call.dialog
        else { return }
        var response = SIPResponseFactory.response(to: call.invite, status: status, toTag: dialog.id.localTag)
        response.headers.add(.contact, dialog.localContact.description)
        if let body {
            call.localBody = body
            calls[handle] = call
            SIPResponseFactory.copyRecordRoute(from: call.invite, into: &response)
            addBody(to: &response, body)
        }
        respond(response, to: key)
    }

    /// Answers an incoming call with 200 and our session description (`body` for this call, else
    /// the configured one).
    public func answer(_ handle: SIPCallHandle, body: SIPMessageBody? = nil) {
        guard var call = calls[handle], call.direction == .incoming, call.state == .ringing, let key = call.inviteTransaction,
            let dialog = call.dialog
        else { return }
        if let body { call.localBody = body }
        var ok = SIPResponseFactory.response(to: call.invite, status: 200, toTag: dialog.id.localTag)
        SIPResponseFactory.copyRecordRoute(from: call.invite, into: &ok)
        ok.headers.add(.contact, dialog.localContact.description)
        ok.headers.add(.allow, allowHeader)
        addSessionTimer(to: &ok, answering: call.invite, in: &call)
        addBody(to: &ok, call.localBody)
        call.state = .answered
        calls[handle] = call
        calls[handle]?.dialog?.state = .confirmed
        sendOK(ok, to: key, in: handle)
        emit(.answered(handle, answer: nil, peerAllows: SIPAllowedMethods(call.invite)))
    }

    /// Sends a 2xx to an INVITE (initial or re-INVITE) and keeps retransmitting it until the
    /// ACK: RFC 3261 §13.3.1.4, T1 doubling up to T2, a BYE after 64·T1 without ACK
    /// (`SIPCallTimers`). Reliable transports need it too: a proxy on the path may be on UDP.
    func sendOK(_ ok: SIPMessage, to key: SIPTransactionKey, in handle: SIPCallHandle) {
        calls[handle]?.okSent(ok, on: key, now: Self.uptime())
        respond(ok, to: key)
        rearmTimers(handle)
    }

    /// The ACK for our 2xx: it carries the INVITE's CSeq number (§13.2.2.4).
    func receiveACK(_ ack: SIPMessage) {
        guard let id = SIPDialogID.forReceivedRequest(ack), let handle = callsByDialog[id], var call = calls[handle],
            let confirmation = call.ackReceived(ack)
        else { return }
        calls[handle] = call
        if confirmation.confirmsCall {
            startDurationLimit(handle)
            scheduleSessionTimer(handle)
            emit(.confirmed(handle))
        }
        rearmTimers(handle)
        if let answer = confirmation.answer { emit(.answerReceived(handle, answer: answer)) }
    }

    func receiveCancel(inviteKey: SIPTransactionKey) {
        guard let handle = callsByServerTransaction[inviteKey], let call = calls[handle] else { return }
        respond(SIPResponseFactory.response(to: call.invite, status: 487, toTag: call.dialog?.id.localTag), to: inviteKey)
        endCall(handle, reason: "cancelled by caller")
    }

    /// The user part of our Contact on a call we answer: the one the caller called (a channel's
    /// AOR, `gw1-ch3`, so that in-dialog requests name the channel), when it is a plain token;
    /// else the agent's own user.
    static func contactUser(_ user: String?) -> String? {
        guard let user, (1...64).contains(user.utf8.count),
            user.utf8.allSatisfy({ SIPCharacterClass.hostname.contains($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "+") })
        else { return nil }
        return user
    }

    // MARK: Shared

    func startDurationLimit(_ handle: SIPCallHandle) {
        guard let limit = configuration.maxCallDuration else { return }
        updateTimers(handle) { $0.limitDuration(to: Self.seconds(limit), now: $1) }
    }

    func endCall(_ handle: SIPCallHandle, reason: String) {
        guard let call = calls.removeValue(forKey: handle) else { return }
        call.wakeUp.cancel()
        if let id = call.dialog?.id { callsByDialog[id] = nil }
        if let key = call.inviteTransaction { callsByServerTransaction[key] = nil }
        emit(.ended(handle, reason: reason))
    }

    func addBody(to message: inout SIPMessage, _ body: SIPMessageBody? = nil) {
        let chosen = body ?? configuration.sessionDescription.map { SIPMessageBody(contentType: $0.contentType, text: $0.body) }
        guard let chosen else { return }
        message.headers.set(.contentType, chosen.contentType)
        message.body = ByteBuffer(string: chosen.text)
    }

    /// Sends an INFO in the call's dialog (a DTMF digit as `application/dtmf-relay` for a peer
    /// without telephone-event; RFC 6086 for the method).
    public func sendInfo(_ handle: SIPCallHandle, body: SIPMessageBody) {
        guard var call = calls[handle], call.state == .established || call.state == .answered, var dialog = call.dialog else { return }
        let via = endpoint.assumeIsolated { $0.makeVia(for: call.flow.transport) }
        var info = dialog.makeRequest(.info, via: via)
        addBody(to: &info, body)
        call.dialog = dialog
        calls[handle] = call
        _ = endpoint.assumeIsolated { $0.sendRequest(info, on: call.flow) { _, _ in } }
    }

    /// Refuses an incoming call before it is answered (486 for a busy channel, 480, 603, …).
    public func reject(_ handle: SIPCallHandle, status: Int) {
        guard let call = calls[handle], call.direction == .incoming, call.state == .ringing, let key = call.inviteTransaction,
            let dialog = call.dialog
        else { return }
        respond(SIPResponseFactory.response(to: call.invite, status: status, toTag: dialog.id.localTag), to: key)
        endCall(handle, reason: "rejected \(status)")
    }

    /// The peer's session description: its offer (incoming) or its answer (outgoing, from the
    /// 2xx or from early media).
    public func remoteBody(of handle: SIPCallHandle) -> SIPMessageBody? { calls[handle]?.remoteBody }

    /// The RFC 4028 session timer a call settled on, if any.
    public func sessionTimer(of handle: SIPCallHandle) -> SIPSessionTimer? { calls[handle]?.sessionTimer }

    /// Our session description on a call: what we offered or answered last.
    public func localBody(of handle: SIPCallHandle) -> SIPMessageBody? { calls[handle]?.localBody }

    /// The flow a call's signalling runs on.
    public func flow(of handle: SIPCallHandle) -> SIPFlow? { calls[handle]?.flow }

    /// The INVITE that began the call (incoming: as received; outgoing: as sent).
    public func invite(of handle: SIPCallHandle) -> SIPMessage? { calls[handle]?.invite }

    func newHandle() -> SIPCallHandle {
        defer { nextHandle += 1 }
        return SIPCallHandle(value: nextHandle)
    }

    /// Calls whose connection died go on over `flow`, a new connection to the same next hop (the
    /// registration's after a reconnect, RFC 5626 §5.3): their in-dialog requests — a BYE among
    /// them — would otherwise have nowhere to go. Calls on live flows, or on flows to elsewhere,
    /// keep theirs.
    public func adoptFlow(_ flow: SIPFlow) {
        let alive = endpoint.assumeIsolated { $0.isAlive(flow) }
        guard alive, flow.transport.isReliable else { return }
        for (handle, call) in calls where call.flow != flow && call.flow.transport == flow.transport && call.flow.remote == flow.remote {
            guard !endpoint.assumeIsolated({ $0.isAlive(call.flow) }) else { continue }
            calls[handle]?.flow = flow
            logger.info("call moved to the new flow", metadata: ["call": "\(handle)", "flow": "\(flow)"])
        }
    }

    /// Calls in progress (tests and status).
    public var activeCallCount: Int { calls.count }
}

