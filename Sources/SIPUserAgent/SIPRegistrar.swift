public import SIP
public import SIPTransport

/// The registrar role of a user agent (RFC 3261 §10.3), as a value: who may register, the
/// bindings with their expiry, and bounds on both, so that a flood of REGISTERs with fresh
/// addresses of record cannot grow it. Only an agent configured with `SIPUserAgent.Configuration
/// .registrar` has one (`sip-agent`, tests); the gateway's legs have none and answer REGISTER 405.
public struct SIPRegistrar: Sendable {
    public struct Settings: Sendable {
        /// Users and passwords that may register; nil lets anyone (a registrar for tests).
        public var users: [String: String]?
        public var realm = "symphony"
        /// Digest algorithms we challenge with, preferred first (RFC 8760 §2.4).
        public var algorithms: [DigestAlgorithm] = [.sha256, .md5]
        /// Addresses of record held at most; a REGISTER for a new one past that gets 503.
        public var maxAddressesOfRecord = 1000
        /// Contacts per address of record; more get 503 (as Kamailio's `max_contacts`).
        public var maxContactsPerAddress = 10
        /// The longest registration granted (a longer Expires is shortened, §10.3 step 7).
        public var maxExpires: UInt32 = 3600

        public init(users: [String: String]? = nil) {
            self.users = users
        }
    }

    public let settings: Settings
    let digest: DigestServer
    /// Address of record → its bindings, each with the time (seconds, the caller's clock) it lapses.
    private var bindings: [String: [(binding: SIPRegistrationBinding, lapses: Double)]] = [:]

    public init(_ settings: Settings) {
        self.settings = settings
        digest = DigestServer(realm: settings.realm, algorithms: settings.algorithms)
    }

    /// The bindings in force at `now`.
    public func current(at now: Double) -> [String: [SIPRegistrationBinding]] {
        live(at: now).mapValues { $0.map(\.binding) }
    }

    /// What a REGISTER gets at `now` (seconds on a monotonic clock): the response, and the
    /// address of record and first contact when it registered something.
    public mutating func receive(_ request: SIPMessage, flow: SIPFlow, now: Double) -> (response: SIPMessage, registered: (aor: String, contact: String)?) {
        let tag = SIPIdentifiers.tag()
        if let users = settings.users {
            let seconds = UInt64(max(0, min(now, 1e15)))
            switch digest.verify(request, password: { users[$0] }, now: seconds) {
            case .challenge:
                return (digest.challengeResponse(to: request, stale: false, toTag: tag, now: seconds), nil)
            case .authenticated(let username):
                // §10.3 step 6: the authenticated user must own the address of record.
                if let aorUser = request.to?.sipURI?.user, SIPURI.unescaped(aorUser) != username {
                    return (SIPResponseFactory.response(to: request, status: 403, toTag: tag), nil)
                }
            }
        }
        guard let to = request.to, let callID = request.callID, let cseq = request.cseq else {
            return (SIPResponseFactory.response(to: request, status: 400, toTag: tag), nil)
        }
        purge(at: now)
        let aor = Self.addressOfRecord(to.uri)
        let defaultExpires = min(request.expires ?? settings.maxExpires, settings.maxExpires)
        var current = bindings[aor] ?? []
        switch request.contactHeader {
        case .wildcard?:
            // §10.3 step 6: "*" needs Expires: 0.
            guard request.expires == 0 else { return (SIPResponseFactory.response(to: request, status: 400, toTag: tag), nil) }
            current = []
        case .addresses(let contacts)?:
            for contact in contacts {
                var stored = contact
                // RFC 4475 §3.3.14: never store URI headers of a Contact.
                if case .sip(var uri) = stored.uri {
                    uri.headers = []
                    stored.uri = .sip(uri)
                }
                let asked = stored.parameters.value("expires").flatMap { $0.flatMap(UInt32.init) } ?? defaultExpires
                let expires = min(asked, settings.maxExpires)
                current.removeAll { $0.binding.contact.uri == stored.uri }
                if expires > 0 {
                    stored.parameters.remove("expires")
                    let binding = SIPRegistrationBinding(contact: stored, expires: expires, callID: callID, cseq: cseq.sequence, flow: flow)
                    current.append((binding, now + Double(expires)))
                }
            }
        case nil:
            break  // a query: answer with the current bindings
        }
        let isNew = bindings[aor] == nil
        if current.count > settings.maxContactsPerAddress || (isNew && !current.isEmpty && bindings.count >= settings.maxAddressesOfRecord) {
            var full = SIPResponseFactory.response(to: request, status: 503, toTag: tag)
            full.headers.add(.retryAfter, "60")
            return (full, nil)
        }
        bindings[aor] = current.isEmpty ? nil : current
        var ok = SIPResponseFactory.response(to: request, status: 200, toTag: tag)
        for (binding, lapses) in current {
            var contact = binding.contact
            contact.parameters.set("expires", String(Int(max(0, (lapses - now).rounded()))))
            ok.headers.add(.contact, contact.description)
        }
        return (ok, current.first.map { (aor, $0.binding.contact.uri.description) })
    }

    /// Drops bindings that have lapsed, and addresses of record left without any.
    private mutating func purge(at now: Double) {
        bindings = live(at: now)
    }

    private func live(at now: Double) -> [String: [(binding: SIPRegistrationBinding, lapses: Double)]] {
        bindings.compactMapValues { entries in
            let live = entries.filter { $0.lapses > now }
            return live.isEmpty ? nil : live
        }
    }

    /// `sip:user@host` of a To URI, the registrar's key (§10.3 step 5).
    static func addressOfRecord(_ uri: AnyURI) -> String {
        guard case .sip(let sip) = uri else { return uri.description }
        let user = sip.user.map { SIPURI.unescaped($0) + "@" } ?? ""
        return "sip:" + user + sip.host.lowercased()
    }
}
