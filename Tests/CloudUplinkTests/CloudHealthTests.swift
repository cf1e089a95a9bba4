import CloudUplink
import Testing

/// The uplink's health on a simulated clock: up while anything arrives, degraded after silence
/// or a timed-out transaction, down within 3 s of silence; probes only when the flow is quiet.
@Suite("Cloud health")
struct CloudHealthTests {
    static func ms(_ value: Int) -> Duration { .milliseconds(value) }

    @Test func silenceTurnsADeadUplinkDownWithinThreeSeconds() {
        var health = CloudHealth()
        #expect(health.state == .down, "nothing heard yet")
        #expect(health.heard(at: Self.ms(0)) == .up)
        #expect(health.tick(at: Self.ms(1000)) == nil)
        #expect(health.tick(at: Self.ms(1500)) == .degraded)
        #expect(health.tick(at: Self.ms(2000)) == nil)
        #expect(health.tick(at: Self.ms(2500)) == .down, "the cut is noticed 2.5 s after the last sign of life")
        #expect(health.tick(at: Self.ms(9000)) == nil)
        #expect(health.heard(at: Self.ms(9100)) == .up, "back as soon as anything arrives")
    }

    @Test func probesGoOnlyWhenTheFlowIsQuietAndAtMostOncePerInterval() {
        var health = CloudHealth()
        _ = health.heard(at: Self.ms(0))
        let due = [500, 1000, 1500, 2000].map { health.probeDue(at: Self.ms($0)) }
        #expect(due == [false, true, false, true], "one probe per interval of silence")
        // Traffic flows: no probe while it does.
        var probes = 0
        for t in stride(from: 2100, through: 5000, by: 200) {
            _ = health.heard(at: Self.ms(t))
            if health.probeDue(at: Self.ms(t + 100)) { probes += 1 }
        }
        #expect(probes == 0)
    }

    @Test func aTimedOutTransactionDegradesAndAFailedFlowIsDownAtOnce() {
        var health = CloudHealth()
        _ = health.heard(at: Self.ms(0))
        #expect(health.transactionTimedOut(at: Self.ms(300)) == .degraded)
        #expect(health.transactionTimedOut(at: Self.ms(400)) == nil)
        #expect(health.heard(at: Self.ms(500)) == .up)
        #expect(health.flowFailed() == .down)
        let probe = health.probeDue(at: Self.ms(5000))
        #expect(probe == false, "no probes on a flow that is gone")
    }
}
