public import SIP

/// One call through a channel, as a value: the leg that called in (`inbound`) and the legs the
/// gateway placed for it (`outbound` branches: the channel's one cloud target, or its legacy
/// stations rung in parallel). It hears what the legs report and returns what the router must do;
/// it sends nothing itself, so every rule here is tested without sockets (`BridgedCallTests`).
///
/// It owns the call's timers too (`BridgedCall+Timers.swift`): ring time, mesh fallback, chain
/// step, duration limit and media supervision are deadlines in its `timers` table, armed and
/// disarmed by the events above; the router sleeps until `nextDeadline` and hands the time back
/// (`tick`), so a manual clock drives every timer in the tests.
///
/// The forking rules are RFC 3261 §16.7's (`ForkedInvite`, shared with the cloud core's proxy):
/// the first 2xx wins and the others are cancelled with `Reason: SIP;cause=200`, the best final
/// response goes back when all fail, a ring timeout cancels everyone. What goes back to the caller
/// is mapped by `GatewayFailureMapping` (the gateway is a user agent on each side, not a proxy).
public struct BridgedCall: Sendable {
    public enum Direction: String, Sendable, Equatable {
        case legacyToCloud = "legacy-to-cloud"
        case cloudToLegacy = "cloud-to-legacy"
        /// A legacy call placed on the mesh (the cloud unreachable, or silent past `fallback_after_ms`).
        case legacyToMesh = "legacy-to-mesh"
        /// A mesh node calling one of our channels.
        case meshToLegacy = "mesh-to-legacy"

        /// Whether the legacy station called (the other side is the callee).
        public var fromLegacy: Bool { self == .legacyToCloud || self == .legacyToMesh }
        public var overMesh: Bool { self == .legacyToMesh || self == .meshToLegacy }
        /// What the side that is not legacy is called in reasons and logs.
        var farParty: String { overMesh ? "mesh peer" : "cloud party" }
    }

    public enum Phase: Sendable, Equatable {
        /// Outbound legs placed, none answered yet.
        case routing
        /// A branch answered and the caller has its 200.
        case connected
        case ended
    }

    public enum Outcome: String, Sendable, Equatable {
        case answered, missed, busy, declined, failed, cancelled
    }

    public enum Action: Sendable, Equatable {
        /// Tell the caller it rings: 180, or 183 with early media from `earlyBranch`.
        case ringInbound(earlyBranch: Int?)
        /// Bridge media to `branch` (its answer, or its early media) and answer the caller.
        case answerInbound(branch: Int)
        /// Set up media early (183 with a description) from `branch`, before any answer.
        case earlyMedia(branch: Int)
        case rejectInbound(status: Int)
        case cancel(branches: [Int], reason: ForkedInvite.CancelReason)
        /// BYE on an outbound branch (a second 2xx, or the call is over).
        case hangUpOutbound(branch: Int)
        /// BYE to the caller (the callee hung up, the duration limit).
        case hangUpInbound
        /// BYE on both connected legs with a `Reason` header (RFC 3326): the media stopped.
        case hangUpBoth(reason: String)
        /// The call is over: release media and the channel, write the record.
        case finish(Outcome, reason: String)
        /// The cloud leg said nothing within `fallback_after_ms`: cancel it, ring the mesh.
        case fallBackToMesh(reason: String)
        /// The chain's current target rang its `ring_s` without answering: ring the next.
        case nextInChain
        /// Time to look at both legs' media (`mediaActivity` takes what the bridge saw).
        case checkMedia
        /// Re-INVITE the station with this direction: a hold or resume of the far leg relayed
        /// (`BridgedCall+StationHold.swift`); `stationOffer(_:sent:at:)` says whether it went.
        case offerToStation(SDPDirection)
    }

    public let channel: Int
    public private(set) var direction: Direction
    public private(set) var phase: Phase = .routing
    public private(set) var fork: ForkedInvite
    /// The branch whose answer the caller got.
    public private(set) var connectedBranch: Int?
    /// The branch whose early media the caller hears, if any.
    public private(set) var earlyBranch: Int?
    public private(set) var outcome: Outcome?
    private var rangInbound = false
    private var callerGone = false
    public let timing: Timing
    /// The call's timers (deadlines, seconds on the router's monotonic clock).
    public internal(set) var timers = CallTimers()
    /// Mesh chains ring one target at a time, each for `ring_s`, within `max_call_s` overall.
    public internal(set) var chain: Bool
    /// Whether the callee's side said anything yet (a 100 counts; it cancels the mesh fallback),
    /// and whether it rang.
    public internal(set) var heardFromCallee = false
    public internal(set) var calleeRang = false
    var inactivity: MediaInactivity?
    /// Holds of the far leg relayed to the station.
    public internal(set) var stationHold = StationHold()

