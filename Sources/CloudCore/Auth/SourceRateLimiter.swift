/// Per-source token buckets for requests that carry no valid credentials (Kamailio's pike
/// module does the same job): each source IP may send `rate` such requests per second with
/// bursts up to `burst`; beyond that its requests are dropped (UDP) or answered 503 — and
/// other sources are not affected. Pure value on an injected clock (seconds).
public struct SourceRateLimiter: Sendable {
    public var rate: Double
    public var burst: Double
    private var buckets: [String: (tokens: Double, updated: Double)] = [:]
    private var lastSweep: Double = 0

    public init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Takes a token for `source`; false when the source is over its limit.
    public mutating func allow(_ source: String, now: Double) -> Bool {
        sweep(now: now)
        var bucket = buckets[source] ?? (burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        buckets[source] = bucket
        return allowed
    }

    /// Forgets full buckets now and then, so that a scan from many addresses does not grow memory.
    private mutating func sweep(now: Double) {
        guard now - lastSweep >= 10 else { return }
        lastSweep = now
        buckets = buckets.filter { min(burst, $0.value.tokens + (now - $0.value.updated) * rate) < burst }
    }
}
