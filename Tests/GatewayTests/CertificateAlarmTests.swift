import Foundation
import Gateway
import Testing

/// The MQTT alarm for the device certificate's end (issue 17): from 30 days before it, once the
/// renewal is due and has not happened.
@Suite("Certificate alarm")
struct CertificateAlarmTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func alarm(daysLeft: Double, renewalDueInDays: Double, error: String? = nil) -> String? {
        GatewayStatusPublisher.certificateAlarm(
            expiresAt: now.addingTimeInterval(daysLeft * 86400), renewalDue: now.addingTimeInterval(renewalDueInDays * 86400), renewalError: error, now: now)
    }

    @Test func fromThirtyDaysBeforeTheEndWhenTheRenewalIsOverdue() {
        #expect(alarm(daysLeft: 31, renewalDueInDays: -200) == nil, "more than 30 days left")
        #expect(alarm(daysLeft: 29.5, renewalDueInDays: -200)?.hasPrefix("the device certificate expires in 29 days") == true)
        #expect(alarm(daysLeft: 1.5, renewalDueInDays: -1, error: "claiming failed: no answer")?.contains("in 1 day") == true)
        #expect(alarm(daysLeft: 1.5, renewalDueInDays: -1, error: "claiming failed: no answer")?.contains("renewal failing: claiming failed: no answer") == true)
        #expect(alarm(daysLeft: 0.5, renewalDueInDays: -0.1)?.contains("expires within a day") == true)
        #expect(alarm(daysLeft: -1, renewalDueInDays: -2)?.contains("has expired") == true)
        // A 1-day certificate that renews on time (at two thirds) is no alarm.
        #expect(alarm(daysLeft: 0.9, renewalDueInDays: 0.5) == nil)
    }
}
