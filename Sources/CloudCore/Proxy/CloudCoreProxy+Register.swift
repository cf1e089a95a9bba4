import DeviceTrust
import Foundation
import SIP
import SIPTransport

extension CloudCoreProxy {
    /// The registrar stage (RFC 3261 §10.3, RFC 5626 §6).
    func register(_ request: SIPMessage, key: SIPTransactionKey, flow: SIPFlow, principal: Principal) {
        let tag = SIPIdentifiers.tag()
        guard let to = request.to, let callID = request.callID, let cseq = request.cseq, case .sip(let toURI) = to.uri, let user = toURI.user else {
            reply(request, key: key, status: 400, reason: "Bad To")
            return
        }
        // §10.3 step 3 and 6: the AOR must be ours and the principal must own it.
        let aor = SIPURI.unescaped(user)
        guard principal.owns(aor) else {
            forbid(request, key: key, "\(principal) does not own \(aor)", flow: flow)
            return
        }
        // The principal was authenticated against the directory a moment ago: a user principal
        // owning `aor` means the user exists (digest found its HA1, a token its subject).
        // Expiry runs on the monotonic clock: a step of the wall clock expires nothing.
        let now = uptime()
        let headerExpires = request.expires
        switch request.contactHeader {
        case .wildcard?:
            guard headerExpires == 0 else {
                reply(request, key: key, status: 400, reason: "Contact * needs Expires: 0")
                return
            }
            location.removeAll(aor)
        case .addresses(let contacts)?:
            // §10.3 step 7: check every contact first, change nothing when one is refused.
            var updates: [(LocationBinding, UInt32)] = []
            for contact in contacts {
                var stored = contact
                guard case .sip(var uri) = stored.uri else {
                    reply(request, key: key, status: 400, reason: "Contact must be a SIP or SIPS URI")
                    return
                }
                uri.headers = []  // RFC 4475 §3.3.14: never keep URI headers of a Contact
                stored.uri = .sip(uri)
                var expires = stored.parameters.value("expires").flatMap { $0.flatMap(UInt32.init) } ?? headerExpires ?? settings.defaultExpires
                if expires > 0, expires < settings.minExpires {
                    // §10.3 step 7: 423 with the shortest interval we accept.
                    var response = SIPResponseFactory.response(to: request, status: 423, toTag: tag)
                    response.headers.add(.minExpires, String(settings.minExpires))
                    endpoint.assumeIsolated { $0.respond(response, to: key) }
                    return
                }
                expires = min(expires, settings.maxExpires)
                stored.parameters.remove("expires")
                let instance = stored.parameters.value("+sip.instance").flatMap { $0 }
                let regID = stored.parameters.value("reg-id").flatMap { $0.flatMap(Int.init) }
                updates.append((
                    LocationBinding(
                        addressOfRecord: aor, contact: stored, instance: instance, regID: regID, expiresAt: 0,
                        callID: callID, cseq: cseq.sequence, flow: flow, principal: principal.description),
                    expires))
            }
            var applied = location
            for (binding, expires) in updates {
                switch applied.update(binding, expires: expires, now: now, maxPerAOR: settings.bindingsPerAOR) {
                case .updated: continue
                case .outOfOrder:
                    reply(request, key: key, status: 500, reason: "Out of order CSeq")
                case .tooMany:
                    // Kamailio's registrar answers its `max_contacts` the same way.
                    logger.notice("registration refused: too many contacts", metadata: ["aor": "\(aor)", "limit": "\(settings.bindingsPerAOR)", "flow": "\(flow)"])
                    reply(request, key: key, status: 503, reason: "Too Many Registered Contacts")
                }
                return
            }
            location = applied
            if updates.contains(where: { $0.1 > 0 }) { flowPrincipals[flow] = principal }
        case nil:
            break  // a query: the answer lists the bindings
        }
        statistics.registrations += 1
        let bindings = location.lookup(aor, now: now)
        var ok = SIPResponseFactory.response(to: request, status: 200, toTag: tag)
        // RFC 3261 §10.3 step 8: the registrar's clock, which a gateway checks its own against.
        ok.headers.add(.date, ClockCheck.httpDate(Date(timeIntervalSince1970: clock())))
        for binding in bindings {
            var contact = binding.contact
            contact.parameters.set("expires", String(max(0, Int(binding.expiresAt - now))))
            ok.headers.add(.contact, contact.description)
        }
        // RFC 5626 §6: a registrar that kept a flow says so with Require: outbound, when the UA
        // asked for it and we are its first hop (one Via).
        if bindings.contains(where: { $0.isOutbound && $0.flow == flow }), request.tokens(.supported).contains("outbound"), request.vias.count == 1 {
            ok.headers.add(.require, "outbound")
        }
        endpoint.assumeIsolated { $0.respond(ok, to: key) }
        logger.debug("registered", metadata: ["aor": "\(aor)", "contacts": "\(bindings.count)", "flow": "\(flow)"])
    }
}
