/// The INVITE client transaction of RFC 3261 §17.1.1, with the Accepted state of RFC 6026 §8.4.
///
///     Calling ──1xx──▶ Proceeding ──300-699──▶ Completed ──D──▶ Terminated
///        │  └──────────300-699──────────────────▲
///        └──2xx (from Calling or Proceeding)──▶ Accepted ──M──▶ Terminated
public struct ClientInviteTransaction: Sendable {
    public enum State: Sendable, Equatable { case calling, proceeding, completed, accepted, terminated }

    public private(set) var state: State = .calling
    public let request: SIPMessage
    public let reliable: Bool
    public let timers: SIPTimerSettings
    private var retransmitInterval: Duration
    /// The ACK for a 3xx–6xx, kept to answer retransmissions of that response.
    private var ack: SIPMessage?

    public init(request: SIPMessage, reliable: Bool, timers: SIPTimerSettings = .standard) {
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.retransmitInterval = timers.t1
    }

    /// Sends the INVITE; timer A only on unreliable transports (§17.1.1.2).
    public mutating func start() -> [SIPTransactionAction] {
        var actions: [SIPTransactionAction] = [.send(request)]
        if !reliable { actions.append(.startTimer(.a, retransmitInterval)) }
        actions.append(.startTimer(.b, timers.transactionTimeout))
        return actions
    }

    public mutating func receive(_ response: SIPMessage) -> [SIPTransactionAction] {
        guard let code = response.statusCode else { return [] }
        switch (state, code) {
        case (.calling, 100...199), (.proceeding, 100...199):
            let wasCalling = state == .calling
            state = .proceeding
            // Entering Proceeding stops retransmissions (§17.1.1.2).
            return (wasCalling && !reliable ? [.cancelTimer(.a)] : []) + [.deliver(response)]
        case (.calling, 200...299), (.proceeding, 200...299):
            state = .accepted
            return [.cancelTimer(.a), .cancelTimer(.b), .startTimer(.m, timers.transactionTimeout), .deliver(response)]
        case (.calling, 300...699), (.proceeding, 300...699):
            state = .completed
            let ack = SIPACKFactory.ackForNon2xx(request: request, response: response)
            self.ack = ack
            return [
                .cancelTimer(.a), .cancelTimer(.b), .send(ack),
                .startTimer(.d, reliable ? .zero : timers.timerDUnreliable), .deliver(response),
            ]
        case (.completed, 300...699):
            // A retransmitted final response: ACK again, not passed up (§17.1.1.2).
            return ack.map { [.send($0)] } ?? []
        case (.accepted, 200...299):
            // RFC 6026 §8.4: further 2xx (retransmissions or other forks) go to the TU.
            return [.deliver(response)]
        default:
            return []
        }
    }

    public mutating func timerFired(_ timer: SIPTransactionTimer) -> [SIPTransactionAction] {
        switch (state, timer) {
        case (.calling, .a):
            retransmitInterval = retransmitInterval * 2
            return [.send(request), .startTimer(.a, retransmitInterval)]
        case (.calling, .b), (.proceeding, .b):
            state = .terminated
            return [.cancelTimer(.a), .timedOut, .terminate]
        case (.completed, .d), (.accepted, .m):
            state = .terminated
            return [.terminate]
        default:
            return []
        }
    }

    public mutating func transportError() -> [SIPTransactionAction] {
        guard state == .calling || state == .proceeding else { return [] }
        state = .terminated
        return [.cancelTimer(.a), .cancelTimer(.b), .transportFailed, .terminate]
    }
}