    public init(channel: Int, direction: Direction, branches: Int, chain: Bool = false, timing: Timing = Timing()) {
        self.channel = channel
        self.direction = direction
        self.fork = ForkedInvite(branchCount: branches)
        self.chain = chain
        self.timing = timing
    }

    // MARK: Outbound legs

    /// A provisional response on `branch`; `early` when it carried a session description.
    public mutating func outboundRinging(_ branch: Int, early: Bool) -> [Action] {
        guard phase == .routing, !callerGone else { return [] }
        heard(rang: true)
        var actions: [Action] = []
        for action in fork.response(early ? 183 : 180, on: branch) {
            guard case .relay = action else { continue }
            if early, earlyBranch == nil {
                earlyBranch = branch
                actions.append(.earlyMedia(branch: branch))
                actions.append(.ringInbound(earlyBranch: branch))
                rangInbound = true
            } else if !rangInbound {
                rangInbound = true
                actions.append(.ringInbound(earlyBranch: nil))
            }
        }
        return actions
    }

    /// A 2xx on `branch`, at `now`: the ring timers stop, the duration limit and the media
    /// supervision start.
    public mutating func outboundAnswered(_ branch: Int, at now: Double) -> [Action] {
        if phase != .routing || callerGone {
            // Answered after another branch won, or after the caller went: a dialog nobody wants
            // (RFC 3261 §16.7 step 5 lets every 2xx through; the UAC tears the extra ones down).
            _ = fork.response(200, on: branch)
            return [.hangUpOutbound(branch: branch)]
        }
        var actions: [Action] = []
        for action in fork.response(200, on: branch) {
            switch action {
            case .relay(let relayed, let status) where relayed == branch && (200...299).contains(status):
                phase = .connected
                connectedBranch = branch
                connected(at: now)
                actions.append(.answerInbound(branch: branch))
            case .cancel(let branches, let reason):
                actions.append(.cancel(branches: branches, reason: reason))
            default:
                continue
            }
        }
        return actions
    }

    /// A final failure on `branch` (a status ≥ 300; 408 for a timeout, 503 for a transport failure).
    public mutating func outboundFailed(_ branch: Int, status: Int) -> [Action] {
        guard phase == .routing else { return [] }
        var actions: [Action] = []
        for action in fork.response(status, on: branch) {
            switch action {
            case .cancel(let branches, let reason):
                actions.append(.cancel(branches: branches, reason: reason))
            case .relay(_, let best) where best >= 300:
                actions.append(contentsOf: end(failing: best))
            case .reply(let own, _):
                actions.append(contentsOf: end(failing: own))
            default:
                continue
            }
        }
        return actions
    }

    /// The connected branch sent BYE (or its flow died).
    public mutating func outboundEnded(_ branch: Int) -> [Action] {
        guard phase == .connected, branch == connectedBranch else { return [] }
        phase = .ended
        outcome = .answered
        return [.hangUpInbound, .finish(.answered, reason: direction.fromLegacy ? "\(direction.farParty) hung up" : "legacy station hung up")]
    }

    // MARK: The caller

    /// The caller cancelled before an answer (it has had its 487 from the user agent).
    public mutating func inboundCancelled() -> [Action] {
        guard phase == .routing else { return [] }
        callerGone = true
        phase = .ended
        outcome = .cancelled
        var actions: [Action] = []
        for action in fork.callerCancel() {
            if case .cancel(let branches, let reason) = action { actions.append(.cancel(branches: branches, reason: reason)) }
        }
        actions.append(.finish(.cancelled, reason: "caller hung up before the answer"))
        return actions
    }

    /// The caller sent BYE after the answer.
    public mutating func inboundEnded() -> [Action] {
        switch phase {
        case .connected:
            phase = .ended
            outcome = .answered
            return [.hangUpOutbound(branch: connectedBranch!),
                    .finish(.answered, reason: direction.fromLegacy ? "legacy station hung up" : "\(direction.farParty) hung up")]
        case .routing:
            return inboundCancelled()
        case .ended:
            return []
        }
    }

    // MARK: Rerouting (the mesh fallback, chain ringing)

