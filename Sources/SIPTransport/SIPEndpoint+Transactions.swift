import NIOCore
public import SIP

/// What a client transaction reports to its transaction user.
public enum SIPClientEvent: Sendable {
    case response(SIPMessage, SIPFlow)
    /// Timer B or F: act as for a 408 (RFC 3261 §8.1.3.1).
    case timedOut
    /// The flow failed: act as for a 503 (RFC 3261 §8.1.3.1).
    case transportFailed
}

struct ClientTransactionEntry {
    var machine: any SIPTransactionMachine
    var flow: SIPFlow
    var timers: [SIPTransactionTimer: Scheduled<Void>] = [:]
    var handler: SIPEndpoint.ClientHandler
    /// The TU asked to cancel before any provisional response: send CANCEL on the first one
    /// (§9.1), with these extra header fields (a Reason, RFC 3326).
    var cancelRequested: [(SIPHeaderName, String)]?

    /// The request has no final response yet (nor did its transaction end without one).
    var awaitsFinalResponse: Bool {
        switch machine {
        case let invite as ClientInviteTransaction: invite.state == .calling || invite.state == .proceeding
        case let other as ClientNonInviteTransaction: other.state == .trying || other.state == .proceeding
        default: false
        }
    }
}

struct ServerTransactionEntry {
    var machine: any SIPServerTransactionMachine
    var flow: SIPFlow
    var timers: [SIPTransactionTimer: Scheduled<Void>] = [:]
    /// Set when the TU drops the request without an answer (`abandon`): the end of the time
    /// in which retransmissions are still absorbed.
    var abandoned: Scheduled<Void>?
    /// The source address the transaction counts against (`SIPTransactionAdmission`).
    var source: String { flow.remote.hostText }
    /// Whether it still counts against its source's cap: until it settles (`isActive` false).
    var counted = true

    /// Waiting for the TU's final response, or resending a non-2xx final response until the ACK:
    /// what a flood can make cost. Once settled (a non-INVITE answered, an INVITE's ACK received or
    /// its 2xx sent), a transaction only absorbs retransmissions until its timer ends it.
    var isActive: Bool {
        switch machine {
        case let invite as ServerInviteTransaction: invite.state == .proceeding || invite.state == .completed
        case let other as ServerNonInviteTransaction: other.state == .trying || other.state == .proceeding
        default: true
        }
    }
}

extension SIPEndpoint {
    public typealias ClientHandler = @Sendable (isolated SIPEndpoint, SIPClientEvent) -> Void

    // MARK: Client transactions

    /// Sends `request` in a new client transaction on `flow`. A request without a Via gets ours
    /// (fresh branch, rport). Returns the transaction's key (for `cancel`).
    @discardableResult
    public func sendRequest(_ request: SIPMessage, on flow: SIPFlow, handler: @escaping ClientHandler) -> SIPTransactionKey? {
        var request = request
        if !request.headers.contains(.via) {
            request.headers.prepend(.via, makeVia(for: flow.transport).description)
        }
        if request.method == .ack {
            send(request, on: flow)  // ACK for a 2xx has no transaction (§17.1.1.1)
            return nil
        }
        guard let key = SIPTransactionKey.client(forRequest: request) else { return nil }
        let reliable = flow.transport.isReliable
        let machine: any SIPTransactionMachine =
            request.method == .invite
            ? ClientInviteTransaction(request: request, reliable: reliable, timers: configuration.timers)
            : ClientNonInviteTransaction(request: request, reliable: reliable, timers: configuration.timers)
        clientTransactions[key] = ClientTransactionEntry(machine: machine, flow: flow, handler: handler)
        let actions = clientTransactions[key]!.machine.start()
        applyClient(actions, key: key)
        return key
    }

    /// Resolves `destination`, opening a connection if needed, and sends `request` there.
    @discardableResult
    public func sendRequest(_ request: SIPMessage, to destination: SIPDestination, handler: @escaping ClientHandler) async throws -> SIPTransactionKey? {
        let flow = try await flow(to: destination)
        return sendRequest(request, on: flow, handler: handler)
    }

