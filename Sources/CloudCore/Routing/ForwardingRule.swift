public import Foundation

/// A user's call-forwarding rule: when it applies (weekdays, a date range, a time of day, all in
/// the rule's own IANA time zone) and where the call goes then. Rules are tried in order; the
/// first that applies wins, and with none the call rings the user's own contacts.
public struct ForwardingRule: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        case user(String)
        case ringGroup(String)
        /// A SIP or SIPS URI outside the core.
        case uri(String)
        /// Refuse the call with this status (say 486 or 603: "do not disturb").
        case reject(Int)
    }

    /// A calendar day in the rule's zone.
    public struct Day: Sendable, Equatable, Comparable {
        public var year: Int
        public var month: Int
        public var day: Int

        public init(year: Int, month: Int, day: Int) {
            self.year = year
            self.month = month
            self.day = day
        }

        public static func < (a: Day, b: Day) -> Bool { (a.year, a.month, a.day) < (b.year, b.month, b.day) }
    }

    /// ISO weekdays, 1 = Monday … 7 = Sunday; empty means every day.
    public var weekdays: Set<Int>
    /// Inclusive; nil means always.
    public var dates: ClosedRange<Day>?
    /// Minutes after local midnight, start inclusive, end exclusive; an end at or before the start
    /// spans midnight (22:00–06:00), and then the weekday and date are those of the evening the
    /// window opened. Nil means all day.
    public var timeOfDay: (start: Int, end: Int)?
    public var timeZone: String
    public var target: Target

    public init(weekdays: Set<Int> = [], dates: ClosedRange<Day>? = nil, timeOfDay: (start: Int, end: Int)? = nil, timeZone: String, target: Target) {
        self.weekdays = weekdays
        self.dates = dates
        self.timeOfDay = timeOfDay
        self.timeZone = timeZone
        self.target = target
    }

    public static func == (a: ForwardingRule, b: ForwardingRule) -> Bool {
        a.weekdays == b.weekdays && a.dates == b.dates && a.timeOfDay?.start == b.timeOfDay?.start
            && a.timeOfDay?.end == b.timeOfDay?.end && a.timeZone == b.timeZone && a.target == b.target
    }

    public enum RuleError: Error, Sendable, Equatable, CustomStringConvertible {
        case tooMany(Int)
        case unknownTimeZone(String)
        case badWeekday(Int)
        case badTime(Int)

        public var description: String {
            switch self {
            case .tooMany(let n): "\(n) forwarding rules; at most \(ForwardingRule.maxPerUser) per user"
            case .unknownTimeZone(let zone): "unknown time zone \"\(zone)\" (an IANA name such as Europe/Berlin)"
            case .badWeekday(let d): "weekday \(d) (1 = Monday … 7 = Sunday)"
            case .badTime(let m): "time of day \(m) minutes (0…1439)"
            }
        }
    }

    /// Product limit.
    public static let maxPerUser = 20

    /// Checks a user's rules before they are stored.
    public static func validate(_ rules: [ForwardingRule]) throws(RuleError) {
        guard rules.count <= maxPerUser else { throw .tooMany(rules.count) }
        for rule in rules {
            guard TimeZone(identifier: rule.timeZone) != nil else { throw .unknownTimeZone(rule.timeZone) }
            if let bad = rule.weekdays.first(where: { !(1...7).contains($0) }) { throw .badWeekday(bad) }
            if let window = rule.timeOfDay {
                for m in [window.start, window.end] where !(0...1439).contains(m) { throw .badTime(m) }
            }
        }
    }

    /// Whether the rule applies at `instant`.
    public func applies(at instant: Date) -> Bool {
        guard let zone = TimeZone(identifier: timeZone) else { return false }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        var local = calendar.dateComponents([.year, .month, .day, .hour, .minute, .weekday], from: instant)
        let minute = (local.hour ?? 0) * 60 + (local.minute ?? 0)
        if let window = timeOfDay {
            if window.start < window.end {
                guard minute >= window.start, minute < window.end else { return false }
            } else {
                // Spans midnight: the early part belongs to the evening before.
                if minute < window.end {
                    guard let yesterday = calendar.date(byAdding: .day, value: -1, to: instant) else { return false }
                    local = calendar.dateComponents([.year, .month, .day, .weekday], from: yesterday)
                } else if minute < window.start {
                    return false
                }
            }
        }
        if !weekdays.isEmpty {
            // Calendar weekday: 1 = Sunday … 7 = Saturday; ISO: 1 = Monday … 7 = Sunday.
            let iso = ((local.weekday ?? 1) + 5) % 7 + 1
            guard weekdays.contains(iso) else { return false }
        }
        if let dates {
            let today = Day(year: local.year ?? 0, month: local.month ?? 0, day: local.day ?? 0)
            guard dates.contains(today) else { return false }
        }
        return true
    }

    /// The first rule that applies, in order.
    public static func firstMatch(_ rules: [ForwardingRule], at instant: Date) -> ForwardingRule? {
        rules.first { $0.applies(at: instant) }
    }
}
