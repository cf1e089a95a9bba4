/// The non-INVITE client transaction of RFC 3261 §17.1.2.
///
///     Trying ──1xx──▶ Proceeding ──200-699──▶ Completed ──K──▶ Terminated
///       └──────────200-699────────────────────▲
public struct ClientNonInviteTransaction: Sendable {
    public enum State: Sendable, Equatable { case trying, proceeding, completed, terminated }

    public private(set) var state: State = .trying
    public let request: SIPMessage
    public let reliable: Bool
    public let timers: SIPTimerSettings
    private var retransmitInterval: Duration

    public init(request: SIPMessage, reliable: Bool, timers: SIPTimerSettings = .standard) {
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.retransmitInterval = timers.t1
    }

    public mutating func start() -> [SIPTransactionAction] {
        var actions: [SIPTransactionAction] = [.send(request)]
        if !reliable { actions.append(.startTimer(.e, retransmitInterval)) }
        actions.append(.startTimer(.f, timers.transactionTimeout))
        return actions
    }

    public mutating func receive(_ response: SIPMessage) -> [SIPTransactionAction] {
        guard let code = response.statusCode else { return [] }
        switch (state, code) {
        case (.trying, 100...199), (.proceeding, 100...199):
            state = .proceeding
            return [.deliver(response)]
        case (.trying, 200...699), (.proceeding, 200...699):
            state = .completed
            return [.cancelTimer(.e), .cancelTimer(.f), .startTimer(.k, reliable ? .zero : timers.t4), .deliver(response)]
        default:
            // Retransmissions in Completed are absorbed (§17.1.2.2).
            return []
        }
    }

    public mutating func timerFired(_ timer: SIPTransactionTimer) -> [SIPTransactionAction] {
        switch (state, timer) {
        case (.trying, .e):
            retransmitInterval = retransmitInterval.doubled(cappedAt: timers.t2)
            return [.send(request), .startTimer(.e, retransmitInterval)]
        case (.proceeding, .e):
            // In Proceeding the interval is T2 (§17.1.2.2).
            return [.send(request), .startTimer(.e, timers.t2)]
        case (.trying, .f), (.proceeding, .f):
            state = .terminated
            return [.cancelTimer(.e), .timedOut, .terminate]
        case (.completed, .k):
            state = .terminated
            return [.terminate]
        default:
            return []
        }
    }

    public mutating func transportError() -> [SIPTransactionAction] {
        guard state == .trying || state == .proceeding else { return [] }
        state = .terminated
        return [.cancelTimer(.e), .cancelTimer(.f), .transportFailed, .terminate]
    }
}