    /// Starts over with new outbound branches while the caller waits: the cloud leg gave no sign
    /// of life and the call goes to the mesh, or a chain moves to its next target. The old
    /// branches are the router's to cancel; the caller keeps what it had (its 180 is not repeated).
    /// A chain's overall limit (`max_call_s`) replaces the single ring time when the call
    /// becomes one.
    public mutating func reroute(to direction: Direction, branches: Int, chain: Bool = false, at now: Double) -> Bool {
        guard phase == .routing, !callerGone else { return false }
        self.direction = direction
        fork = ForkedInvite(branchCount: branches)
        earlyBranch = nil
        timers.stop(.fallback)
        if chain, !self.chain { timers.start(.ring, after: timing.maxCall, now: now) }
        self.chain = chain
        return true
    }

    // MARK: Timers and the gateway itself

    /// Nobody answered within the channel's ring time.
    mutating func ringTimeout() -> [Action] {
        guard phase == .routing else { return [] }
        var actions: [Action] = []
        for action in fork.ringTimerFired() {
            switch action {
            case .cancel(let branches, let reason): actions.append(.cancel(branches: branches, reason: reason))
            case .reply(let status, _): actions.append(contentsOf: end(failing: status, reason: "no answer within the ring time"))
            default: continue
            }
        }
        return actions
    }

    /// The call reached the channel's `max_call_s` (product limit: 10 minutes).
    mutating func durationLimit() -> [Action] {
        guard phase == .connected else { return [] }
        phase = .ended
        outcome = .answered
        return [.hangUpInbound, .hangUpOutbound(branch: connectedBranch!), .finish(.answered, reason: "duration limit")]
    }

    /// A leg that should be sending has sent no RTP or RTCP for the supervision time: the far
    /// end vanished (a phone unplugged, a client gone from the network without BYE). Both legs
    /// get BYE with Q.850 cause 102, "recovery on timer expiry", and the channel is free.
    mutating func mediaTimeout(silentLeg: String, seconds: Int) -> [Action] {
        guard phase == .connected else { return [] }
        phase = .ended
        outcome = .answered
        let text = "no media from the \(silentLeg) for \(seconds) s"
        return [.hangUpBoth(reason: "Q.850;cause=102;text=\"\(text)\""), .finish(.answered, reason: text)]
    }

    /// The gateway gives up on the call (shutdown, a media failure): everything ends.
    public mutating func abort(status: Int, reason: String) -> [Action] {
        switch phase {
        case .routing:
            var actions: [Action] = []
            let pending = fork.pendingBranches
            if !pending.isEmpty { actions.append(.cancel(branches: pending, reason: .callerGone)) }
            callerGone = true
            return actions + end(failing: status, reason: reason)
        case .connected:
            phase = .ended
            outcome = .answered
            return [.hangUpInbound, .hangUpOutbound(branch: connectedBranch!), .finish(.answered, reason: reason)]
        case .ended:
            return []
        }
    }

    private mutating func end(failing status: Int, reason: String? = nil) -> [Action] {
        phase = .ended
        let mapped = GatewayFailureMapping.inboundStatus(forOutbound: status)
        let outcome = GatewayFailureMapping.outcome(forOutbound: status)
        self.outcome = outcome
        return [.rejectInbound(status: mapped), .finish(outcome, reason: reason ?? "\(status) from the \(direction.fromLegacy ? (direction.overMesh ? "mesh" : "cloud") : "legacy side")")]
    }
}

/// What the caller hears when the callee's side fails. The gateway is a user agent on both sides:
/// it passes on what tells the caller something (busy, not found, declined, no answer) and turns
/// what concerns only the gateway (its own credentials refused, a server error behind it) into
/// 503, so that a legacy intercom server shows "service unavailable" rather than a wrong reason.
public enum GatewayFailureMapping {
    public static func inboundStatus(forOutbound status: Int) -> Int {
        switch status {
        case 404, 410, 480, 484, 486, 487, 488, 600, 603, 604, 606: status
        case 408: 480  // nobody answered in time
        case 401, 403, 407: 503  // the gateway's own credentials: not the caller's business
        case 300...399: 480  // redirects are the cloud's to follow, not the legacy station's
        case 400...499: 480
        case 500...599: 503
        default: 603
        }
    }

    public static func outcome(forOutbound status: Int) -> BridgedCall.Outcome {
        switch status {
        case 486, 600: .busy
        case 603, 606: .declined
        case 408, 480: .missed
        case 487: .cancelled
        default: .failed
        }
    }
}

extension GatewayCallRecord.Direction {
    /// The record's name for a call's direction (the same words).
    public init(_ direction: BridgedCall.Direction) {
        switch direction {
        case .legacyToCloud: self = .legacyToCloud
        case .cloudToLegacy: self = .cloudToLegacy
        case .legacyToMesh: self = .legacyToMesh
        case .meshToLegacy: self = .meshToLegacy
        }
    }
}
