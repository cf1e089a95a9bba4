public import SIP

/// The timers of one INVITE session as one table of deadlines (seconds on a monotonic clock the
/// driver chooses), driven like the transactions are: the agent says what happened and when,
/// sleeps until `nextDeadline`, and carries out what `fire` says is due. A manual clock drives
/// every rule here in the tests (`SIPCallTimersTests`).
public struct SIPCallTimers: Sendable, Equatable {
    public enum Timer: String, Sendable, Hashable, CaseIterable {
        /// A softphone's automatic answer (`Role.softphone(answerAfter:)`).
        case answer
        /// Our 2xx to an INVITE or re-INVITE, resent until its ACK (RFC 3261 §13.3.1.4).
        case okRetransmit
        /// The call's duration limit (`maxCallDuration`).
        case duration
        /// A back-to-back leg's owner has this long to answer a mid-call offer.
        case offerAnswer
        /// RFC 4028: our refresh is due, or the peer's refresh is overdue.
        case session
        /// Our re-INVITE again: after glare (491, or 500 with Retry-After; RFC 3261 §14.1), or a
        /// refresh or offer that waits for the peer's exchange to end.
        case reinviteRetry
    }

    /// What is due, for the agent to carry out.
    public enum Due: Sendable, Equatable {
        case answer
        /// Send the 2xx again (the next one is already scheduled).
        case retransmitOK
        /// 64·T1 without ACK: the call ends with BYE (§13.3.1.4).
        case noACK
        case durationReached
        /// The owner did not answer the mid-call offer: 500.
        case offerUnanswered
        /// We are the refresher: re-INVITE now (at half the interval, RFC 4028 §10).
        case refreshSession
        /// The peer did not refresh in time: BYE (RFC 4028 §10).
        case sessionExpired
        /// Try our re-INVITE again (`reinviteBlocked` when it still cannot go).
        case retryReinvite
    }

    public private(set) var deadlines: [Timer: Double] = [:]
    /// RFC 3261 timer values, seconds.
    public let t1: Double
    public let t2: Double
    /// How long a 2xx waits for its ACK: 64·T1 (Timer H's value).
    public let okGiveUpAfter: Double
    private var okInterval = 0.0
    private var okGivesUpAt = 0.0
    private var sessionRefreshes = false
    private var reinviteAttemptsLeft = 0
    private var reinviteRetryInterval = 0.25

    public init(t1: Double = 0.5, t2: Double = 4, okGiveUpAfter: Double? = nil) {
        self.t1 = t1
        self.t2 = t2
        self.okGiveUpAfter = okGiveUpAfter ?? 64 * t1
    }

    public var nextDeadline: Double? { deadlines.values.min() }

    // MARK: What happened

    public mutating func answer(after seconds: Double, now: Double) {
        deadlines[.answer] = now + max(0, seconds)
    }

    /// Our 2xx went out at `now`: resent after T1, doubling up to T2, given up after `okGiveUpAfter`.
    public mutating func okSent(now: Double) {
        deadlines[.answer] = nil
        okInterval = t1
        okGivesUpAt = now + okGiveUpAfter
        deadlines[.okRetransmit] = now + t1
    }

    public mutating func ackReceived() {
        deadlines[.okRetransmit] = nil
    }

    public mutating func limitDuration(to seconds: Double, now: Double) {
        deadlines[.duration] = now + max(0, seconds)
    }

    public mutating func offerPending(timeout seconds: Double, now: Double) {
        deadlines[.offerAnswer] = now + max(0, seconds)
    }

    public mutating func offerSettled() {
        deadlines[.offerAnswer] = nil
    }

    /// The session was (re)freshed at `now` under `timer`: its next deadline starts from here.
    public mutating func sessionRefreshed(_ timer: SIPSessionTimer?, now: Double) {
        guard let timer else {
            deadlines[.session] = nil
            return
        }
        let next = timer.nextDeadline
        sessionRefreshes = next.refresh
        deadlines[.session] = now + next.seconds
    }

    /// Our re-INVITE goes again `seconds` from `now`; while it cannot go (the peer's exchange is
    /// under way) it is tried every `interval`, `attempts` times in all.
    public mutating func retryReinvite(after seconds: Double, attempts: Int, every interval: Double, now: Double) {
        reinviteAttemptsLeft = max(0, attempts)
        reinviteRetryInterval = max(0.01, interval)
        deadlines[.reinviteRetry] = reinviteAttemptsLeft > 0 ? now + max(0, seconds) : nil
    }

    /// The retried re-INVITE could not go: again after the interval while attempts remain.
    /// False when it is given up.
    public mutating func reinviteBlocked(now: Double) -> Bool {
        reinviteAttemptsLeft -= 1
        guard reinviteAttemptsLeft > 0 else {
            deadlines[.reinviteRetry] = nil
            return false
        }
        deadlines[.reinviteRetry] = now + reinviteRetryInterval
        return true
    }

    /// A re-INVITE went: a retry still waiting is not needed.
    public mutating func reinviteSent() {
        deadlines[.reinviteRetry] = nil
    }

    public mutating func stopAll() {
        deadlines = [:]
    }

    // MARK: The driver's wake-up

    /// What is due at `now`, in deadline order; repeating timers are armed again.
    public mutating func fire(at now: Double) -> [Due] {
        let fired = deadlines.filter { $0.value <= now }.sorted { ($0.value, $0.key.rawValue) < ($1.value, $1.key.rawValue) }.map(\.key)
        var due: [Due] = []
        for timer in fired {
            deadlines[timer] = nil
            switch timer {
            case .answer: due.append(.answer)
            case .okRetransmit:
                if now >= okGivesUpAt {
                    due.append(.noACK)
                } else {
                    due.append(.retransmitOK)
                    okInterval = min(okInterval * 2, t2)
                    deadlines[.okRetransmit] = min(now + okInterval, okGivesUpAt)
                }
            case .duration: due.append(.durationReached)
            case .offerAnswer: due.append(.offerUnanswered)
            case .session: due.append(sessionRefreshes ? .refreshSession : .sessionExpired)
            case .reinviteRetry: due.append(.retryReinvite)
            }
        }
        return due
    }
}
