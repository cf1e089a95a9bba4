/// How many active server transactions an endpoint keeps, per source address and in all (issue 16).
///
/// A transaction is active while it waits for its final response (a request the TU dropped, one
/// still ringing) or resends a non-2xx final response until the ACK (RFC 3261 §17.2.1 Timer G,
/// up to 32 s: a flooder never ACKs); a flood of 2,000 INVITEs a second would keep some 64,000
/// of them, each resending. Settled ones (answered non-INVITE, acknowledged INVITE) only absorb
/// retransmissions until their timer ends them and do not count: a legitimate source at hundreds
/// of calls a second holds a handful of active ones. Past a cap, a new request is answered
/// 503 with Retry-After (RFC 3261 §21.5.4) at most `answersPerSecond` times a second, all sources
/// together, and dropped beyond that: a flood gets next to nothing back. A value on an injected
/// clock; what was refused is reported once a minute (`report`).
public struct SIPTransactionAdmission: Sendable {
    public struct Limits: Sendable, Equatable {
        public var maxTransactions: Int
        public var maxPerSource: Int
        public var answersPerSecond: Double

        public init(maxTransactions: Int = 8192, maxPerSource: Int = 512, answersPerSecond: Double = 10) {
            self.maxTransactions = max(1, maxTransactions)
            self.maxPerSource = max(1, maxPerSource)
            self.answersPerSecond = max(0, answersPerSecond)
        }
    }

    public enum Verdict: Sendable, Equatable {
        case admit
        /// Answer 503 with Retry-After, statelessly.
        case refuse
        /// Past the answer rate: nothing goes back.
        case drop
    }

    public let limits: Limits
    public private(set) var total = 0
    private var perSource: [String: Int] = [:]
    private var answers: AnswerRate
    private var refusedCount = 0
    private var droppedCount = 0
    private var busiest: [String: Int] = [:]
    private var lastReport: Double?

    public init(limits: Limits) {
        self.limits = limits
        answers = AnswerRate(perSecond: limits.answersPerSecond)
    }

    public func count(from source: String) -> Int { perSource[source] ?? 0 }

    /// The verdict on a new request from `source` at `now` (seconds, monotonic).
    public mutating func check(_ source: String, now: Double) -> Verdict {
        if total < limits.maxTransactions, count(from: source) < limits.maxPerSource { return .admit }
        if busiest.count < 4 || busiest[source] != nil { busiest[source, default: 0] += 1 }
        guard answers.take(now: now) else {
            droppedCount += 1
            return .drop
        }
        refusedCount += 1
        return .refuse
    }

    public mutating func opened(_ source: String) {
        total += 1
        perSource[source, default: 0] += 1
    }

    public mutating func closed(_ source: String) {
        guard let count = perSource[source] else { return }
        total = max(0, total - 1)
        perSource[source] = count > 1 ? count - 1 : nil
    }

    public mutating func reset() {
        total = 0
        perSource = [:]
    }

    /// Refusals since the last report, at most once a minute.
    public mutating func report(now: Double) -> String? {
        guard refusedCount + droppedCount > 0 else { return nil }
        if let last = lastReport, now - last < 60 { return nil }
        let sources = busiest.sorted { $0.value > $1.value }.map { "\($0.key) (\($0.value))" }.joined(separator: ", ")
        let text = "refused \(refusedCount + droppedCount) requests past the transaction limits (\(limits.maxPerSource) per source, "
            + "\(limits.maxTransactions) in all; \(refusedCount) answered 503, \(droppedCount) dropped), from \(sources)"
        refusedCount = 0
        droppedCount = 0
        busiest = [:]
        lastReport = now
        return text
    }
}
