/// The non-INVITE server transaction of RFC 3261 §17.2.2.
///
///     Trying ──1xx──▶ Proceeding ──200-699──▶ Completed ──J──▶ Terminated
///       └──────────200-699────────────────────▲
public struct ServerNonInviteTransaction: Sendable {
    public enum State: Sendable, Equatable { case trying, proceeding, completed, terminated }

    public private(set) var state: State = .trying
    public let request: SIPMessage
    public let reliable: Bool
    public let timers: SIPTimerSettings
    private var lastResponse: SIPMessage?

    public init(request: SIPMessage, reliable: Bool, timers: SIPTimerSettings = .standard) {
        self.request = request
        self.reliable = reliable
        self.timers = timers
    }

    public mutating func start() -> [SIPTransactionAction] {
        [.deliver(request)]
    }

    /// A retransmission of the request: absorbed in Trying, answered with the last response after.
    public mutating func receive(_ message: SIPMessage) -> [SIPTransactionAction] {
        switch state {
        case .proceeding, .completed: lastResponse.map { [.send($0)] } ?? []
        case .trying, .terminated: []
        }
    }

    public mutating func respond(_ response: SIPMessage) -> [SIPTransactionAction] {
        guard let code = response.statusCode else { return [] }
        switch (state, code) {
        case (.trying, 100...199), (.proceeding, 100...199):
            state = .proceeding
            lastResponse = response
            return [.send(response)]
        case (.trying, 200...699), (.proceeding, 200...699):
            state = .completed
            lastResponse = response
            return [.send(response), .startTimer(.j, reliable ? .zero : timers.transactionTimeout)]
        default:
            return []
        }
    }

    public mutating func timerFired(_ timer: SIPTransactionTimer) -> [SIPTransactionAction] {
        guard state == .completed, timer == .j else { return [] }
        state = .terminated
        return [.terminate]
    }

    public mutating func transportError() -> [SIPTransactionAction] {
        guard state != .terminated else { return [] }
        state = .terminated
        return [.transportFailed, .terminate]
    }
}
