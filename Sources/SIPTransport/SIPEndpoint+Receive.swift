import CrashContext
import NIOCore
import SIP

extension SIPEndpoint {
    /// Everything that arrives goes through here, on the event loop: parse, stamp the Via,
    /// match a transaction, hand on.
    func receive(_ bytes: ByteBuffer, on flow: SIPFlow) {
        // A UDP keepalive (CRLF or CRLFCRLF alone) carries nothing.
        if flow.transport == .udp, bytes.readableBytesView.allSatisfy({ $0 == 0x0D || $0 == 0x0A }) { return }
        statistics.received += 1
        // What a crash would name (docs/RELIABILITY.md): the sender, then the message.
        CrashContext.set("SIP \(flow.transport) message from \(flow.remote.displayText)")
        let message: SIPMessage
        do {
            message = try parser.parse(bytes, framing: flow.transport == .udp ? .datagram : .stream)
            CrashContext.set(
                "SIP \(message.method.map { "\($0)" } ?? "?") \(message.isRequest ? "request" : "response \(message.statusCode ?? 0)") from \(flow.remote.displayText), Call-ID \((message.callID ?? "-").prefix(120))")
        } catch {
            statistics.malformed += 1
            let (log, heldBack) = malformedLog.take(now: Self.monotonicSeconds())
            if heldBack > 0 { logger.notice("\(heldBack) more malformed messages in the last minute (not logged one by one)") }
            if log { logger.notice("malformed message", metadata: ["flow": "\(flow)", "error": "\(error)"]) }
            answerMalformed(bytes, error: error, on: flow)
            return
        }
        if flow.transport.isReliable { admission.proven(flow.connectionID) }
        if message.isRequest {
            receiveRequest(message, on: flow)
        } else {
            receiveResponse(message, on: flow)
        }
    }

    private func receiveRequest(_ received: SIPMessage, on flow: SIPFlow) {
        if sourceFilter != nil {
            switch sourceFilter!.check(flow.remote, now: Self.monotonicSeconds()) {
            case .allow:
                break
            case .refuse:
                statistics.sourcesRefused += 1
                answerStatelessly(received, status: 403, reason: "not an allowed source", on: flow)
                reportSources()
                return
            case .drop:
                statistics.sourcesRefused += 1
                reportSources()
                return
            }
        }
        var request = received
        stampVia(&request, flow: flow)
        guard let key = SIPTransactionKey.server(for: request), let method = request.method else {
            // No Via, Call-ID or CSeq: there is nothing to match or route a response by.
            if mayAnswerStatelessly(on: flow) { answerStatelessly(request, status: 400, reason: "Missing Via, Call-ID or CSeq", on: flow) }
            return
        }
        if serverTransactions[key] != nil {
            if method != .ack { statistics.retransmissionsAbsorbed += 1 }
            let actions = serverTransactions[key]!.machine.receive(request)
            applyServer(actions, key: key)
            return
        }
        if method != .ack, method != .cancel {
            switch transactionAdmission.check(flow.remote.hostText, now: Self.monotonicSeconds()) {
            case .admit:
                break
            case .refuse:
                statistics.transactionsRefused += 1
                answerStatelessly(request, status: 503, reason: "too many requests from this source", on: flow, retryAfter: 5)
                reportTransactionRefusals()
                return
            case .drop:
                statistics.transactionsRefused += 1
                reportTransactionRefusals()
                return
            }
        }
        switch method {
        case .ack:
            // No transaction: the ACK for a 2xx, which belongs to the dialog (§17.2.3 note).
            requestHandler?(self, SIPIncomingRequest(message: request, flow: flow, kind: .ackFor2xx))
        case .cancel:
            receiveCancel(request, key: key, flow: flow)
        default:
            startServerTransaction(request, key: key, flow: flow)
        }
    }

    /// RFC 3261 §9.2: 200 to the CANCEL if it matches an INVITE transaction (481 if not); the TU
    /// then ends the INVITE with 487 if it has not answered finally.
    private func receiveCancel(_ cancel: SIPMessage, key: SIPTransactionKey, flow: SIPFlow) {
        guard let inviteKey = SIPTransactionKey.cancelled(by: cancel), serverTransactions[inviteKey] != nil else {
            // Statelessly: a CANCEL that matches nothing holds no memory (a retransmission gets
            // the same answer again).
            send(SIPResponseFactory.response(to: cancel, status: 481), on: responseFlow(for: cancel, arrivedOn: flow))
            return
        }
        startServerTransaction(cancel, key: key, flow: flow, deliver: false)
        respond(SIPResponseFactory.response(to: cancel, status: 200, toTag: SIPIdentifiers.tag()), to: key)
        if !hasFinalResponse(inviteKey) {
            requestHandler?(self, SIPIncomingRequest(message: cancel, flow: flow, kind: .cancel(invite: inviteKey)))
        }
    }

