import NIOCore
import SIP
import SIPTransport

/// What happens in an established call: re-INVITE and UPDATE with offer/answer (RFC 3261 §14,
/// RFC 3264 §8, RFC 3311), other in-dialog requests, transfer (REFER, RFC 3515) and session
/// timers (RFC 4028). Call set-up and teardown are in `SIPUserAgent+Calls.swift`.
extension SIPUserAgent {
    // MARK: Re-INVITE (RFC 3261 §14)

    /// Sends a re-INVITE offering `body` (else the call's own description): a new address, key,
    /// codec or direction (hold), or a session refresh. False when it cannot go now: the call is
    /// not established, or an offer or INVITE is already in flight (§14.1) — the caller tries
    /// later. On 491 (glare) it goes again after the randomized delay, as often as it takes; the
    /// answer arrives as `answerReceived`.
    @discardableResult
    public func reinvite(_ handle: SIPCallHandle, body: SIPMessageBody? = nil) -> Bool {
        guard var call = calls[handle], call.beginReinvite(offering: body), var dialog = call.dialog else { return false }
        let via = endpoint.assumeIsolated { $0.makeVia(for: call.flow.transport) }
        var invite = dialog.makeRequest(.invite, via: via)
        invite.headers.add(.contact, dialog.localContact.description)
        invite.headers.add(.allow, allowHeader)
        invite.headers.add(.supported, "timer")
        if let timer = call.sessionTimer {
            // A refresh keeps the interval, and we stay the refresher (RFC 4028 §7.4).
            invite.headers.add(.sessionExpires, "\(timer.interval);refresher=uac")
        }
        addBody(to: &invite, call.reinviteBody)
        call.dialog = dialog
        calls[handle] = call
        rearmTimers(handle)
        let sequence = invite.cseq?.sequence ?? dialog.localSequence
        _ = endpoint.assumeIsolated { endpoint in
            endpoint.sendRequest(invite, on: call.flow) { [self] _, event in
                self.assumeIsolated { $0.reinviteEvent(handle, event, sequence: sequence) }
            }
        }
        return true
    }

    func reinviteEvent(_ handle: SIPCallHandle, _ event: SIPClientEvent, sequence: UInt32) {
        guard var call = calls[handle] else { return }
        switch event {
        case .response(let response, _):
            guard let code = response.statusCode, code >= 200 else { return }
            var generator = SystemRandomNumberGenerator()
            let outcome = call.reinviteFinished(response, using: &generator)
            calls[handle] = call
            switch outcome {
            case .accepted(let answer, let offered):
                if let dialog = call.dialog {
                    let via = endpoint.assumeIsolated { $0.makeVia(for: call.flow.transport) }
                    endpoint.assumeIsolated { $0.send(dialog.makeACK(inviteSequence: sequence, via: via), on: call.flow) }
                }
                scheduleSessionTimer(handle)
                emit(.reinvited(handle))
                if let answer {
                    emit(.answerReceived(handle, answer: answer))
                } else if offered {
                    emit(.reinviteRefused(handle, status: code))
                }
            case .glare(let delay):
                emit(.glare(handle, retryAfter: delay))
                updateTimers(handle) { $0.retryReinvite(after: Self.seconds(delay), attempts: 20, every: 0.25, now: $1) }
            case .refused(let status):
                emit(.reinviteRefused(handle, status: status))
            }
        case .timedOut, .transportFailed:
            // §14.1: a re-INVITE that fails this way ends the call.
            sendBYE(handle, endingNow: "re-INVITE timed out")
        }
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
    func receiveSessionChange(_ request: SIPMessage, key: SIPTransactionKey, in handle: SIPCallHandle) {
        guard var call = calls[handle] else { return }
        if refuseShortSession(request, key: key, toTag: nil) {
            if request.method == .invite { calls[handle]?.dialog?.answeredIncomingInvite() }
            return
        }
        let change = call.sessionChange(request, key: key, answerWithin: Self.seconds(configuration.offerAnswerTimeout), now: Self.uptime())
        calls[handle] = call
        switch change {
        case .reject(let status, let retryAfter):
            var response = SIPResponseFactory.response(to: request, status: status)
            if let retryAfter { response.headers.add(.retryAfter, String(retryAfter)) }
            respond(response, to: key)
        case .refresh:
            respond(sessionResponse(to: request, in: handle, body: nil), to: key)
        case .pending(let offer):
            // An offerless re-INVITE asks for our offer; its answer comes in the ACK (§14.2).
            guard configuration.role.ownerDecides else {
                answerOffer(handle, body: call.localBody ?? configuredBody)
                return
            }
            rearmTimers(handle)
            if let offer {
                emit(.offerReceived(handle, offer: offer, method: request.method ?? .invite))
            } else {
                emit(.offerRequested(handle))
            }
        }
    }

    /// A 2xx to a re-INVITE or UPDATE: our Contact (the dialog's), what we allow, a body.
    func sessionResponse(to request: SIPMessage, in handle: SIPCallHandle, body: SIPMessageBody?) -> SIPMessage {
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
        guard var call = calls[handle], let pending = call.answeringOffer(with: body) else { return }
        calls[handle] = call
        let ok = sessionResponse(to: pending.request, in: handle, body: body)
        if pending.request.method == .invite {
            sendOK(ok, to: pending.key, in: handle)
        } else {
            respond(ok, to: pending.key)
            rearmTimers(handle)
        }
    }

    /// Refuses the peer's pending mid-call offer (488 when it cannot be accepted, RFC 3261
    /// §14.2): the session goes on as it was.
    public func refuseOffer(_ handle: SIPCallHandle, status: Int = 488, warning: String? = nil) {
        guard var call = calls[handle], let pending = call.refusingOffer() else { return }
        calls[handle] = call
        rearmTimers(handle)
        var response = SIPResponseFactory.response(to: pending.request, status: (300...699).contains(status) ? status : 488)
        if let warning, let text = SIPNameAddress.safeDisplayName(warning, limit: 200) {
            // RFC 3261 §20.43: 399 with our host, the text quoted (quotes and controls removed).
            response.headers.add(.warning, "399 \(configuration.domain) \"\(text)\"")
        }
        respond(response, to: pending.key)
    }

    // MARK: Transfer (REFER, RFC 3515)

    func receiveRefer(_ request: SIPMessage, key: SIPTransactionKey, in handle: SIPCallHandle) {
        guard let call = calls[handle], call.state == .established, call.pendingRefer == nil, let referTo = request.headers[.referTo],
            request.headers.count(of: .referTo) == 1
        else {
            // One Refer-To, on an established call, one at a time (RFC 3515 §2.4.1).
            let status = calls[handle]?.pendingRefer != nil ? 491 : (request.headers[.referTo] == nil ? 400 : 403)
            respond(SIPResponseFactory.response(to: request, status: status), to: key)
            return
        }
        guard configuration.role.ownerDecides else {
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
    func addSessionTimer(to response: inout SIPMessage, answering request: SIPMessage, in call: inout SIPInviteSession) {
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
        guard let timer = calls[handle]?.sessionTimer else { return }
        updateTimers(handle) { $0.sessionRefreshed(timer, now: $1) }
    }
}
