import CloudUplink
import Testing

@Suite("Reconnect backoff")
struct ReconnectBackoffTests {
    struct Counter: RandomNumberGenerator {
        var state: UInt64 = 1
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state
        }
    }

    @Test func delaysGrowWithinJitteredBoundsUpToTheCeiling() {
        var backoff = ReconnectBackoff(base: .seconds(1), ceiling: .seconds(30))
        var generator = Counter()
        var uppers: [Duration] = []
        for failure in 1...10 {
            let upper = min(Duration.seconds(30), .seconds(1) * (1 << (failure - 1)))
            let delay = backoff.nextDelay(using: &generator)
            #expect(delay >= upper / 2 && delay <= upper, "failure \(failure): \(delay) outside [\(upper / 2), \(upper)]")
            uppers.append(upper)
        }
        #expect(uppers.last == .seconds(30))
        backoff.reset()
        #expect(backoff.nextDelay(using: &generator) <= .seconds(1))
    }

    @Test func jitterSpreadsGatewaysApart() {
        var generator = Counter()
        var delays = Set<Duration>()
        for _ in 0..<20 {
            var backoff = ReconnectBackoff(base: .seconds(10), ceiling: .seconds(60))
            delays.insert(backoff.nextDelay(using: &generator))
        }
        #expect(delays.count > 15)
    }
}
