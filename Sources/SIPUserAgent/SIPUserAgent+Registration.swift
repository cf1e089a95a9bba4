import NIOCore
import SIP
public import SIPTransport

extension SIPUserAgent {
    // MARK: Registrar (RFC 3261 §10.3, `SIPRegistrar`)

    func receiveRegister(_ request: SIPMessage, key: SIPTransactionKey, flow: SIPFlow) {
        guard var registrar else { return }  // the validator answered 405 already
        let (response, registered) = registrar.receive(request, flow: flow, now: Self.uptime())
        self.registrar = registrar
        if response.statusCode != 200 {
            logger.info("REGISTER answered \(response.statusCode ?? 0)", metadata: ["flow": "\(flow)"])
        }
        respond(response, to: key)
        if let registered { emit(.registered(addressOfRecord: registered.aor, contact: registered.contact)) }
    }

    /// The registrar's bindings in force now (address of record → contacts).
    public var bindings: [String: [SIPRegistrationBinding]] { registrar?.current(at: Self.uptime()) ?? [:] }

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
