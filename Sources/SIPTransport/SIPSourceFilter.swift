public import NetworkAddress
public import NIOCore

/// Who may send an endpoint requests (issue 16): the gateway's legacy side serves its intercom
/// server and its stations, not whoever is on the LAN (`[legacy] allow`). A request from
/// anywhere else gets 403 — at most `answersPerSecond` of them, all sources together, so that a
/// flood gets nothing back — and a stream connection from there is refused at accept. A value;
/// what is refused is reported once a minute (`report`).
public struct SIPSourceFilter: Sendable {
    public enum Verdict: Sendable, Equatable {
        case allow
        /// Answer 403.
        case refuse
        /// Past the answer rate: nothing goes back.
        case drop
    }

    public let allowed: [IPPrefix]
    public var answersPerSecond: Double { answers.perSecond }
    private var answers: AnswerRate
    private var answered = 0
    private var dropped = 0
    /// A few of the refused sources, for the report.
    private var examples: [String] = []
    private var lastReport: Double?

    public init(allowed: [IPPrefix], answersPerSecond: Double = 10) {
        self.allowed = allowed
        answers = AnswerRate(perSecond: answersPerSecond)
    }

    public func allows(_ address: SocketAddress) -> Bool {
        allowed.contains { $0.contains(address) }
    }

    /// The verdict on a request from `address` at `now` (seconds, any monotonic clock).
    public mutating func check(_ address: SocketAddress, now: Double) -> Verdict {
        guard !allows(address) else { return .allow }
        if examples.count < 4, let text = address.ipAddress, !examples.contains(text) { examples.append(text) }
        guard answers.take(now: now) else {
            dropped += 1
            return .drop
        }
        answered += 1
        return .refuse
    }

    /// Refusals since the last report, at most once a minute.
    public mutating func report(now: Double) -> String? {
        guard answered + dropped > 0 else { return nil }
        if let last = lastReport, now - last < 60 { return nil }
        let text = "refused \(answered + dropped) requests from sources not in the allow list (\(answered) answered 403, \(dropped) dropped), "
            + "from \(examples.joined(separator: ", "))\(examples.count == 4 ? " and others" : "")"
        answered = 0
        dropped = 0
        examples = []
        lastReport = now
        return text
    }
}
