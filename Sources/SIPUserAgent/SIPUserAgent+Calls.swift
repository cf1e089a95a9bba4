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
        var call = SIPCall(handle: handle, direction: .outgoing, state: .calling, flow: flow, invite: invite)
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
                var early = false
                if let body = SIPMessageBody(response), body != call.remoteBody {  // early media
                    call.remoteBody = body
                    early = true
                }
                let first = call.state == .calling
                if first { call.state = .ringing }
                calls[handle] = call
                if first { emit(.ringing(handle)) }
                if early { emit(.earlyMedia(handle)) }
            case 200...299:
                receiveInviteOK(handle, response, flow: flow)
            case 422 where !call.retriedSessionInterval:
                // RFC 4028 §7.4: our interval was too small; again with the peer's Min-SE.
                guard let minimum = SIPSessionTimer.minimum(in: response), minimum > (configuration.sessionExpires ?? 0) else {
                    endCall(handle, reason: "rejected 422")
                    emit(.failed(handle, status: 422))
                    return
                }
                var invite = call.invite
                invite.headers.remove(.via)
                let sequence = (invite.cseq?.sequence ?? 1) &+ 1
                invite.headers.set(.cseq, "\(sequence) INVITE")
                invite.headers.set(.sessionExpires, String(minimum))
                invite.headers.set(SIPSessionTimer.minSE, String(minimum))
                call.invite = invite
                call.retriedSessionInterval = true
                calls[handle] = call
                sendInvite(handle)
            case 401, 407:
                // Retry once with credentials, CSeq + 1 (RFC 3261 §22.2).
                guard !call.authenticated, digestClient != nil, let header = try? digestClient!.authorize(
                    response, method: .invite, uri: call.invite.requestURI?.description ?? "", cnonce: SIPIdentifiers.random(16))
                else {
                    endCall(handle, reason: "authentication failed")
                    emit(.failed(handle, status: code))
                    return
                }
                var invite = call.invite
                invite.headers.remove(.via)
                let sequence = (invite.cseq?.sequence ?? 1) + 1
                invite.headers.set(.cseq, "\(sequence) INVITE")
                invite.headers.add(header.name, header.value)
                call.invite = invite
                call.authenticated = true
                calls[handle] = call
                sendInvite(handle)
            default:
                endCall(handle, reason: "rejected \(code)")
                emit(.failed(handle, status: code))
            }
        }
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
        call.ack = ack
        call.dialog = dialog
        call.state = .established
        if let body = SIPMessageBody(response) { call.remoteBody = body }
        call.sessionTimer = SIPSessionTimer.settled(by: response)
        calls[handle] = call
        callsByDialog[dialog.id] = handle
        startDurationLimit(handle)
        scheduleSessionTimer(handle)
        emit(.answered(handle))
    }

    /// Ends a call: CANCEL before the answer, BYE after (RFC 3261 §15). `reason` is an RFC 3326
    /// Reason header value for the CANCEL ("SIP;cause=200;text=\"Call completed elsewhere\"").
    public func hangUp(_ handle: SIPCallHandle, reason: String? = nil) {
        guard let call = calls[handle] else { return }
        switch (call.direction, call.state) {
        case (.outgoing, .calling), (.outgoing, .ringing):
            if let key = call.inviteTransaction {
                calls[handle]?.state = .ending
                let headers: [(SIPHeaderName, String)] = reason.map { [(.reason, $0)] } ?? []
                endpoint.assumeIsolated { $0.cancel(key, headers: headers) }
            }
        case (.incoming, .calling), (.incoming, .ringing):
            if let key = call.inviteTransaction {
                respond(SIPResponseFactory.response(to: call.invite, status: 486, toTag: call.dialog?.id.localTag), to: key)
            }
            endCall(handle, reason: "declined")
        case (_, .answered), (_, .established):
            sendBYE(handle, reason: reason)
        default:
            return
        }
    }

    /// BYE, with a `Reason` (RFC 3326) when the call ends for a reason the peer should know.
    /// `endingNow`: the peer is presumed gone (a timer ran out), so the call ends at once with
    /// that reason instead of when the BYE's transaction does (up to 64·T1 later).
    private func sendBYE(_ handle: SIPCallHandle, reason: String? = nil, endingNow: String? = nil) {
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

    // MARK: Re-INVITE (RFC 3261 §14)

    /// Sends a re-INVITE offering `body` (else the call's own description): a new address, key,
    /// codec or direction (hold), or a session refresh. False when it cannot go now: the call is
    /// not established, or an offer or INVITE is already in flight (§14.1) — the caller tries
    /// later. On 491 (glare) it goes again after the randomized delay, as often as it takes; the
    /// answer arrives as `answerReceived`.
    @discardableResult
    public func reinvite(_ handle: SIPCallHandle, body: SIPMessageBody? = nil) -> Bool {
        guard var call = calls[handle], call.state == .established, var dialog = call.dialog else { return false }
        guard call.offerAnswer.outstanding == .none, dialog.beginOutgoingInvite() else { return false }
        _ = call.offerAnswer.sendOffer()
        let offer = body ?? call.reinviteBody ?? call.localBody
        let via = endpoint.assumeIsolated { $0.makeVia(for: call.flow.transport) }
        var invite = dialog.makeRequest(.invite, via: via)
        invite.headers.add(.contact, dialog.localContact.description)
        invite.headers.add(.allow, allowHeader)
        invite.headers.add(.supported, "timer")
        if let timer = call.sessionTimer {
            // A refresh keeps the interval, and we stay the refresher (RFC 4028 §7.4).
            invite.headers.add(.sessionExpires, "\(timer.interval);refresher=uac")
        }
        addBody(to: &invite, offer)
        call.reinviteBody = offer
        call.dialog = dialog
        calls[handle] = call
        let sequence = invite.cseq?.sequence ?? dialog.localSequence
        _ = endpoint.assumeIsolated { endpoint in
            endpoint.sendRequest(invite, on: call.flow) { [self] _, event in
                self.assumeIsolated { $0.reinviteEvent(handle, event, sequence: sequence) }
            }
        }
        return true
    }

    private func reinviteEvent(_ handle: SIPCallHandle, _ event: SIPClientEvent, sequence: UInt32) {
        guard var call = calls[handle], var dialog = call.dialog else { return }
        switch event {
        case .response(let response, _):
            guard let code = response.statusCode, code >= 200 else { return }
            dialog.finishOutgoingInvite(response: response)
            call.offerAnswer.closedOurs()
            call.dialog = dialog
            if (200...299).contains(code) {
                let via = endpoint.assumeIsolated { $0.makeVia(for: call.flow.transport) }
                let ack = dialog.makeACK(inviteSequence: sequence, via: via)
                endpoint.assumeIsolated { $0.send(ack, on: call.flow) }
                let answer = SIPMessageBody(response)
                if let offered = call.reinviteBody { call.localBody = offered }
                call.reinviteBody = nil
                if let answer { call.remoteBody = answer }
                if let settled = SIPSessionTimer.settled(by: response) { call.sessionTimer = settled }
                calls[handle] = call
                scheduleSessionTimer(handle)
                emit(.reinvited(handle))
                if let answer { emit(.answerReceived(handle, answer: answer)) }
            } else if code == 491 {
                var generator = SystemRandomNumberGenerator()
                let delay = dialog.glareRetryDelay(using: &generator)
                calls[handle] = call
                emit(.glare(handle, retryAfter: delay))
                _ = endpoint.eventLoop.scheduleTask(in: TimeAmount(delay)) { [self] in
                    self.assumeIsolated { $0.retryReinvite(handle, attempts: 20) }
                }
            } else if code == 500, let seconds = response.headers[.retryAfter].flatMap({ UInt32($0.prefix { $0.isNumber }) }), seconds <= 10 {
                // The peer's own offer was still unanswered (§14.2): again after its Retry-After.
                calls[handle] = call
                let delay = Duration.seconds(Int(seconds))
                emit(.glare(handle, retryAfter: delay))
                _ = endpoint.eventLoop.scheduleTask(in: TimeAmount(delay)) { [self] in
                    self.assumeIsolated { $0.retryReinvite(handle, attempts: 20) }
                }
            } else {
                // Refused: the session stays as it was (§14.1).
                call.reinviteBody = nil
                calls[handle] = call
            }
        case .timedOut, .transportFailed:
            // §14.1: a re-INVITE that fails this way ends the call.
            sendBYE(handle, endingNow: "re-INVITE timed out")
        }
    }

    /// The retry after a 491. If the peer's own re-INVITE or offer is still being answered at
    /// that moment (§14.1 allows one at a time), it waits a little and tries again.
    private func retryReinvite(_ handle: SIPCallHandle, attempts: Int) {
        guard calls[handle] != nil, !reinvite(handle), attempts > 1 else { return }
        _ = endpoint.eventLoop.scheduleTask(in: .milliseconds(250)) { [self] in
            self.assumeIsolated { $0.retryReinvite(handle, attempts: attempts - 1) }
        }
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
        var call = SIPCall(handle: handle, direction: .incoming, state: .ringing, flow: flow, invite: request)
        call.remoteBody = SIPMessageBody(request)
        call.dialog = dialog
        call.inviteTransaction = key
        calls[handle] = call
        callsByDialog[dialog.id] = handle
        callsByServerTransaction[key] = handle
        emit(.incomingCall(handle, from: request.from?.uri.description ?? "?"))
        if configuration.ringOnIncoming { ring(handle) }
        if let delay = configuration.answerAfter {
            calls[handle]?.answerTask = endpoint.eventLoop.scheduleTask(in: TimeAmount(delay)) { [self] in
                self.assumeIsolated { $0.answer(handle) }
            }
        }
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
        ok.headers.add(.allow, validator.allowedMethods.map(\.rawValue).joined(separator: ", "))
        addSessionTimer(to: &ok, answering: call.invite, in: &call)
        addBody(to: &ok, call.localBody)
        call.state = .answered
        calls[handle] = call
        calls[handle]?.dialog?.state = .confirmed
        sendOK(ok, to: key, in: handle)
        emit(.answered(handle))
    }

    /// Sends a 2xx to an INVITE (initial or re-INVITE) and keeps retransmitting it until the
    /// ACK: RFC 3261 §13.3.1.4, T1 doubling up to T2, a BYE after 64·T1 without ACK. Reliable
    /// transports need it too: a proxy on the path may be on UDP.
    private func sendOK(_ ok: SIPMessage, to key: SIPTransactionKey, in handle: SIPCallHandle) {
        calls[handle]?.okRetransmitTask?.cancel()
        calls[handle]?.okResponse = ok
        calls[handle]?.okTransaction = key
        calls[handle]?.okRetransmitInterval = endpoint.configuration.timers.t1
        calls[handle]?.okRetransmitDeadline = .now() + TimeAmount(endpoint.configuration.timers.transactionTimeout)
        respond(ok, to: key)
        scheduleOKRetransmission(handle)
    }

    private func scheduleOKRetransmission(_ handle: SIPCallHandle) {
        guard let call = calls[handle] else { return }
        calls[handle]?.okRetransmitTask = endpoint.eventLoop.scheduleTask(in: TimeAmount(call.okRetransmitInterval)) { [self] in
            self.assumeIsolated { $0.retransmitOK(handle) }
        }
    }

    private func retransmitOK(_ handle: SIPCallHandle) {
        guard var call = calls[handle], let ok = call.okResponse, let key = call.okTransaction else { return }
        if let deadline = call.okRetransmitDeadline, NIODeadline.now() >= deadline {
            logger.warning("no ACK for 2xx within 64·T1; ending the call", metadata: ["call": "\(handle)"])
            call.okResponse = nil
            call.state = .established
            calls[handle] = call
            sendBYE(handle, endingNow: "no ACK")
            return
        }
        respond(ok, to: key)
        let t2 = endpoint.configuration.timers.t2
        call.okRetransmitInterval = min(call.okRetransmitInterval * 2, t2)
        calls[handle] = call
        scheduleOKRetransmission(handle)
    }

    /// The ACK for our 2xx: it carries the INVITE's CSeq number (§13.2.2.4).
    func receiveACK(_ ack: SIPMessage) {
        guard let id = SIPDialogID.forReceivedRequest(ack), let handle = callsByDialog[id], var call = calls[handle],
            let ok = call.okResponse, ack.cseq?.sequence == ok.cseq?.sequence
        else { return }
        call.okRetransmitTask?.cancel()
        call.okResponse = nil
        call.okTransaction = nil
        let wasAnswer = call.state == .answered
        call.state = .established
        var answer: SIPMessageBody?
        if call.offerInOK {
            // We offered in the 2xx: the ACK carries the answer (§14.2). Without one the
            // exchange failed and the session stays as it was.
            call.offerInOK = false
            call.offerAnswer.closedOurs()
            answer = SIPMessageBody(ack)
            if let answer { call.remoteBody = answer }
        }
        calls[handle] = call
        if wasAnswer {
            startDurationLimit(handle)
            scheduleSessionTimer(handle)
            emit(.confirmed(handle))
        }
        if let answer { emit(.answerReceived(handle, answer: answer)) }
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

    // MARK: In-dialog requests (RFC 3261 §12.2.2)

    func receiveInDialog(_ request: SIPMessage, key: SIPTransactionKey, flow: SIPFlow) {
        guard let id = SIPDialogID.forReceivedRequest(request), let handle = callsByDialog[id], var call = calls[handle],
            var dialog = call.dialog
        else {
            respond(SIPResponseFactory.response(to: request, status: 481), to: key)
            return
        }
        switch dialog.receive(request) {
        case .reject(let status, let retryAfter):
            var response = SIPResponseFactory.response(to: request, status: status)
            if let retryAfter { response.headers.add(.retryAfter, String(retryAfter)) }
            respond(response, to: key)
            call.dialog = dialog
            calls[handle] = call
            return
        case .accept:
            break
        }
        call.dialog = dialog
        calls[handle] = call
        switch request.method {
        case .bye:
            respond(SIPResponseFactory.response(to: request, status: 200), to: key)
            endCall(handle, reason: "remote BYE")
        case .invite, .update:
            receiveSessionChange(request, key: key, in: handle)
        case .info:
            respond(SIPResponseFactory.response(to: request, status: 200), to: key)
            emit(.dtmfInfo(handle, body: String(buffer: request.body)))
        case .options:
            respond(optionsResponse(to: request, toTag: nil), to: key)
        case .refer:
            receiveRefer(request, key: key, in: handle)
        default:
            // Implemented methods that make no sense inside a call (REGISTER goes elsewhere):
            // 405 with what is allowed (RFC 3261 §8.2.1); unknown ones had their 501.
            var refused = SIPResponseFactory.response(to: request, status: 405)
            refused.headers.add(.allow, allowHeader)
            respond(refused, to: key)
        }
    }

    /// A re-INVITE or UPDATE inside the call (RFC 3261 §14.2, RFC 3311 §5.2): an offer to
    /// answer, an offerless re-INVITE to answer with an offer, a refresh, or glare.
    private func receiveSessionChange(_ request: SIPMessage, key: SIPTransactionKey, in handle: SIPCallHandle) {
        guard var call = calls[handle] else { return }
        let isInvite = request.method == .invite
        if refuseShortSession(request, key: key, toTag: nil) {
            if isInvite { calls[handle]?.dialog?.answeredIncomingInvite() }
            return
        }
        let body = SIPMessageBody(request)
        let verdict = call.offerAnswer.received(isInvite: isInvite, carriesOffer: body != nil)
        calls[handle] = call
        switch verdict {
        case .reject(let status, let retryAfter):
            var response = SIPResponseFactory.response(to: request, status: status)
            if let retryAfter { response.headers.add(.retryAfter, String(retryAfter)) }
            if isInvite { calls[handle]?.dialog?.answeredIncomingInvite() }
            respond(response, to: key)
        case .refresh:
            respond(sessionResponse(to: request, in: handle, body: nil), to: key)
        case .offerInResponse, .offer:
            // An offerless re-INVITE asks for our offer; its answer comes in the ACK (§14.2).
            guard configuration.ownerAnswersOffers else {
                calls[handle]?.pendingOffer = .init(request: request, key: key, offer: body)
                answerOffer(handle, body: call.localBody ?? configuredBody)
                return
            }
            let deadline = endpoint.eventLoop.scheduleTask(in: TimeAmount(configuration.offerAnswerTimeout)) { [self] in
                self.assumeIsolated { agent in
                    guard agent.calls[handle]?.pendingOffer?.key == key else { return }
                    agent.logger.warning("a mid-call offer went unanswered; refused with 500", metadata: ["call": "\(handle)"])
                    agent.refuseOffer(handle, status: 500)
                }
            }
            calls[handle]?.pendingOffer = .init(request: request, key: key, offer: body, deadline: deadline)
            if let body {
                emit(.offerReceived(handle, offer: body, method: request.method ?? .invite))
            } else {
                emit(.offerRequested(handle))
            }
        }
    }

    /// A 2xx to a re-INVITE or UPDATE: our Contact (the dialog's), what we allow, a body.
    private func sessionResponse(to request: SIPMessage, in handle: SIPCallHandle, body: SIPMessageBody?) -> SIPMessage {
        var ok = SIPResponseFactory.response(to: request, status: 200)
        if let contact = calls[handle]?.dialog?.localContact { ok.headers.add(.contact, contact.description) }
        ok.headers.add(.allow, allowHeader)
        if var call = calls[handle] {
            // A re-INVITE or UPDATE refreshes the session (RFC 4028 §9): the timer starts again.
            addSessionTimer(to: &ok, answering: request, in: &call)
            calls[handle] = call
            scheduleSessionTimer(handle)
        }
        if let body { addBody(to: &ok, body) }
        return ok
    }

    var configuredBody: SIPMessageBody? {
        configuration.sessionDescription.map { SIPMessageBody(contentType: $0.contentType, text: $0.body) }
    }

    /// Answers the peer's pending mid-call offer with `body` (2xx; for a re-INVITE retransmitted
    /// until its ACK). From now on `body` is the call's own description and the offer the peer's.
    /// For an offerless re-INVITE `body` is our offer, and the ACK brings the answer.
    public func answerOffer(_ handle: SIPCallHandle, body: SIPMessageBody?) {
        guard var call = calls[handle], let pending = call.pendingOffer else { return }
        pending.deadline?.cancel()
        call.pendingOffer = nil
        if let offer = pending.offer {
            call.offerAnswer.answeredTheirs()
            call.remoteBody = offer
        } else {
            call.offerInOK = body != nil
            if body == nil { call.offerAnswer.closedOurs() }
        }
        if let body { call.localBody = body }
        calls[handle] = call
        let ok = sessionResponse(to: pending.request, in: handle, body: body)
        if pending.request.method == .invite {
            calls[handle]?.dialog?.answeredIncomingInvite()
            sendOK(ok, to: pending.key, in: handle)
        } else {
            respond(ok, to: pending.key)
        }
    }

    /// Refuses the peer's pending mid-call offer (488 when it cannot be accepted, RFC 3261
    /// §14.2): the session goes on as it was.
    public func refuseOffer(_ handle: SIPCallHandle, status: Int = 488, warning: String? = nil) {
        guard var call = calls[handle], let pending = call.pendingOffer else { return }
        pending.deadline?.cancel()
        call.pendingOffer = nil
        call.offerAnswer.refusedTheirs()
        call.offerAnswer.closedOurs()  // an offerless re-INVITE refused: we offer nothing
        calls[handle] = call
        var response = SIPResponseFactory.response(to: pending.request, status: (300...699).contains(status) ? status : 488)
        if let warning {
            // RFC 3261 §20.43: 399 with our host, the text quoted (quotes and controls removed).
            let text = String(warning.unicodeScalars.filter { $0 != "\"" && $0 != "\\" && $0.value >= 0x20 && $0.value != 0x7F }.prefix(200))
            response.headers.add(.warning, "399 \(configuration.domain) \"\(text)\"")
        }
        if pending.request.method == .invite { calls[handle]?.dialog?.answeredIncomingInvite() }
        respond(response, to: pending.key)
    }

    // MARK: Transfer (REFER, RFC 3515)

    private func receiveRefer(_ request: SIPMessage, key: SIPTransactionKey, in handle: SIPCallHandle) {
        guard let call = calls[handle], call.state == .established, call.pendingRefer == nil, let referTo = request.headers[.referTo],
            request.headers.count(of: .referTo) == 1
        else {
            // One Refer-To, on an established call, one at a time (RFC 3515 §2.4.1).
            let status = calls[handle]?.pendingRefer != nil ? 491 : (request.headers[.referTo] == nil ? 400 : 403)
            respond(SIPResponseFactory.response(to: request, status: status), to: key)
            return
        }
        guard configuration.ownerAnswersOffers else {
            respond(SIPResponseFactory.response(to: request, status: 603), to: key)
            return
        }
        calls[handle]?.pendingRefer = (request, key)
        emit(.referReceived(handle, referTo: referTo))
    }

    /// Accepts the pending REFER: 202, and the first NOTIFY ("100 Trying") at once (§2.4.4).
    public func acceptRefer(_ handle: SIPCallHandle) {
        guard let pending = calls[handle]?.pendingRefer else { return }
        calls[handle]?.pendingRefer = nil
        calls[handle]?.referID = pending.request.cseq?.sequence
        respond(SIPResponseFactory.response(to: pending.request, status: 202), to: pending.key)
        notifyRefer(handle, status: 100, reason: "Trying", final: false)
    }

    /// Refuses the pending REFER (403 for a target we will not call, 503 when we cannot now).
    public func refuseRefer(_ handle: SIPCallHandle, status: Int, warning: String? = nil) {
        guard let pending = calls[handle]?.pendingRefer else { return }
        calls[handle]?.pendingRefer = nil
        var response = SIPResponseFactory.response(to: pending.request, status: (400...699).contains(status) ? status : 403)
        if let warning, let text = SIPNameAddress.safeDisplayName(warning, limit: 200) {
            response.headers.add(.warning, "399 \(configuration.domain) \"\(text)\"")
        }
        respond(response, to: pending.key)
    }

    /// Tells the transferor how the call it asked for goes: a NOTIFY with the status line as
    /// `message/sipfrag` (RFC 3515 §2.4.5); `final` ends the implicit subscription.
    public func notifyRefer(_ handle: SIPCallHandle, status: Int, reason: String, final: Bool) {
        guard var call = calls[handle], call.state == .established, var dialog = call.dialog, let id = call.referID else { return }
        let via = endpoint.assumeIsolated { $0.makeVia(for: call.flow.transport) }
        var notify = dialog.makeRequest(.notify, via: via)
        notify.headers.add(.event, "refer;id=\(id)")
        notify.headers.add(.subscriptionState, final ? "terminated;reason=noresource" : "active;expires=60")
        notify.headers.add(.contact, dialog.localContact.description)
        let clamped = (100...699).contains(status) ? status : 500
        let phrase = SIPNameAddress.safeDisplayName(reason, limit: 60) ?? "Unknown"
        addBody(to: &notify, SIPMessageBody(contentType: "message/sipfrag;version=2.0", text: "SIP/2.0 \(clamped) \(phrase)\r\n"))
        if final { call.referID = nil }
        call.dialog = dialog
        calls[handle] = call
        _ = endpoint.assumeIsolated { $0.sendRequest(notify, on: call.flow) { _, _ in } }
    }

    // MARK: Session timers (RFC 4028)

    /// The 2xx to an INVITE or refresh we answer: Session-Expires (and Require: timer) as
    /// `SIPSessionTimer.answer` settles it, and the call's timer with it. (A 422 for an interval
    /// below our minimum went out before: `receiveInvite`, `receiveSessionChange`.)
    func addSessionTimer(to response: inout SIPMessage, answering request: SIPMessage, in call: inout SIPCall) {
        let preferred = call.sessionTimer?.interval ?? configuration.sessionExpires
        guard case .timer(let timer, let headers) = SIPSessionTimer.answer(request, minimum: 1, preferred: preferred) else { return }
        for header in headers { response.headers.add(SIPHeaderName(header.name), header.value ?? "") }
        call.sessionTimer = timer
    }

    /// A request whose Session-Expires is below our minimum: 422 with our Min-SE (§9). True
    /// when it was refused.
    func refuseShortSession(_ request: SIPMessage, key: SIPTransactionKey, toTag: String?) -> Bool {
        guard case .tooSmall(let minimum) = SIPSessionTimer.answer(request, minimum: configuration.minimumSessionExpires, preferred: nil) else {
            return false
        }
        var response = SIPResponseFactory.response(to: request, status: 422, toTag: toTag)
        response.headers.add(SIPSessionTimer.minSE, String(minimum))
        respond(response, to: key)
        return true
    }

    /// (Re)starts the call's session timer from now: at its deadline we refresh (a re-INVITE
    /// with our description) or, when the peer should have, end the call with BYE (§10).
    func scheduleSessionTimer(_ handle: SIPCallHandle) {
        calls[handle]?.sessionTimerTask?.cancel()
        guard let timer = calls[handle]?.sessionTimer else { return }
        let deadline = timer.nextDeadline
        calls[handle]?.sessionTimerTask = endpoint.eventLoop.scheduleTask(in: .milliseconds(Int64(deadline.seconds * 1000))) { [self] in
            self.assumeIsolated { agent in
                guard agent.calls[handle]?.state == .established else { return }
                if deadline.refresh {
                    agent.refreshSession(handle, attempts: 10)
                } else {
                    agent.logger.notice("session timer expired without a refresh; BYE", metadata: ["call": "\(handle)"])
                    agent.sendBYE(handle, reason: "SIP;cause=408;text=\"session timer expired\"", endingNow: "session timer expired")
                }
            }
        }
    }

    /// The refresh: a re-INVITE with our description; while another offer is out, a little later.
    private func refreshSession(_ handle: SIPCallHandle, attempts: Int) {
        guard calls[handle] != nil, !reinvite(handle), attempts > 1 else { return }
        _ = endpoint.eventLoop.scheduleTask(in: .milliseconds(500)) { [self] in
            self.assumeIsolated { $0.refreshSession(handle, attempts: attempts - 1) }
        }
    }

    // MARK: Shared

    func startDurationLimit(_ handle: SIPCallHandle) {
        guard let limit = configuration.maxCallDuration else { return }
        calls[handle]?.durationTask = endpoint.eventLoop.scheduleTask(in: TimeAmount(limit)) { [self] in
            self.assumeIsolated { agent in
                agent.logger.info("call reached the duration limit", metadata: ["call": "\(handle)"])
                agent.sendBYE(handle)
            }
        }
    }

    func endCall(_ handle: SIPCallHandle, reason: String) {
        guard let call = calls.removeValue(forKey: handle) else { return }
        call.cancelTimers()
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

    /// Calls in progress (tests and status).
    public var activeCallCount: Int { calls.count }
}

