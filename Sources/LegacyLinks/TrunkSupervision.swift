/// Whether the legacy intercom server answers, from the OPTIONS probes sent to it (RFC 3261
/// §11: any final response shows the server alive, so does a 404 or 405; a timeout, a transport
/// failure, 408 or 503 do not). A value with no clock: it hears probe outcomes and says when the
/// state changes.
public struct TrunkSupervision: Sendable, Equatable {
    public enum State: String, Sendable, Equatable {
        case unknown, up, down
    }

    public private(set) var state = State.unknown
    /// The last answered probe's round trip.
    public private(set) var lastRoundTrip: Duration?
    public private(set) var consecutiveFailures = 0
    /// Failures in a row before the trunk is down: one lost datagram is not an outage.
    public let failuresBeforeDown: Int

    public init(failuresBeforeDown: Int = 2) {
        self.failuresBeforeDown = failuresBeforeDown
    }

    /// A final response to a probe. Returns the new state when it changed.
    public mutating func answered(status: Int, roundTrip: Duration) -> State? {
        if status == 408 || status == 503 { return failed() }
        lastRoundTrip = roundTrip
        consecutiveFailures = 0
        return change(to: .up)
    }

    /// No answer (Timer F), a transport failure, or a 408/503. Returns the new state when it changed.
    public mutating func failed() -> State? {
        consecutiveFailures += 1
        return consecutiveFailures >= failuresBeforeDown ? change(to: .down) : nil
    }

    private mutating func change(to new: State) -> State? {
        guard new != state else { return nil }
        state = new
        return new
    }
}
