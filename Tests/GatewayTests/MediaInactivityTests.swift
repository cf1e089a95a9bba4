import Gateway
import Media
import Testing

/// Inactivity supervision on a manual clock: a leg that should send and does not, for the
/// timeout, is reported; one on hold is not; activity or a hold starts its clock again.
@Suite("Media inactivity supervision")
struct MediaInactivityTests {
    @Test func aSilentLegIsReportedAtTheTimeoutAndNotBefore() {
        var monitor = MediaInactivity(timeout: 30, now: 100)
        #expect(monitor.checkInterval == 5)
        let silent1 = monitor.observe(.a, received: 0, expected: true, now: 129.9)
        #expect(!silent1)
        let silent2 = monitor.observe(.a, received: 0, expected: true, now: 130)
        #expect(silent2)
    }

    @Test func packetsStartTheClockAgain() {
        var monitor = MediaInactivity(timeout: 30, now: 0)
        let silent3 = monitor.observe(.b, received: 50, expected: true, now: 20)
        #expect(!silent3)
        let silent4 = monitor.observe(.b, received: 50, expected: true, now: 49)
        #expect(!silent4)
        let silent5 = monitor.observe(.b, received: 50, expected: true, now: 50)
        #expect(silent5)
        // The other leg has its own clock.
        let silent6 = monitor.observe(.a, received: 7, expected: true, now: 50)
        #expect(!silent6)
    }

    @Test func aLegOnHoldIsNotExpectedToSendAndItsClockStartsAtTheResume() {
        var monitor = MediaInactivity(timeout: 30, now: 0)
        let silent7 = monitor.observe(.b, received: 10, expected: true, now: 5)
        #expect(!silent7)
        // Held (inactive) for a minute: silence is fine.
        let silent8 = monitor.observe(.b, received: 10, expected: false, now: 10)
        #expect(!silent8)
        let silent9 = monitor.observe(.b, received: 10, expected: false, now: 70)
        #expect(!silent9)
        // Resumed at 70: silent from then on, reported 30 s later.
        let silent10 = monitor.observe(.b, received: 10, expected: true, now: 99)
        #expect(!silent10)
        let silent11 = monitor.observe(.b, received: 10, expected: true, now: 100)
        #expect(silent11)
    }

    @Test func theCheckIntervalIsAFifthOfTheTimeoutWithinOneToFiveSeconds() {
        #expect(MediaInactivity(timeout: 5, now: 0).checkInterval == 1)
        #expect(MediaInactivity(timeout: 10, now: 0).checkInterval == 2)
        #expect(MediaInactivity(timeout: 3600, now: 0).checkInterval == 5)
    }
}
