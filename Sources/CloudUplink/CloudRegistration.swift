import DeviceTrust
import Foundation
public import Logging
import NIOCore
public import SIP
public import SIPTransport

/// Where the uplink stands, for status (MQTT `cloud` topic) and for the router.
public enum UplinkStatus: Sendable, Equatable, CustomStringConvertible {
    case connecting
    /// Every channel is registered over `flow`.
    case registered(flow: SIPFlow)
    /// The last attempt failed; the next one comes after `retryIn`.
    case down(reason: String, retryIn: Duration)
    case stopped

    public var description: String {
        switch self {
        case .connecting: "connecting"
        case .registered(let flow): "registered over \(flow)"
        case .down(let reason, let retry): "down (\(reason)); retry in \(retry)"
        case .stopped: "stopped"
        }
    }
}

/// The gateway's registration at the cloud: one mutual-TLS flow to the cloud's SIPS address,
/// every channel registered over it as an RFC 5626 binding (`+sip.instance`, `reg-id`, `ob`), CRLF
/// keepalives on it, refresh before expiry, and — when the flow fails, a registration is refused
/// or times out — a new flow after a jittered backoff (RFC 5626 §4.5). Shares the endpoint's
/// executor, as the other transaction users do.
public actor CloudRegistration {
    public nonisolated let endpoint: SIPEndpoint
    public nonisolated var unownedExecutor: UnownedSerialExecutor { endpoint.unownedExecutor }

    public struct Settings: Sendable {
        public var server: SIPDestination
        public var domain: String
        /// The AORs to register: `<device>-ch<n>` for each channel.
        public var addressesOfRecord: [String]
        /// RFC 5626 instance id (a UUID kept in the state directory).
        public var instance: String
        public var expires: UInt32 = 600
        public var keepAlive: Duration = .seconds(25)
        public var backoff = ReconnectBackoff(base: .seconds(2), ceiling: .seconds(60))
        /// How fast a silent flow counts as down (`CloudHealth`); probes go only on a quiet flow.
        public var health = CloudHealth.Settings()
        /// Digest credentials for a registrar that challenges (RFC 3261 §22.2); `username` nil:
        /// each AOR authenticates as itself. Nil: a challenge fails the round (mutual TLS only).
        public var credentials: DigestCredentials?
        /// A preloaded route (`<sips:proxy:5061;lr>`, RFC 3261 §8.1.2) when `server` is an
        /// outbound proxy rather than the registrar.
        public var route: String?
        /// RFC 3263: the destinations to try for each new flow, in order (`SIPServerLocator`);
        /// nil: `server` alone. Looked up again at every connect, so DNS changes are followed.
        public var locate: (@Sendable () async throws -> [SIPDestination])?

        public init(server: SIPDestination, domain: String, addressesOfRecord: [String], instance: String) {
            self.server = server
            self.domain = domain
            self.addressesOfRecord = addressesOfRecord
            self.instance = instance
        }
    }

    var settings: Settings
    let logger: Logger
    public private(set) var status: UplinkStatus = .stopped
    private var flow: SIPFlow?
    private var timer: Scheduled<Void>?
    private var attempt = 0
    private var callIDs: [String: (callID: String, cseq: UInt32)] = [:]
    private let statusContinuation: AsyncStream<UplinkStatus>.Continuation
    /// Every status change, in order.
    public nonisolated let statusChanges: AsyncStream<UplinkStatus>
    /// The flow's health (up / degraded / down), from what arrives on it.
    public private(set) var health: CloudHealth
    private var healthTimer: RepeatedTask?
    private let healthContinuation: AsyncStream<CloudHealth.State>.Continuation
    /// Every health change, in order: the router's fallback follows it.
    public nonisolated let healthChanges: AsyncStream<CloudHealth.State>
    /// Our clock against the cloud's: a problem to show, or nil once they agree.
    public nonisolated let clockChanges: AsyncStream<String?>
    private let clockContinuation: AsyncStream<String?>.Continuation
    private var clockProblem: String?

    public init(endpoint: SIPEndpoint, settings: Settings, logger: Logger = Logger(label: "cloud-uplink")) {
        self.endpoint = endpoint
        self.settings = settings
        self.logger = logger
        (statusChanges, statusContinuation) = AsyncStream.makeStream(of: UplinkStatus.self, bufferingPolicy: .bufferingNewest(64))
        (healthChanges, healthContinuation) = AsyncStream.makeStream(of: CloudHealth.State.self, bufferingPolicy: .bufferingNewest(64))
        (clockChanges, clockContinuation) = AsyncStream.makeStream(of: String?.self, bufferingPolicy: .bufferingNewest(1))
        health = CloudHealth(settings: settings.health)
    }

    /// Starts connecting; returns at once.
    public func start() {
        endpoint.assumeIsolated { endpoint in
            endpoint.setFlowFailureHandler { [self] _, flow, reason in
                self.assumeIsolated { $0.flowFailed(flow, reason: reason) }
            }
            endpoint.setFlowActivityHandler { [self] _, flow, activity in
                self.assumeIsolated { $0.activity(activity, on: flow) }
            }
        }
        let tick = settings.health.probeInterval / 4
        healthTimer = endpoint.eventLoop.scheduleRepeatedTask(initialDelay: TimeAmount(tick), delay: TimeAmount(tick)) { [self] _ in
            self.assumeIsolated { $0.healthTick() }
        }
        connect()
    }

    // MARK: Health

    private static func clock() -> Duration { .nanoseconds(Int64(NIODeadline.now().uptimeNanoseconds)) }

    private func activity(_ activity: SIPFlowActivity, on activeFlow: SIPFlow) {
        guard activeFlow == flow else { return }
        switch activity {
        case .heard: report(health.heard(at: Self.clock()))
        case .transactionTimedOut: report(health.transactionTimedOut(at: Self.clock()))
        }
    }

    /// The health timer: silence turns into degraded, then down; a quiet flow gets a probe.
    private func healthTick() {
        guard let flow, case .registered = status else { return }
        let now = Self.clock()
        if let change = health.tick(at: now) {
            report(change)
            if change == .down {
                // Nothing for `downAfter`: the path is dead even if TCP has not noticed yet. Reset,
                // not close: nothing queued on it may reach the cloud after the outage.
                endpoint.assumeIsolated { $0.abort(flow) }
                failed("no sign of life on the flow for \(settings.health.downAfter)", attempt: attempt)
                return
            }
        }
        if health.probeDue(at: now) { endpoint.assumeIsolated { $0.ping(flow) } }
    }

    private func report(_ change: CloudHealth.State?) {
        guard let change else { return }
        logger.notice("cloud health \(change.rawValue)")
        healthContinuation.yield(change)
    }

    /// A reloaded channel plan: AORs no longer wanted are unregistered, and the new set is
    /// registered over the current flow (or with the next connection).
    public func update(addressesOfRecord: [String]) {
        let removed = settings.addressesOfRecord.filter { !addressesOfRecord.contains($0) }
        settings.addressesOfRecord = addressesOfRecord
        guard let flow, case .registered = status else { return }
        for aor in removed { sendRegister(aor, expires: 0, on: flow) { _ in } }
        registerAll(on: flow, attempt: attempt)
    }

    /// Drops the flow and connects again at once (a renewed certificate: the core accepts only
    /// the new one). Calls on the old flow move to the new one at the core (RFC 5626).
    public func reconnect(_ reason: String) {
        guard status != .stopped else { return }
        logger.notice("cloud uplink reconnecting: \(reason)")
        timer?.cancel()
        timer = nil
        if let flow {
            endpoint.assumeIsolated { endpoint in
                endpoint.stopKeepAlive(on: flow)
                endpoint.close(flow)
            }
        }
        flow = nil
        settings.backoff.reset()
        connect()
    }

    /// Unregisters (best effort) and stops.
    public func stop() {
        timer?.cancel()
        timer = nil
        healthTimer?.cancel()
        healthTimer = nil
        if let flow {
            endpoint.assumeIsolated { $0.stopKeepAlive(on: flow) }
            for aor in settings.addressesOfRecord { sendRegister(aor, expires: 0, on: flow) { _ in } }
        }
        flow = nil
        attempt += 1
        set(.stopped)
    }

    private func set(_ new: UplinkStatus) {
        guard new != status else { return }
        status = new
        logger.notice("cloud uplink \(new)")
        statusContinuation.yield(new)
    }

    private func connect() {
        attempt += 1
        let current = attempt
        set(.connecting)
        Task { [self] in
            let targets: [SIPDestination]
            do {
                targets = try await settings.locate?() ?? [settings.server]
            } catch {
                failed("cannot look up \(settings.server.host): \(error)", attempt: current)
                return
            }
            guard !targets.isEmpty else {
                failed("DNS says \(settings.server.host) offers no SIPS (SRV target \".\")", attempt: current)
                return
            }
            // RFC 3263 §4.3: the next destination when one cannot be reached.
            var problems: [String] = []
            for target in targets {
                guard current == attempt else { return }
                do {
                    let flow = try await endpoint.flow(to: target)
                    if targets.count > 1 { logger.notice("cloud flow to \(target.host):\(target.port)", metadata: ["tried": "\(problems.count + 1) of \(targets.count)"]) }
                    registerAll(on: flow, attempt: current)
                    return
                } catch {
                    problems.append("\(target.host):\(target.port): \(error)")
                }
            }
            failed("cannot connect to \(settings.server.host): \(problems.joined(separator: "; "))", attempt: current)
        }
    }

    private var roundPending = 0
    private var roundFailure: String?

    private func registerAll(on flow: SIPFlow, attempt current: Int) {
        guard current == attempt else { return }
        self.flow = flow
        roundPending = settings.addressesOfRecord.count
        roundFailure = nil
        for aor in settings.addressesOfRecord {
            sendRegister(aor, expires: settings.expires, on: flow) { [self] problem in
                self.assumeIsolated { $0.registered(aor, problem: problem, flow: flow, attempt: current) }
            }
        }
    }

    /// Our clock against the registrar's `Date` (docs/RELIABILITY.md "Time"): a clock far off
    /// is reported (log, `clockChanges`) while TLS still works, before certificates' validity fails it.
    private func checkClock(against date: String) {
        let problem = ClockCheck.problem(now: Date(), peerDate: date, peer: "the cloud")
        guard problem != clockProblem else { return }
        clockProblem = problem
        if let problem { logger.error("\(problem)") } else { logger.notice("the system clock agrees with the cloud's again") }
        clockContinuation.yield(problem)
    }

    /// One answer of a registration round; the last one decides the round.
    private func registered(_ aor: String, problem: String?, flow: SIPFlow, attempt current: Int) {
        guard current == attempt, flow == self.flow else { return }
        if let problem { roundFailure = roundFailure ?? "\(aor): \(problem)" }
        roundPending -= 1
        guard roundPending == 0 else { return }
        if let failure = roundFailure {
            endpoint.assumeIsolated { $0.close(flow) }
            failed(failure, attempt: current)
            return
        }
        settings.backoff.reset()
        let interval = settings.keepAlive
        endpoint.assumeIsolated { $0.startKeepAlive(on: flow, every: interval) }
        report(health.heard(at: Self.clock()))
        set(.registered(flow: flow))
        // Refresh at 80 % of the lifetime (RFC 3261 §10.2.4 leaves the margin to us).
        timer?.cancel()
        timer = endpoint.eventLoop.scheduleTask(in: TimeAmount(.seconds(Double(settings.expires) * 0.8))) { [self] in
            self.assumeIsolated { $0.refresh(attempt: current) }
        }
    }

    private func refresh(attempt current: Int) {
        guard current == attempt, let flow else { return }
        registerAll(on: flow, attempt: current)
    }

    func flowFailed(_ failedFlow: SIPFlow, reason: String) {
        guard failedFlow == flow else { return }
        failed("flow failed: \(reason)", attempt: attempt)
    }

    private func failed(_ reason: String, attempt current: Int) {
        guard current == attempt else { return }
        flow = nil
        report(health.flowFailed())
        timer?.cancel()
        var generator = SystemRandomNumberGenerator()
        let delay = settings.backoff.nextDelay(using: &generator)
        logger.warning("cloud uplink failed", metadata: ["reason": "\(reason)", "retry_in": "\(delay)"])
        set(.down(reason: reason, retryIn: delay))
        timer = endpoint.eventLoop.scheduleTask(in: TimeAmount(delay)) { [self] in
            self.assumeIsolated { uplink in
                guard uplink.attempt == current else { return }
                uplink.connect()
            }
        }
    }

    /// One REGISTER; `done` gets nil for a 2xx, else what went wrong. A 401/407 is answered once
    /// with the credentials (a second challenge, or none to answer with, fails it).
    private func sendRegister(
        _ aor: String, expires: UInt32, on flow: SIPFlow, authorization: (name: SIPHeaderName, value: String)? = nil,
        done: @escaping @Sendable (String?) -> Void
    ) {
        var state = callIDs[aor] ?? (SIPIdentifiers.callID(host: settings.domain), 0)
        state.cseq += 1
        callIDs[aor] = state
        let host = settings.domain
        let uri = SIPURI(secure: true, host: host)
        var request = SIPMessage.request(.register, .sip(uri))
        request.headers.add(.maxForwards, "70")
        request.headers.add(.from, "<sips:\(aor)@\(host)>;tag=\(SIPIdentifiers.tag())")
        request.headers.add(.to, "<sips:\(aor)@\(host)>")
        request.headers.add(.callID, state.callID)
        request.headers.add(.cseq, "\(state.cseq) REGISTER")
        let local = flow.local
        let localHost = local.protocol == .inet6 ? "[\(local.hostText)]" : local.hostText
        request.headers.add(.contact, "<sips:\(aor)@\(localHost):\(local.port ?? 5061);transport=tls;ob>;+sip.instance=\"<urn:uuid:\(settings.instance)>\";reg-id=1")
        request.headers.add(.supported, "outbound, path")
        request.headers.add(.expires, String(expires))
        if let route = settings.route { request.headers.add(.route, route) }
        if let authorization { request.headers.add(authorization.name, authorization.value) }
        let (credentials, requestURI) = (settings.credentials, uri.description)
        endpoint.assumeIsolated { endpoint in
            _ = endpoint.sendRequest(request, on: flow) { _, event in
                switch event {
                case .response(let response, _):
                    guard let code = response.statusCode, code >= 200 else { return }
                    if code == 401 || code == 407, authorization == nil, let credentials {
                        var client = DigestClient(username: credentials.username ?? aor, password: credentials.password)
                        if let answer = try? client.authorize(response, method: .register, uri: requestURI, cnonce: SIPIdentifiers.random(16)) {
                            self.assumeIsolated { $0.sendRegister(aor, expires: expires, on: flow, authorization: answer, done: done) }
                            return
                        }
                        done("\(code): no digest challenge this gateway can answer (MD5 or SHA-256, qop auth)")
                        return
                    }
                    if (200...299).contains(code), let date = response.headers[.date] {
                        self.assumeIsolated { $0.checkClock(against: date) }
                    }
                    done((200...299).contains(code) ? nil : "\(code) \(response.statusLine?.reasonPhrase ?? "")")
                case .timedOut: done("timed out")
                case .transportFailed: done("transport failed")
                }
            }
        }
    }
}
