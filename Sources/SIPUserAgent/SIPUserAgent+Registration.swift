import NIOCore
import SIP
public import SIPTransport

extension SIPUserAgent {
    // MARK: Registrar (RFC 3261 §10.3)

    func receiveRegister(_ request: SIPMessage, key: SIPTransactionKey, flow: SIPFlow) {
        let tag = SIPIdentifiers.tag()
        if let users = configuration.registrarUsers {
            let now = UInt64(NIODeadline.now().uptimeNanoseconds / 1_000_000_000)
            switch digestServer.verify(request, password: { users[$0] }, now: now) {
            case .challenge(let reason, let stale):
                logger.info("REGISTER challenged", metadata: ["reason": "\(reason)", "flow": "\(flow)"])
                respond(digestServer.challengeResponse(to: request, stale: stale, toTag: tag, now: now), to: key)
                return
            case .authenticated(let username):
                // §10.3 step 6: the authenticated user must own the address of record.
                if let aorUser = request.to?.sipURI?.user, SIPURI.unescaped(aorUser) != username {
                    respond(SIPResponseFactory.response(to: request, status: 403, toTag: tag), to: key)
                    return
                }
            }
        }
        guard let to = request.to, let callID = request.callID, let cseq = request.cseq else {
            respond(SIPResponseFactory.response(to: request, status: 400, toTag: tag), to: key)
            return
        }
        let aor = addressOfRecord(to.uri)
        let defaultExpires = request.expires ?? 3600
        var current = bindings[aor] ?? []
        switch request.contactHeader {
        case .wildcard?:
            // §10.3 step 6: "*" needs Expires: 0.
            guard request.expires == 0 else {
                respond(SIPResponseFactory.response(to: request, status: 400, toTag: tag), to: key)
                return
            }
            current = []
        case .addresses(let contacts)?:
            for contact in contacts {
                var stored = contact
                // RFC 4475 §3.3.14: never store URI headers of a Contact.
                if case .sip(var uri) = stored.uri {
                    uri.headers = []
                    stored.uri = .sip(uri)
                }
                let expires = stored.parameters.value("expires").flatMap { $0.flatMap(UInt32.init) } ?? defaultExpires
                current.removeAll { $0.contact.uri == stored.uri }
                if expires > 0 {
                    stored.parameters.remove("expires")
                    current.append(SIPRegistrationBinding(contact: stored, expires: expires, callID: callID, cseq: cseq.sequence, flow: flow))
                }
            }
        case nil:
            break  // a query: answer with the current bindings
        }
        bindings[aor] = current.isEmpty ? nil : current
        var ok = SIPResponseFactory.response(to: request, status: 200, toTag: tag)
        for binding in current {
            var contact = binding.contact
            contact.parameters.set("expires", String(binding.expires))
            ok.headers.add(.contact, contact.description)
        }
        respond(ok, to: key)
        if let first = current.first { emit(.registered(addressOfRecord: aor, contact: first.contact.uri.description)) }
    }

    /// `sip:user@host` of a To URI, the registrar's key (§10.3 step 5).
    func addressOfRecord(_ uri: AnyURI) -> String {
        guard case .sip(let sip) = uri else { return uri.description }
        let user = sip.user.map { SIPURI.unescaped($0) + "@" } ?? ""
        return "sip:" + user + sip.host.lowercased()
    }

    // MARK: Registration client (RFC 3261 §10.2)

    /// Registers our contact at `registrar` for `expires` seconds, answering a digest challenge
    /// once. Returns the final status code.
    public func register(at registrar: SIPDestination, expires: UInt32 = 3600) async throws -> Int {
        let flow = try await endpoint.flow(to: registrar)
        let host = IPAddressText.isIPv6(registrar.host) ? "[\(registrar.host)]" : registrar.host
        let requestURI = try SIPURIParser.parseSIP("sip:\(host):\(registrar.port)")
        var aor = localAddressOfRecord
        var request = SIPMessage.request(.register, .sip(requestURI))
        request.headers.add(.maxForwards, "70")
        request.headers.add(.to, aor.description)
        aor.tag = SIPIdentifiers.tag()
        request.headers.add(.from, aor.description)
        request.headers.add(.callID, SIPIdentifiers.callID(host: configuration.domain))
        request.headers.add(.cseq, "1 REGISTER")
        request.headers.add(.contact, contact(for: flow).description)
        request.headers.add(.expires, String(expires))
        return await withCheckedContinuation { continuation in
            sendRegister(request, on: flow, attempt: 0, continuation: continuation)
        }
    }

    private func sendRegister(_ request: SIPMessage, on flow: SIPFlow, attempt: Int, continuation: CheckedContinuation<Int, Never>) {
        _ = endpoint.assumeIsolated { endpoint in
            endpoint.sendRequest(request, on: flow) { [self] _, event in
                self.assumeIsolated { agent in
                    switch event {
                    case .timedOut:
                        agent.emit(.registrationFailed(status: 408))
                        continuation.resume(returning: 408)
                    case .transportFailed:
                        agent.emit(.registrationFailed(status: 503))
                        continuation.resume(returning: 503)
                    case .response(let response, _):
                        let code = response.statusCode ?? 500
                        if code < 200 { return }
                        if (code == 401 || code == 407), attempt == 0, agent.digestClient != nil,
                            let header = try? agent.digestClient!.authorize(
                                response, method: .register, uri: request.requestURI?.description ?? "", cnonce: SIPIdentifiers.random(16))
                        {
                            var retry = request
                            retry.headers.remove(.via)
                            retry.headers.set(.cseq, "\((request.cseq?.sequence ?? 1) + 1) REGISTER")
                            retry.headers.add(header.name, header.value)
                            agent.sendRegister(retry, on: flow, attempt: attempt + 1, continuation: continuation)
                            return
                        }
                        if (200...299).contains(code) {
                            agent.emit(.registered(addressOfRecord: agent.localAddressOfRecord.uri.description, contact: response.contacts.first?.uri.description ?? ""))
                        } else {
                            agent.emit(.registrationFailed(status: code))
                        }
                        continuation.resume(returning: code)
                    }
                }
            }
        }
    }
}
