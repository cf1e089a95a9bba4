/// When to try the cloud again after a failed connection or registration: exponential backoff
/// with full jitter (RFC 5626 §4.5 asks for a randomized wait that grows with failures, up to a
/// ceiling), so that many gateways cut off together do not come back together.
public struct ReconnectBackoff: Sendable, Equatable {
    public var base: Duration
    public var ceiling: Duration
    public private(set) var failures = 0

    /// RFC 5626 §4.5 suggests a base of 30 s (60 s when every flow failed) and a ceiling of 1800 s;
    /// a gateway on a LAN uses shorter values by configuration.
    public init(base: Duration = .seconds(30), ceiling: Duration = .seconds(1800)) {
        self.base = base
        self.ceiling = ceiling
    }

    /// Records a failure and returns how long to wait: uniformly random in
    /// [½·min(ceiling, base·2^(failures−1)), min(ceiling, base·2^(failures−1))].
    public mutating func nextDelay<G: RandomNumberGenerator>(using generator: inout G) -> Duration {
        failures += 1
        let exponent = min(failures - 1, 30)
        let upper = min(ceiling, base * (1 << exponent))
        let upperNanoseconds = Self.nanoseconds(upper)
        let low = upperNanoseconds / 2
        return .nanoseconds(Int64.random(in: low...max(low, upperNanoseconds), using: &generator))
    }

    /// A successful registration starts the count again.
    public mutating func reset() {
        failures = 0
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