    /// Cancels a pending INVITE (RFC 3261 §9.1): a CANCEL in its own transaction, once the INVITE
    /// has had a provisional response. The INVITE's final response (487) still arrives.
    /// `headers` go into the CANCEL: a proxy cancelling the losers of a fork says why
    /// (`Reason: SIP;cause=200`, RFC 3326).
    public func cancel(_ inviteKey: SIPTransactionKey, headers: [(SIPHeaderName, String)] = []) {
        guard var entry = clientTransactions[inviteKey], let invite = entry.machine as? ClientInviteTransaction else { return }
        switch invite.state {
        case .calling:
            entry.cancelRequested = headers
            clientTransactions[inviteKey] = entry
        case .proceeding:
            sendCancel(for: invite.request, on: entry.flow, headers: headers)
        default:
            return
        }
    }

    private func sendCancel(for invite: SIPMessage, on flow: SIPFlow, headers: [(SIPHeaderName, String)]) {
        var cancel = SIPACKFactory.cancel(for: invite)
        for (name, value) in headers { cancel.headers.add(name, value) }
        sendRequest(cancel, on: flow) { endpoint, event in
            if case .response(let response, _) = event, let code = response.statusCode, code >= 300 {
                endpoint.logger.info("CANCEL refused", metadata: ["status": "\(code)"])
            }
        }
    }

    func applyClient(_ actions: [SIPTransactionAction], key: SIPTransactionKey) {
        for action in actions {
            guard let entry = clientTransactions[key] else { return }
            switch action {
            case .send(let message):
                send(message, on: entry.flow)
            case .deliver(let response):
                if let headers = entry.cancelRequested, let code = response.statusCode, code < 200 {
                    clientTransactions[key]?.cancelRequested = nil
                    sendCancel(for: entry.machine.request, on: entry.flow, headers: headers)
                }
                entry.handler(self, .response(response, entry.flow))
            case .startTimer(let timer, let duration):
                clientTransactions[key]?.timers[timer]?.cancel()
                clientTransactions[key]?.timers[timer] = eventLoop.scheduleTask(in: TimeAmount(duration)) { [self] in
                    self.assumeIsolated { $0.clientTimerFired(key, timer) }
                }
            case .cancelTimer(let timer):
                clientTransactions[key]?.timers.removeValue(forKey: timer)?.cancel()
            case .timedOut:
                if entry.flow.transport.isReliable { flowActivityHandler?(self, entry.flow, .transactionTimedOut) }
                entry.handler(self, .timedOut)
            case .transportFailed:
                entry.handler(self, .transportFailed)
            case .terminate:
                entry.timers.values.forEach { $0.cancel() }
                clientTransactions[key] = nil
            }
        }
    }

    func clientTimerFired(_ key: SIPTransactionKey, _ timer: SIPTransactionTimer) {
        guard clientTransactions[key] != nil else { return }
        clientTransactions[key]?.timers[timer] = nil
        let actions = clientTransactions[key]!.machine.timerFired(timer)
        applyClient(actions, key: key)
    }

    // MARK: Server transactions

    /// Answers the request of server transaction `key`. Responses go back over the flow the
    /// request came in on (RFC 3261 §18.2.2).
    /// A proxy relaying a downstream response passes `relayed: true`: no `Server` field is added
    /// to what another element answered.
    public func respond(_ response: SIPMessage, to key: SIPTransactionKey, relayed: Bool = false) {
        guard serverTransactions[key] != nil else {
            logger.debug("response for a finished transaction dropped", metadata: ["key": "\(key)"])
            return
        }
        var response = response
        if !relayed, !response.headers.contains(.server) { response.headers.add(.server, configuration.productName) }
        let actions = serverTransactions[key]!.machine.respond(response)
        applyServer(actions, key: key)
    }

    /// Has server transaction `key` sent a final response (or ended)?
    public func hasFinalResponse(_ key: SIPTransactionKey) -> Bool {
        serverTransactions[key]?.machine.hasFinalResponse ?? true
    }

    /// The request of a live server transaction.
    public func request(of key: SIPTransactionKey) -> SIPMessage? {
        serverTransactions[key]?.machine.request
    }

    /// `deliver: false` keeps the request from the TU: a CANCEL, which the endpoint answers itself.
    func startServerTransaction(_ request: SIPMessage, key: SIPTransactionKey, flow: SIPFlow, deliver: Bool = true) {
        let reliable = flow.transport.isReliable
        let machine: any SIPServerTransactionMachine =
            request.method == .invite
            ? ServerInviteTransaction(request: request, reliable: reliable, timers: configuration.timers)
            : ServerNonInviteTransaction(request: request, reliable: reliable, timers: configuration.timers)
        serverTransactions[key] = ServerTransactionEntry(machine: machine, flow: flow)
        transactionAdmission.opened(flow.remote.hostText)
        guard deliver else { return }
        let actions = serverTransactions[key]!.machine.start()
        applyServer(actions, key: key)
    }

