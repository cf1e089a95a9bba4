/// The INVITE server transaction of RFC 3261 §17.2.1, with the Accepted state of RFC 6026 §8.7.
///
///     Proceeding ──300-699──▶ Completed ──ACK──▶ Confirmed ──I──▶ Terminated
///         │                      └──H (no ACK)──▶ Terminated
///         └──2xx──▶ Accepted ──L──▶ Terminated
public struct ServerInviteTransaction: Sendable {
    public enum State: Sendable, Equatable { case proceeding, completed, confirmed, accepted, terminated }

    public private(set) var state: State = .proceeding
    public let request: SIPMessage
    public let reliable: Bool
    public let timers: SIPTimerSettings
    private var lastResponse: SIPMessage?
    private var retransmitInterval: Duration

    public init(request: SIPMessage, reliable: Bool, timers: SIPTimerSettings = .standard) {
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.retransmitInterval = timers.t1
    }

    /// Hands the INVITE to the TU and answers 100 Trying at once (§17.2.1: the TU may take
    /// longer than 200 ms to send a provisional response, so do not wait).
    public mutating func start() -> [SIPTransactionAction] {
        let trying = SIPResponseFactory.response(to: request, status: 100)
        lastResponse = trying
        return [.send(trying), .deliver(request)]
    }

    /// A retransmitted INVITE, or the ACK for a non-2xx final response, from the peer.
    public mutating func receive(_ message: SIPMessage) -> [SIPTransactionAction] {
        if message.requestLine?.method == .ack {
            // RFC 6026 §8.7: an ACK matching the transaction in Accepted goes to the TU (it is
            // the ACK for the 2xx, when the peer matches the RFC 2543 way).
            if state == .accepted { return [.deliver(message)] }
            guard state == .completed else { return [] }
            state = .confirmed
            return [.cancelTimer(.g), .cancelTimer(.h), .startTimer(.i, reliable ? .zero : timers.t4)]
        }
        switch state {
        case .proceeding, .completed:
            // §17.2.1: a retransmitted request gets the last response again.
            return lastResponse.map { [.send($0)] } ?? []
        case .accepted, .confirmed, .terminated:
            // RFC 6026 §8.7: INVITE retransmissions in Accepted are absorbed.
            return []
        }
    }

    /// A response from the TU.
    public mutating func respond(_ response: SIPMessage) -> [SIPTransactionAction] {
        guard let code = response.statusCode else { return [] }
        switch (state, code) {
        case (.proceeding, 100...199):
            lastResponse = response
            return [.send(response)]
        case (.proceeding, 200...299):
            state = .accepted
            lastResponse = response
            return [.send(response), .startTimer(.l, timers.transactionTimeout)]
        case (.accepted, 200...299):
            // RFC 6026 §8.7: the TU's 2xx retransmissions pass through the transaction.
            return [.send(response)]
        case (.proceeding, 300...699):
            state = .completed
            lastResponse = response
            var actions: [SIPTransactionAction] = [.send(response)]
            if !reliable { actions.append(.startTimer(.g, retransmitInterval)) }
            actions.append(.startTimer(.h, timers.transactionTimeout))
            return actions
        default:
            return []
        }
    }

    public mutating func timerFired(_ timer: SIPTransactionTimer) -> [SIPTransactionAction] {
        switch (state, timer) {
        case (.completed, .g):
            retransmitInterval = retransmitInterval.doubled(cappedAt: timers.t2)
            return (lastResponse.map { [.send($0)] } ?? []) + [.startTimer(.g, retransmitInterval)]
        case (.completed, .h):
            // No ACK came: the TU is told as for a transport failure (§17.2.1).
            state = .terminated
            return [.cancelTimer(.g), .timedOut, .terminate]
        case (.confirmed, .i), (.accepted, .l):
            state = .terminated
            return [.terminate]
        default:
            return []
        }
    }

    public mutating func transportError() -> [SIPTransactionAction] {
        guard state != .terminated else { return [] }
        state = .terminated
        return [.cancelTimer(.g), .cancelTimer(.h), .transportFailed, .terminate]
    }

    /// The final response sent, if any (for CANCEL handling: 487 only if none was).
    public var hasFinalResponse: Bool { state != .proceeding }
}