    private func receiveResponse(_ response: SIPMessage, on flow: SIPFlow) {
        guard let key = SIPTransactionKey.client(for: response), clientTransactions[key] != nil else {
            // §18.1.2: a response that matches no transaction of ours is dropped (RFC 4475 §3.3.10).
            logger.debug("response matches no transaction; dropped", metadata: ["flow": "\(flow)", "status": "\(response.statusCode ?? 0)"])
            return
        }
        let actions = clientTransactions[key]!.machine.receive(response)
        applyClient(actions, key: key)
    }

    /// RFC 3261 §18.2.1 and RFC 3581 §4: note where the request really came from, so that the
    /// response finds its way back through NAT.
    private func stampVia(_ request: inout SIPMessage, flow: SIPFlow) {
        guard let index = request.headers.indices(of: .via).first, var via = request.topVia else { return }
        let sourceIP = flow.remote.hostText
        var changed = false
        if via.host.lowercased() != sourceIP.lowercased() {
            via.parameters.set("received", sourceIP)
            changed = true
        }
        if case .some(.none) = via.rport, let port = flow.remote.port {
            via.parameters.set("rport", String(port))
            if via.received == nil { via.parameters.set("received", sourceIP) }
            changed = true
        }
        guard changed else { return }
        // The field may hold several via-parms; only the first changes.
        var scanner = request.headers.scanner(at: index)
        var vias = (try? SIPVia.parseList(&scanner)) ?? [via]
        vias[0] = via
        request.headers.replaceValue(at: index, with: vias.map(\.description).joined(separator: ", "))
    }

    /// A malformed request gets a 400 with the reason (RFC 3261 §8.2, RFC 4475 §3.1.2); a
    /// malformed response is dropped. The headers needed to route the answer are copied as they
    /// came, since the message did not parse.
    /// 400s to malformed datagrams: at most 50 a second, all sources together. A UDP source can
    /// be forged, and each answer copies the request's Via headers: past the rate a flood of
    /// malformed datagrams is dropped instead of reflected at whoever it names. Over a connection
    /// (whose peer is who it says) every one is answered.
    private func mayAnswerStatelessly(on flow: SIPFlow) -> Bool {
        guard flow.transport == .udp else { return true }
        guard malformedAnswers.take(now: Self.monotonicSeconds()) else {
            statistics.malformedUnanswered += 1
            return false
        }
        return true
    }

    private func answerMalformed(_ bytes: ByteBuffer, error: SIPParseError, on flow: SIPFlow) {
        // Split on LF bytes: in Swift strings CRLF is one Character.
        let lines = bytes.readableBytesView.prefix(configuration.limits.maxMessageSize)
            .split(separator: 0x0A, omittingEmptySubsequences: false)
            .map { line in String(decoding: line.last == 0x0D ? line.dropLast() : line[...], as: UTF8.self) }
        guard let first = lines.first, !first.uppercased().hasPrefix("SIP/"), !first.hasPrefix("ACK ") else { return }
        guard mayAnswerStatelessly(on: flow) else { return }
        var out = "SIP/2.0 400 Bad Request\r\n"
        var copied = Set<String>()
        for line in lines.dropFirst() {
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = SIPHeaderName(String(line[..<colon]).trimmingCharacters(in: " \t"))
            guard [.via, .from, .to, .callID, .cseq].contains(name) else { continue }
            if name != .via, copied.contains(name.description) { continue }
            copied.insert(name.description)
            let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: " \t")
            // Copy only what is itself well-formed, so that the 400 parses at the peer.
            guard Self.isWellFormed(name, value) else { continue }
            out += "\(name): \(value)\r\n"
        }
        let reason = "\(error.line):\(error.column): \(error.reason)".replacingQuotes()
        out += "Warning: 399 \(configuration.productName) \"\(reason)\"\r\nContent-Length: 0\r\n\r\n"
        statistics.badRequestsAnswered += 1
        write(ByteBuffer(string: out), on: flow)
    }

    static func isWellFormed(_ name: SIPHeaderName, _ value: String) -> Bool {
        var scanner = SIPScanner(value)
        switch name {
        case .via: return (try? SIPVia.parseList(&scanner)) != nil
        case .from, .to: return (try? SIPNameAddress.parseSingle(&scanner, header: "")) != nil
        case .cseq: return (try? SIPCSeq.parse(&scanner)) != nil
        default: return !value.isEmpty && !value.contains(" ")
        }
    }

    private func answerStatelessly(_ request: SIPMessage, status: Int, reason: String, on flow: SIPFlow, retryAfter: Int? = nil) {
        guard request.method != .ack else { return }
        var response = SIPResponseFactory.response(to: request, status: status)
        if let retryAfter { response.headers.add(.retryAfter, String(retryAfter)) }
        response.headers.add(.warning, "399 \(configuration.productName) \"\(reason.replacingQuotes())\"")
        statistics.badRequestsAnswered += 1
        send(response, on: flow)
    }

}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }

    func replacingQuotes() -> String {
        String(map { $0 == "\"" || $0 == "\\" ? "'" : $0 })
    }
}
