/// Timer values of RFC 3261 §17 / Table 4 and the RFC 6026 additions, for one transaction.
public struct SIPTimerSettings: Sendable, Hashable {
    /// RTT estimate (default 500 ms).
    public var t1: Duration = .milliseconds(500)
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    public var t2: Duration = .seconds(4)
    /// Longest time a message stays in the network (5 s).
    public var t4: Duration = .seconds(5)
    /// Timer D on unreliable transports: "at least 32 s".
    public var timerDUnreliable: Duration = .seconds(32)

    public init() {}

    public init(t1: Duration, t2: Duration, t4: Duration) {
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self.timerDUnreliable = max(t1 * 64, .zero)
    }

    public static let standard = SIPTimerSettings()

    /// 64·T1: timers B, F, H, J (unreliable), L and M.
    public var transactionTimeout: Duration { t1 * 64 }
}

/// The timers of RFC 3261 §17 (A–K) and RFC 6026 (L, M).
public enum SIPTransactionTimer: String, Hashable, Sendable, CaseIterable {
    /// INVITE client: request retransmission (unreliable transports).
    case a = "A"
    /// INVITE client: transaction timeout.
    case b = "B"
    /// INVITE client: wait for response retransmissions in Completed.
    case d = "D"
    /// Non-INVITE client: request retransmission.
    case e = "E"
    /// Non-INVITE client: transaction timeout.
    case f = "F"
    /// INVITE server: final response retransmission (unreliable transports).
    case g = "G"
    /// INVITE server: wait for ACK.
    case h = "H"
    /// INVITE server: absorb ACK retransmissions in Confirmed.
    case i = "I"
    /// Non-INVITE server: absorb request retransmissions in Completed.
    case j = "J"
    /// Non-INVITE client: absorb response retransmissions in Completed.
    case k = "K"
    /// INVITE server, RFC 6026 §8.7: stay in Accepted to absorb INVITE retransmissions.
    case l = "L"
    /// INVITE client, RFC 6026 §8.4: stay in Accepted to pass on further 2xx.
    case m = "M"
}

/// What a transaction asks its driver to do. Transactions are values: they never touch a
/// socket or a clock themselves.
public enum SIPTransactionAction: Sendable {
    /// Send to the peer over the transaction's flow.
    case send(SIPMessage)
    /// Hand to the transaction user: a response (client side), or a request or ACK (server side).
    case deliver(SIPMessage)
    case startTimer(SIPTransactionTimer, Duration)
    case cancelTimer(SIPTransactionTimer)
    /// Timer B or F fired: the TU acts as for a 408 (RFC 3261 §8.1.3.1).
    case timedOut
    /// The transport failed to send: the TU acts as for a 503 (RFC 3261 §8.1.3.1).
    case transportFailed
    /// The transaction is over; the driver forgets it.
    case terminate
}

extension Array where Element == SIPTransactionAction {
    /// The messages a list of actions sends (tests and logs).
    public var sentMessages: [SIPMessage] {
        compactMap { if case .send(let message) = $0 { message } else { nil } }
    }

    public var deliveredMessages: [SIPMessage] {
        compactMap { if case .deliver(let message) = $0 { message } else { nil } }
    }

    public var terminates: Bool {
        contains { if case .terminate = $0 { true } else { false } }
    }
}

extension Duration {
    /// Doubles `self`, capped at `cap` (the backoff of timers A, E and G).
    func doubled(cappedAt cap: Duration?) -> Duration {
        let next = self * 2
        guard let cap else { return next }
        return next > cap ? cap : next
    }
}

/// What the four transaction machines share, so that one driver (or a test clock) runs them.
public protocol SIPTransactionMachine: Sendable {
    var request: SIPMessage { get }
    var reliable: Bool { get }
    mutating func start() -> [SIPTransactionAction]
    /// A message from the peer: a response (client side) or a retransmitted request or ACK
    /// (server side).
    mutating func receive(_ message: SIPMessage) -> [SIPTransactionAction]
    mutating func timerFired(_ timer: SIPTransactionTimer) -> [SIPTransactionAction]
    mutating func transportError() -> [SIPTransactionAction]
}

/// The server side also takes the transaction user's responses.
public protocol SIPServerTransactionMachine: SIPTransactionMachine {
    mutating func respond(_ response: SIPMessage) -> [SIPTransactionAction]
    /// A final response has gone out (or the transaction ended): a CANCEL is too late (§9.2).
    var hasFinalResponse: Bool { get }
}

extension ClientInviteTransaction: SIPTransactionMachine {}
extension ClientNonInviteTransaction: SIPTransactionMachine {}
extension ServerInviteTransaction: SIPServerTransactionMachine {}
extension ServerNonInviteTransaction: SIPServerTransactionMachine {
    public var hasFinalResponse: Bool { state == .completed || state == .terminated }
}
