import Media

/// A call's timers as one table of deadlines. Times are seconds on a monotonic clock of the
/// driver's choosing (the router's uptime, a test's manual clock); the table only compares them.
public struct CallTimers: Sendable, Equatable {
    public private(set) var deadlines: [BridgedCall.Timer: Double] = [:]

    public init() {}

    /// Arms `timer` to fire `seconds` after `now`, replacing an earlier deadline.
    public mutating func start(_ timer: BridgedCall.Timer, after seconds: Double, now: Double) {
        deadlines[timer] = now + max(0, seconds)
    }

    public mutating func stop(_ timer: BridgedCall.Timer) {
        deadlines[timer] = nil
    }

    public var nextDeadline: Double? { deadlines.values.min() }

    /// The timers due at `now`, earliest first; they are disarmed.
    mutating func due(at now: Double) -> [BridgedCall.Timer] {
        let fired = deadlines.filter { $0.value <= now }.sorted { ($0.value, $0.key.rawValue) < ($1.value, $1.key.rawValue) }.map(\.key)
        for timer in fired { deadlines[timer] = nil }
        return fired
    }
}

extension BridgedCall {
    /// Every timer a bridged call has. The session-refresh timer (RFC 4028) is the cloud leg's
    /// dialog's, kept by its user agent; its expiry reaches the call as that leg's end.
    public enum Timer: String, Sendable, Hashable, CaseIterable {
        /// `ring_s` for nobody to answer (a chain: `max_call_s` for the whole chain).
        case ring
        /// Legacy → cloud with a mesh to fall back to: `fallback_after_ms` for the cloud to say anything.
        case fallback
        /// A chain's current target: `ring_s` to answer before the next one rings.
        case chainStep
        /// `max_call_s` from the answer (product limit: 10 minutes).
        case duration
        /// The next look at both legs' media (`MediaInactivity.checkInterval`), while connected.
        case mediaCheck
        /// A relayed hold's re-INVITE to the station that could not go yet, tried again.
        case stationOffer
    }

    /// How long each timer runs, in seconds, as the channel and the settings say.
    public struct Timing: Sendable, Equatable {
        public var ring: Double
        public var maxCall: Double
        /// Set when a legacy → cloud call can fall back to the mesh.
        public var fallbackAfter: Double?
        /// Silence on a leg that should send this long ends the call; nil turns supervision off.
        public var mediaTimeout: Double?

        public init(ring: Double = 30, maxCall: Double = 600, fallbackAfter: Double? = nil, mediaTimeout: Double? = nil) {
            self.ring = ring
            self.maxCall = maxCall
            self.fallbackAfter = fallbackAfter
            self.mediaTimeout = mediaTimeout
        }
    }

    /// The earliest deadline of a call still going; the driver wakes the call (`tick`) then.
    public var nextDeadline: Double? { phase == .ended ? nil : timers.nextDeadline }

    /// The call is placed (its outbound legs are being called) at `now`: the ring time runs, and
    /// the fallback time when the call could go to the mesh.
    public mutating func begin(at now: Double) {
        timers.start(.ring, after: chain ? timing.maxCall : timing.ring, now: now)
        if direction == .legacyToCloud, let fallback = timing.fallbackAfter { timers.start(.fallback, after: fallback, now: now) }
    }

    /// A chain target was called at `now`: it has `ring_s` to answer.
    public mutating func chainTargetPlaced(at now: Double) {
        guard chain, phase == .routing else { return }
        timers.start(.chainStep, after: timing.ring, now: now)
    }

    /// The callee's side said something (100, 180, 183): it is there, no mesh fallback.
    public mutating func outboundTrying(_ branch: Int) {
        guard phase == .routing else { return }
        heard(rang: false)
    }

    mutating func heard(rang: Bool) {
        heardFromCallee = true
        if rang { calleeRang = true }
        timers.stop(.fallback)
    }

    mutating func connected(at now: Double) {
        for timer in [Timer.ring, .fallback, .chainStep] { timers.stop(timer) }
        timers.start(.duration, after: timing.maxCall, now: now)
        if let timeout = timing.mediaTimeout {
            let monitor = MediaInactivity(timeout: timeout, now: now)
            inactivity = monitor
            timers.start(.mediaCheck, after: monitor.checkInterval, now: now)
        }
    }

    /// The driver's wake-up at `now`: what the timers due by then mean.
    public mutating func tick(at now: Double) -> [Action] {
        guard phase != .ended else { return [] }
        var actions: [Action] = []
        for timer in timers.due(at: now) {
            guard phase != .ended else { break }
            switch timer {
            case .ring:
                actions += ringTimeout()
            case .fallback:
                if phase == .routing, direction == .legacyToCloud, !heardFromCallee {
                    actions.append(.fallBackToMesh(reason: "no answer from the cloud within \(Self.milliseconds(timing.fallbackAfter ?? 0)) ms"))
                }
            case .chainStep:
                if phase == .routing, chain { actions.append(.nextInChain) }
            case .duration:
                actions += durationLimit()
            case .mediaCheck:
                guard phase == .connected, let monitor = inactivity else { continue }
                timers.start(.mediaCheck, after: monitor.checkInterval, now: now)
                actions.append(.checkMedia)
            case .stationOffer:
                actions += retryStationOffer()
            }
        }
        return actions
    }

    /// What the bridge saw on each leg at `now` (packets received so far, and whether the leg
    /// should be sending: not on hold). A leg silent past the media timeout ends the call.
    public mutating func mediaActivity(legacy: (received: UInt64, expected: Bool), far: (received: UInt64, expected: Bool), at now: Double) -> [Action] {
        guard phase == .connected, var monitor = inactivity else { return [] }
        let legacySilent = monitor.observe(.a, received: legacy.received, expected: legacy.expected, now: now)
        let farSilent = monitor.observe(.b, received: far.received, expected: far.expected, now: now)
        inactivity = monitor
        guard legacySilent || farSilent else { return [] }
        let leg = farSilent ? "\(direction.overMesh ? "mesh" : "cloud") leg" : "legacy leg"
        return mediaTimeout(silentLeg: leg, seconds: Int(monitor.timeout))
    }

    static func milliseconds(_ seconds: Double) -> Int {
        let value = (seconds * 1000).rounded()
        return value.isFinite && value >= 0 && value < Double(Int.max) ? Int(value) : 0
    }
}
