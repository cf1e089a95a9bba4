import Foundation
import Testing
@testable import CloudCore

/// Instants from UTC wall-clock components (the mock clock of these tests).
func utc(_ y: Int, _ mo: Int, _ d: Int, _ h: Int, _ mi: Int) -> Date {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    return calendar.date(from: DateComponents(year: y, month: mo, day: d, hour: h, minute: mi))!
}

@Suite("Forwarding rules")
struct ForwardingRuleTests {
    let officeHours = ForwardingRule(weekdays: [1, 2, 3, 4, 5], timeOfDay: (8 * 60, 18 * 60), timeZone: "Europe/Berlin", target: .ringGroup("reception"))

    @Test("Weekdays and time of day are taken in the rule's zone, across the DST change")
    func berlinOfficeHours() {
        // Wednesday 2026-03-25, Berlin is UTC+1: 07:30 UTC = 08:30 local.
        #expect(officeHours.applies(at: utc(2026, 3, 25, 7, 30)))
        #expect(!officeHours.applies(at: utc(2026, 3, 25, 6, 30)))  // 07:30 local
        // Monday 2026-03-30, after the change to UTC+2 on Sunday 29th: 06:30 UTC = 08:30 local.
        #expect(officeHours.applies(at: utc(2026, 3, 30, 6, 30)))
        #expect(!officeHours.applies(at: utc(2026, 3, 30, 5, 30)))  // 07:30 local
        // 16:30 UTC is 18:30 local in summer: closed; in winter 17:30 local: open.
        #expect(!officeHours.applies(at: utc(2026, 7, 1, 16, 30)))
        #expect(officeHours.applies(at: utc(2026, 1, 7, 16, 30)))
        // Saturday.
        #expect(!officeHours.applies(at: utc(2026, 3, 28, 10, 0)))
    }

    @Test("The same instant is a different local day in Tokyo and New York")
    func zones() {
        let tokyoMonday = ForwardingRule(weekdays: [1], timeZone: "Asia/Tokyo", target: .user("bob"))
        let newYorkMonday = ForwardingRule(weekdays: [1], timeZone: "America/New_York", target: .user("bob"))
        // Sunday 2026-11-01 20:00 UTC: Monday 05:00 in Tokyo, Sunday 15:00 in New York.
        let instant = utc(2026, 11, 1, 20, 0)
        #expect(tokyoMonday.applies(at: instant))
        #expect(!newYorkMonday.applies(at: instant))
    }

    @Test("A night window spans midnight and belongs to the evening it opened; the autumn DST night too")
    func overnight() {
        let fridayNights = ForwardingRule(weekdays: [5], timeOfDay: (22 * 60, 6 * 60), timeZone: "Europe/Berlin", target: .reject(486))
        // Friday 2026-10-23 23:00 local (UTC+2) and Saturday 03:00 local belong to Friday night.
        #expect(fridayNights.applies(at: utc(2026, 10, 23, 21, 0)))
        #expect(fridayNights.applies(at: utc(2026, 10, 24, 1, 0)))
        #expect(!fridayNights.applies(at: utc(2026, 10, 24, 5, 0)))  // Saturday 07:00
        #expect(!fridayNights.applies(at: utc(2026, 10, 22, 21, 0)))  // Thursday 23:00
        // The night of the autumn change (Sat 24 → Sun 25 Oct, 03:00 CEST → 02:00 CET) is not Friday's.
        #expect(!fridayNights.applies(at: utc(2026, 10, 25, 1, 30)))
        let saturdayNights = ForwardingRule(weekdays: [6], timeOfDay: (22 * 60, 6 * 60), timeZone: "Europe/Berlin", target: .reject(486))
        #expect(saturdayNights.applies(at: utc(2026, 10, 25, 0, 30)))  // 02:30 CEST, the first time
        #expect(saturdayNights.applies(at: utc(2026, 10, 25, 1, 30)))  // 02:30 CET, the second time
        #expect(saturdayNights.applies(at: utc(2026, 10, 25, 4, 59)))  // 05:59 CET
        #expect(!saturdayNights.applies(at: utc(2026, 10, 25, 5, 0)))  // 06:00 CET
    }

    @Test("Date ranges are inclusive local days; the first matching rule wins")
    func datesAndOrder() {
        let holidays = ForwardingRule(
            dates: ForwardingRule.Day(year: 2026, month: 12, day: 24)...ForwardingRule.Day(year: 2026, month: 12, day: 26),
            timeZone: "Europe/Berlin", target: .uri("sips:oncall@service.example"))
        // 23:30 UTC on the 23rd is 00:30 on the 24th in Berlin.
        #expect(holidays.applies(at: utc(2026, 12, 23, 23, 30)))
        #expect(!holidays.applies(at: utc(2026, 12, 23, 22, 30)))
        #expect(holidays.applies(at: utc(2026, 12, 26, 22, 59)))
        #expect(!holidays.applies(at: utc(2026, 12, 26, 23, 0)))
        // Thursday 24 Dec 10:00 local: both rules apply, the first listed wins.
        #expect(ForwardingRule.firstMatch([holidays, officeHours], at: utc(2026, 12, 24, 9, 0))?.target == .uri("sips:oncall@service.example"))
        #expect(ForwardingRule.firstMatch([officeHours, holidays], at: utc(2026, 12, 24, 9, 0))?.target == .ringGroup("reception"))
        #expect(ForwardingRule.firstMatch([holidays], at: utc(2026, 12, 28, 9, 0)) == nil)
    }

    @Test("At most 20 rules per user; unknown zones, weekdays and times are refused")
    func validation() throws {
        try ForwardingRule.validate(Array(repeating: officeHours, count: 20))
        #expect(throws: ForwardingRule.RuleError.tooMany(21)) { try ForwardingRule.validate(Array(repeating: officeHours, count: 21)) }
        #expect(throws: ForwardingRule.RuleError.unknownTimeZone("Mars/Olympus")) {
            try ForwardingRule.validate([ForwardingRule(timeZone: "Mars/Olympus", target: .user("a"))])
        }
        #expect(throws: ForwardingRule.RuleError.badWeekday(8)) {
            try ForwardingRule.validate([ForwardingRule(weekdays: [8], timeZone: "UTC", target: .user("a"))])
        }
        #expect(throws: ForwardingRule.RuleError.badTime(1440)) {
            try ForwardingRule.validate([ForwardingRule(timeOfDay: (0, 1440), timeZone: "UTC", target: .user("a"))])
        }
    }
}
