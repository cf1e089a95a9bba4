/// How healthy the cloud flow is, from what the uplink hears on it (the mesh fallback's input):
/// `up` while anything arrives (a keepalive pong, a response, a request), `degraded` once the
/// flow has been silent for longer than a probe interval or a transaction on it timed out,
/// `down` after `downAfter` of silence — or at once when the flow fails.
///
/// RFC 5626's keepalive notices a dead flow only after 95–120 s; this probes far more often,
/// but only when the flow is quiet: `probeDue` asks for one ping per `probeInterval` of silence,
/// none while traffic flows, so a busy uplink carries no extra packets. A value with an injected
/// clock (`now` is the time since any fixed origin), driven by the uplink's timer.
public struct CloudHealth: Sendable, Equatable {
    public enum State: String, Sendable, Equatable { case up, degraded, down }

    public struct Settings: Sendable, Equatable {
        /// A probe (CRLF ping) after this much silence; the flow is degraded after 1.5 of them.
        public var probeInterval: Duration
        /// Silence after which the flow counts as down (the aim: notice a dead uplink within 3 s).
        public var downAfter: Duration

        public init(probeInterval: Duration = .milliseconds(1000), downAfter: Duration = .milliseconds(2500)) {
            self.probeInterval = probeInterval
            self.downAfter = downAfter
        }
    }

    public let settings: Settings
    public private(set) var state: State = .down
    private var lastHeard: Duration?
    private var lastProbe: Duration?

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// Something arrived on the flow. Returns the new state if it changed.
    public mutating func heard(at now: Duration) -> State? {
        lastHeard = now
        lastProbe = nil
        return set(.up)
    }

    /// A transaction on the flow timed out: the flow is suspect even if pongs still come.
    public mutating func transactionTimedOut(at now: Duration) -> State? {
        state == .up ? set(.degraded) : nil
    }

    /// The flow failed (closed, TLS error, no pong within the RFC 5626 limit).
    public mutating func flowFailed() -> State? {
        lastHeard = nil
        lastProbe = nil
        return set(.down)
    }

    /// The timer's tick: silence turns into degraded, then down.
    public mutating func tick(at now: Duration) -> State? {
        guard let lastHeard else { return nil }
        let silence = now - lastHeard
        if silence >= settings.downAfter { return set(.down) }
        if silence >= settings.probeInterval * 1.5 { return state == .up ? set(.degraded) : nil }
        return nil
    }

    /// Whether to send a probe now: the flow has been quiet for a probe interval since the last
    /// thing heard or the last probe. Marks the probe as sent.
    public mutating func probeDue(at now: Duration) -> Bool {
        guard state != .down || lastHeard != nil, let since = lastProbe ?? lastHeard else { return false }
        guard now - since >= settings.probeInterval else { return false }
        lastProbe = now
        return true
    }

    private mutating func set(_ new: State) -> State? {
        guard new != state else { return nil }
        state = new
        return new
    }
}
