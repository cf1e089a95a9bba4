/// A bound on log lines an outsider can cause (issue 16): malformed messages, broken
/// connections, refused requests. The first `perMinute` of a kind in a minute are logged; the
/// rest are counted, and the count is said with the first line of the next minute. A value on an
/// injected clock (seconds).
public struct LogBudget: Sendable {
    public let perMinute: Int
    private var windowStart: Double?
    private var used = 0
    private var suppressed = 0

    public init(perMinute: Int = 20) {
        self.perMinute = max(1, perMinute)
    }

    /// Whether one more line may go out at `now`, and how many were held back in the minute
    /// that just ended (said once, with the first line of the new one).
    public mutating func take(now: Double) -> (log: Bool, heldBack: Int) {
        var heldBack = 0
        if windowStart.map({ now - $0 >= 60 }) ?? true {
            heldBack = suppressed
            windowStart = now
            used = 0
            suppressed = 0
        }
        guard used < perMinute else {
            suppressed += 1
            return (false, heldBack)
        }
        used += 1
        return (true, heldBack)
    }
}
