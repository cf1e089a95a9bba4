public import Foundation
public import Logging
import Crypto
public import DurableState
import GRDB
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
public import SIP
public import SIPTransport

/// The cloud core's SIP side: registrar and record-routing forking proxy on one `SIPEndpoint`.
///
/// Every request goes through the stages of Kamailio's default route, in its order
/// (../shared/STYLE.md): sanity → flood control → CANCEL → (retransmissions, absorbed by the
/// transaction layer) → in-dialog → authentication → record-route → registrar → location →
/// relay. The proxy shares the endpoint's executor (its event loop), like `SIPUserAgent`, so the
/// two call each other synchronously and keep one order of events.
///
/// Media passes end to end (SDP with its SDES keys over TLS) unless `[media] anchor` puts it
/// through the core's relay or rtpengine (`CloudCoreProxy+Anchor.swift`).
public actor CloudCoreProxy {
    public nonisolated let endpoint: SIPEndpoint
    public nonisolated var unownedExecutor: UnownedSerialExecutor { endpoint.unownedExecutor }

    public struct Settings: Sendable {
        public var realm = "symphony"
        /// The SIP domain: the host of the identities the core asserts (P-Asserted-Identity).
        public var domain = "symphony.local"
        public var maxCallDuration: Duration = .seconds(600)
        /// How long a user's contacts ring before the caller gets 480 (ring groups have their own).
        public var ringSeconds = 30
        /// At most this many branches ring at once (the product's ring-group limit).
        public var maxBranches = 32
        public var minExpires: UInt32 = 60
        public var maxExpires: UInt32 = 3600
        public var defaultExpires: UInt32 = 600
        /// Requests without valid credentials, per source address.
        public var unauthenticatedRate = 20.0
        public var unauthenticatedBurst = 40.0
        /// Calls (routing or answered) one principal may have at once; past it 403.
        public var callsPerPrincipal = 32
        /// Contacts per address of record; a REGISTER adding one more gets 503 (Kamailio's `max_contacts`).
        public var bindingsPerAOR = 10
        /// Calls routing or answered in the whole core; past it 503.
        public var maxCalls = 4096
        /// Signs and checks our Record-Route values; a random key when none is given (tests).
        var routeSignature = RouteSignature(key: SymmetricKey(size: .bits256))
        /// Bindings are written back to SQLite this often.
        public var writeBackInterval: Duration = .seconds(1)
        public var tokens: ClientTokenVerifier?
        /// Adds `WWW-Authenticate: Bearer` beside the digest challenges (RFC 8898 §2.1). Off by
        /// default: libre (baresip) fails a registration outright on a challenge scheme it does
        /// not know; token clients send their Bearer credentials without being asked.
        public var bearerChallenge = false
        /// Digest algorithms challenged with, preferred first (RFC 8760 §2.4).
        public var digestAlgorithms: [DigestAlgorithm] = [.md5]
        /// Where the media of routed calls is anchored (`[media] anchor = "embedded"` or
        /// `"rtpengine"`); nil: end to end.
        public var anchor: (any MediaAnchoring)?

        public init() {}
    }

    public let settings: Settings
    let directory: Directory
    let logger: Logger
    /// Seconds since 1970 (injectable for tests of time-dependent routing): what records show
    /// and time-of-day rules read.
    let clock: @Sendable () -> Double
    /// Seconds on a monotonic clock: binding expiry, digest nonces, rate limits (docs/RELIABILITY.md
    /// "Time": a step of the wall clock expires no registration).
    let uptime: @Sendable () -> Double
    /// Call records, written at the start, answer and end of each call; kept queued while the
    /// disk cannot take them.
    let callRecords: RecordWriter<CallRecord>
    private let backlogObserver: NIOLockedValueBox<(@Sendable (RecordBacklog) -> Void)?>

    /// Told when call records start or stop waiting for the disk (the status topic).
    public nonisolated func observeRecordBacklog(_ observer: @escaping @Sendable (RecordBacklog) -> Void) {
        backlogObserver.withLockedValue { $0 = observer }
    }
    let authenticator: RequestAuthenticator
    let resolver: CallTargetResolver
    var location = LocationService()
    /// Which principal registered over each flow (rebuilt from the bindings at housekeeping).
    var flowPrincipals: [SIPFlow: Principal] = [:]
    var limiter: SourceRateLimiter
    var refusalLog = LogBudget(perMinute: 60)
    var calls: [SIPTransactionKey: ProxiedCall] = [:]
    var dialogs: [String: ProxiedDialog] = [:]
    /// Media anchoring: the last step of each anchored call (`CloudCoreProxy+Anchor.swift`).
    var anchorSteps: [String: Task<Void, Never>] = [:]
    var housekeeping: RepeatedTask?
    var registrationWritesFailing = false
    /// Counters for status and tests.
    public internal(set) var statistics = Statistics()

    public struct Statistics: Sendable, Equatable {
        public var registrations = 0
        public var challenges = 0
        public var forbidden = 0
        public var rateLimited = 0
        public var callsRouted = 0
        public var callsAnswered = 0
        public var callsEndedByLimit = 0
        /// In-dialog requests refused: a forged or foreign route, tags of no dialog.
        public var inDialogRefused = 0
        /// Calls refused by the per-principal or the core's limit.
        public var callsOverLimit = 0
    }

    /// The parameter on our Record-Route URIs that carries the signature (`RouteSignature`): a
    /// Route carrying it is ours to pop.
    static let routeMarker = "symcore"

    public init(endpoint: SIPEndpoint, directory: Directory, settings: Settings, logger: Logger = Logger(label: "cloud-core"),
                clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
                uptime: @escaping @Sendable () -> Double = MonotonicTime.seconds) {
        self.endpoint = endpoint
        self.directory = directory
        self.settings = settings
        self.logger = logger
        self.clock = clock
        self.uptime = uptime
        let observer = NIOLockedValueBox<(@Sendable (RecordBacklog) -> Void)?>(nil)
        self.backlogObserver = observer
        self.callRecords = directory.callRecordWriter(logger: logger) { backlog in observer.withLockedValue { $0 }?(backlog) }
        self.limiter = SourceRateLimiter(rate: settings.unauthenticatedRate, burst: settings.unauthenticatedBurst)
        self.authenticator = RequestAuthenticator(
            directory: directory, digest: DigestServer(realm: settings.realm, algorithms: settings.digestAlgorithms), tokens: settings.tokens)
        self.resolver = CallTargetResolver(directory: directory, userRingSeconds: settings.ringSeconds)
    }

    /// Loads the registrations kept across a restart, installs the proxy as the endpoint's
    /// transaction user and starts the housekeeping timer (expiry, write-back).
    public func start() throws {
        // Stored expiries are wall times; in memory they are monotonic.
        let (wall, monotonic) = (clock(), uptime())
        location.restore(try directory.loadRegistrations().map { binding in
            var restored = binding
            restored.expiresAt = binding.expiresAt - wall + monotonic
            return restored
        }, now: monotonic)
        houseKeep()
        logger.info("registrations restored", metadata: ["bindings": "\(location.count)"])
        endpoint.assumeIsolated { endpoint in
            endpoint.setRequestHandler { [self] _, request in
                self.assumeIsolated { $0.receive(request) }
            }
        }
        let interval = TimeAmount(settings.writeBackInterval)
        housekeeping = endpoint.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            self.assumeIsolated { $0.houseKeep() }
        }
    }

    /// Stops timers and writes the bindings back; calls in progress get BYE.
    public func stop() {
        housekeeping?.cancel()
        housekeeping = nil
        for callID in Array(dialogs.keys) { endDialog(callID, reason: "core shutting down", sendBye: true) }
        flushRegistrations()
    }

    /// Waits until the call records handed over so far are written (or a write failed: they stay queued).
    public func flushRecords() async {
        await callRecords.flush()
    }

    func houseKeep() {
        location.expire(now: uptime())
        var index: [SIPFlow: Principal] = [:]
        for list in location.bindings.values {
            for binding in list { index[binding.flow] = Principal(binding.principal) }
        }
        flowPrincipals = index
        flushRegistrations()
    }

    /// Writes the changed AORs' bindings off the event loop, expiries as wall times. A write that
    /// fails (a full disk, a lock past the busy timeout) marks them changed again: the next
    /// housekeeping writes them (with whatever changed since).
    func flushRegistrations() {
        let changes = location.takeChanges()
        guard !changes.isEmpty else { return }
        let offset = clock() - uptime()
        let stored = changes.map { change in
            (aor: change.aor, bindings: change.bindings.map { binding in
                var wall = binding
                wall.expiresAt = binding.expiresAt + offset
                return wall
            })
        }
        let loop = endpoint.eventLoop
        directory.database.asyncWrite({ db in try Directory.saveRegistrations(stored, in: db) }, completion: { [self] _, result in
            loop.execute {
                self.assumeIsolated { proxy in
                    switch result {
                    case .success: proxy.registrationWrites(failed: nil, aors: [])
                    case .failure(let error): proxy.registrationWrites(failed: SQLiteFile.describe(error), aors: changes.map(\.aor))
                    }
                }
            }
        })
    }

    /// A write-back's outcome: a failure marks its AORs to be written again; the log says when
    /// writing starts failing and when it works again (not once a second in between).
    func registrationWrites(failed error: String?, aors: [String]) {
        if let error {
            location.markChanged(aors)
            if !registrationWritesFailing { logger.error("registrations not saved, tried again every second", metadata: ["error": "\(error)", "aors": "\(aors.count)"]) }
            registrationWritesFailing = true
        } else if registrationWritesFailing {
            registrationWritesFailing = false
            logger.notice("registrations saved again")
        }
    }

    /// The live contacts of an AOR (tests and status).
    public func contacts(of aor: String) -> [LocationBinding] { location.lookup(aor, now: uptime()) }
    public var activeDialogs: Int { dialogs.count }

    // MARK: The request pipeline

    func receive(_ incoming: SIPIncomingRequest) {
        let request = incoming.message
        switch incoming.kind {
        case .ackFor2xx:
            // An ACK for a 2xx belongs to a dialog we record-routed: relay it statelessly.
            routeInDialog(request, key: nil, flow: incoming.flow)
        case .cancel(let inviteKey):
            // The endpoint answered the CANCEL 200 already (§9.2, §16.10).
            callerCancelled(inviteKey)
        case .transaction(let key):
            pipeline(request, key: key, flow: incoming.flow)
        }
    }

    private func pipeline(_ request: SIPMessage, key: SIPTransactionKey, flow: SIPFlow) {
        // 1. Sanity (RFC 3261 §16.3): Max-Forwards, and the headers routing needs.
        guard let method = request.method, request.callID != nil, request.from != nil, request.to != nil else {
            reply(request, key: key, status: 400, reason: "Missing From, To or Call-ID")
            return
        }
        if let hops = request.maxForwards, hops <= 0, method != .register, method != .options {
            reply(request, key: key, status: 483)
            return
        }
        if let proxyRequire = request.headers[.proxyRequire] {
            // §16.3 step 5: we support no extension a proxy must understand.
            var response = SIPResponseFactory.response(to: request, status: 420, toTag: SIPIdentifiers.tag())
            response.headers.add(.unsupported, proxyRequire)
            endpoint.assumeIsolated { $0.respond(response, to: key) }
            return
        }
        // 2. In-dialog requests follow their Route set (loose routing, §16.4).
        if request.to?.tag != nil {
            routeInDialog(request, key: key, flow: flow)
            return
        }
        // OPTIONS to the core itself (keepalive probes of peers): answered without credentials.
        if method == .options, request.requestURI?.sipURI?.user == nil {
            var ok = SIPResponseFactory.response(to: request, status: 200, toTag: SIPIdentifiers.tag())
            ok.headers.add(.allow, "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE")
            endpoint.assumeIsolated { $0.respond(ok, to: key) }
            return
        }
        // 3. Authentication (with flood control for whoever cannot authenticate).
        guard let principal = authenticate(request, key: key, flow: flow) else { return }
        // 4. Registrar.
        if method == .register {
            register(request, key: key, flow: flow, principal: principal)
            return
        }
        // 5. Location and relay.
        if method == .invite {
            routeInvite(request, key: key, flow: flow, principal: principal)
        } else {
            reply(request, key: key, status: 405)  // docs/CLOUD-CORE.md: no other out-of-dialog methods
        }
    }

    /// Runs the authentication stage; answers the request itself and returns nil when it is
    /// not authenticated.
    private func authenticate(_ request: SIPMessage, key: SIPTransactionKey, flow: SIPFlow) -> Principal? {
        let now = uptime()
        let certificate = endpoint.assumeIsolated { $0.peerCertificate(on: flow) }
        // A request other than REGISTER over a flow a principal registered on is that principal's
        // (RFC 5626: the flow was authenticated when the binding was made).
        let owner = request.method != .register ? registeredPrincipal(on: flow) : nil
        let source = flow.remote.hostText
        // Flood control before any work that costs: a source whose refusals used up its allowance
        // gets nothing more (no ECDSA verify of yet another bogus token, no digest, no answer).
        if certificate == nil, owner == nil, limiter.isExhausted(source, now: now) {
            dropped(source, key: key)
            return nil
        }
        var outcome = authenticator.authenticate(request, peerCertificate: certificate, now: clock(), uptime: now)
        if case .challenge = outcome, let owner { outcome = .authenticated(owner, how: "registered flow") }
        switch outcome {
        case .authenticated(let principal, _):
            return principal
        case .challenge(let reason, let stale):
            guard limiter.allow(source, now: now) else {
                dropped(source, key: key)
                return nil
            }
            statistics.challenges += 1
            if mayLogRefusal() {
                logger.info("challenge", metadata: ["method": "\(request.method?.rawValue ?? "?")", "reason": "\(reason)", "flow": "\(flow)"])
            }
            var response = authenticator.digest.challengeResponse(
                to: request, stale: stale, proxy: request.method != .register, toTag: SIPIdentifiers.tag(), now: UInt64(now))
            if settings.tokens != nil, settings.bearerChallenge {
                // RFC 8898 §2.1: Bearer as a further scheme a client may use.
                response.headers.add(request.method == .register ? .wwwAuthenticate : .proxyAuthenticate, "Bearer realm=\"\(settings.realm)\"")
            }
            endpoint.assumeIsolated { $0.respond(response, to: key) }
            return nil
        case .forbidden(let reason):
            guard limiter.allow(source, now: now) else {
                dropped(source, key: key)
                return nil
            }
            forbid(request, key: key, reason, flow: flow)
            return nil
        }
    }

    /// Challenges and refusals are logged at most 60 a minute, all sources together; how many
    /// were held back is said with the next minute's first (`LogBudget`).
    func mayLogRefusal() -> Bool {
        let (log, heldBack) = refusalLog.take(now: uptime())
        if heldBack > 0 { logger.notice("\(heldBack) more challenges and refusals in the last minute (not logged one by one)") }
        return log
    }

    /// A request of a source over its allowance: no answer (over UDP an answer would be a
    /// reflection); counted, and logged at debug only.
    func dropped(_ source: String, key: SIPTransactionKey?) {
        if let key { endpoint.assumeIsolated { $0.abandon(key) } }
        statistics.rateLimited += 1
        logger.debug("flood control: request dropped", metadata: ["source": "\(source)"])
    }

    func registeredPrincipal(on flow: SIPFlow) -> Principal? {
        flowPrincipals[flow]
    }

    /// A bare 403: the reason goes to the log only, never to the peer.
    func forbid(_ request: SIPMessage, key: SIPTransactionKey, _ reason: String, flow: SIPFlow) {
        statistics.forbidden += 1
        if mayLogRefusal() {
            logger.notice("refused", metadata: ["method": "\(request.method?.rawValue ?? "?")", "reason": "\(reason)", "flow": "\(flow)"])
        }
        reply(request, key: key, status: 403)
    }

    func reply(_ request: SIPMessage, key: SIPTransactionKey, status: Int, reason: String? = nil) {
        let response = SIPResponseFactory.response(to: request, status: status, reason: reason, toTag: SIPIdentifiers.tag())
        endpoint.assumeIsolated { $0.respond(response, to: key) }
    }
}
