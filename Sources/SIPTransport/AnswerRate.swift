/// How many refusals a second an endpoint sends, all sources together (a token bucket on an
/// injected clock): past it a refused request gets nothing back, so that a flood — possibly from
/// spoofed UDP sources — is not answered, let alone amplified. Shared by `SIPSourceFilter` and
/// `SIPTransactionAdmission`.
struct AnswerRate: Sendable {
    let perSecond: Double
    private var tokens: Double
    private var lastRefill: Double?

    init(perSecond: Double) {
        self.perSecond = max(0, perSecond)
        tokens = max(1, perSecond)
    }

    /// Takes one answer at `now` (seconds); false when none is left.
    mutating func take(now: Double) -> Bool {
        let elapsed = lastRefill.map { max(0, now - $0) } ?? 0
        lastRefill = now
        tokens = min(max(1, perSecond), tokens + elapsed * perSecond)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