    func applyServer(_ actions: [SIPTransactionAction], key: SIPTransactionKey) {
        for action in actions {
            guard let entry = serverTransactions[key] else { return }
            switch action {
            case .send(let message):
                send(message, on: responseFlow(for: message, arrivedOn: entry.flow))
            case .deliver(let message):
                let kind: SIPIncomingRequest.Kind = message.method == .ack ? .ackFor2xx : .transaction(key)
                requestHandler?(self, SIPIncomingRequest(message: message, flow: entry.flow, kind: kind))
            case .startTimer(let timer, let duration):
                serverTransactions[key]?.timers[timer]?.cancel()
                serverTransactions[key]?.timers[timer] = eventLoop.scheduleTask(in: TimeAmount(duration)) { [self] in
                    self.assumeIsolated { $0.serverTimerFired(key, timer) }
                }
            case .cancelTimer(let timer):
                serverTransactions[key]?.timers.removeValue(forKey: timer)?.cancel()
            case .timedOut, .transportFailed:
                logger.info("server transaction failed", metadata: ["key": "\(key)", "reason": "\(action)"])
            case .terminate:
                removeServerTransaction(key)
            }
        }
        settle(key)
    }

    /// A transaction that has settled stops counting against its source (it is passive now).
    private func settle(_ key: SIPTransactionKey) {
        guard let entry = serverTransactions[key], entry.counted, entry.abandoned == nil, !entry.isActive else { return }
        serverTransactions[key]?.counted = false
        transactionAdmission.closed(entry.source)
    }

    func removeServerTransaction(_ key: SIPTransactionKey) {
        guard let entry = serverTransactions.removeValue(forKey: key) else { return }
        entry.timers.values.forEach { $0.cancel() }
        entry.abandoned?.cancel()
        if entry.counted { transactionAdmission.closed(entry.source) }
    }

    /// The TU drops a request without answering it (flood control: an answer would only feed
    /// the flood). Its transaction stays for 64·T1 to absorb retransmissions silently, then goes
    /// — it would otherwise wait for a response for ever.
    public func abandon(_ key: SIPTransactionKey) {
        guard serverTransactions[key] != nil, serverTransactions[key]?.abandoned == nil, !hasFinalResponse(key) else { return }
        serverTransactions[key]?.timers.values.forEach { $0.cancel() }
        serverTransactions[key]?.timers = [:]
        serverTransactions[key]?.abandoned = eventLoop.scheduleTask(in: TimeAmount(configuration.timers.t1 * 64)) { [self] in
            self.assumeIsolated { $0.removeServerTransaction(key) }
        }
    }

    func serverTimerFired(_ key: SIPTransactionKey, _ timer: SIPTransactionTimer) {
        guard serverTransactions[key] != nil else { return }
        serverTransactions[key]?.timers[timer] = nil
        let actions = serverTransactions[key]!.machine.timerFired(timer)
        applyServer(actions, key: key)
    }

    /// Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4): streams answer on the request's
    /// connection; on UDP to the source address when the client asked for rport, else to the
    /// source IP and the Via port. Never to a Via `maddr`: it would let anyone direct our
    /// responses at a third party or a broadcast address (docs/SIP.md).
    func responseFlow(for response: SIPMessage, arrivedOn flow: SIPFlow) -> SIPFlow {
        guard flow.transport == .udp, let via = response.topVia else { return flow }
        if case .some(.some) = via.rport { return flow }
        if let ip = flow.remote.ipAddress, let address = try? SocketAddress(ipAddress: ip, port: via.port ?? 5060) {
            return SIPFlow(transport: .udp, local: flow.local, remote: address, connectionID: 0)
        }
        return flow
    }

    /// The flow failed: every client transaction on it learns of it (RFC 3261 §17.1.4).
    func transportFailed(on flow: SIPFlow) {
        // A transaction user may send on the same flow while learning of it, which fails it
        // again and ends other transactions of this loop: look each one up anew.
        for (key, entry) in clientTransactions where entry.flow == flow {
            guard let actions = clientTransactions[key]?.machine.transportError() else { continue }
            applyClient(actions, key: key)
        }
    }
}

