/// Per-source token buckets for requests that carry no valid credentials (Kamailio's pike
/// module does the same job): each source IP may send `rate` such requests per second with
/// bursts up to `burst`; beyond that its requests are dropped (UDP) or answered 503 — and
/// other sources are not affected. Pure value on an injected clock (seconds).
public struct SourceRateLimiter: Sendable {
    public var rate: Double
    public var burst: Double
    private var buckets: [String: (tokens: Double, updated: Double)] = [:]
    private var lastSweep: Double = 0
    /// Sources tracked at most (memory stays bounded under a flood from spoofed addresses).
    public var maxSources = 100_000

    public init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Takes a token for `source`; false when the source is over its limit.
    public mutating func allow(_ source: String, now: Double) -> Bool {
        sweep(now: now)
        if buckets[source] == nil, buckets.count >= maxSources {
            // Spoofed UDP sources without end: sweep early; still full, strangers wait.
            sweep(now: now, force: true)
            guard buckets.count < maxSources else { return false }
        }
        var bucket = buckets[source] ?? (burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        buckets[source] = bucket
        return allowed
    }

    /// Whether `source` has no token left at `now`, without taking one: checked before work that
    /// costs (an ECDSA verify of a Bearer token, a digest), so that a source past its limit gets
    /// no more of it.
    public func isExhausted(_ source: String, now: Double) -> Bool {
        guard let bucket = buckets[source] else { return false }
        return min(burst, bucket.tokens + (now - bucket.updated) * rate) < 1
    }

    /// Forgets full buckets now and then, so that a scan from many addresses does not grow memory.
    private mutating func sweep(now: Double, force: Bool = false) {
        guard force || now - lastSweep >= 10 else { return }
        lastSweep = now
        buckets = buckets.filter { min(burst, $0.value.tokens + (now - $0.value.updated) * rate) < burst }
    }
}
