public import Foundation

/// Whether this machine's wall clock can be trusted (docs/RELIABILITY.md "Time"): before the
/// release's date it is certainly wrong (a board without a battery-backed clock, booted without
/// NTP); far from the cloud's (the `Date` of its answers) TLS will fail on certificates' validity.
public enum ClockCheck {
    /// The day this release was made; a clock before it is wrong. Kept with the version
    /// (packaging/debian/changelog's date; a test checks that they agree).
    public static let releaseDate = Date(timeIntervalSince1970: 1_795_996_800)  // 2026-11-30T00:00:00Z

    /// Differences beyond this between our clock and the cloud's are reported. Dates carry whole
    /// seconds and the answer's travel time; NTP keeps clocks within milliseconds.
    public static let tolerance: Double = 60

    public static let advice = "enable NTP (timedatectl set-ntp true, or the systemd-timesyncd package)"

    /// The problem with `now` on its own, if any.
    public static func problem(now: Date) -> String? {
        guard now < releaseDate else { return nil }
        let when = ISO8601DateFormatter().string(from: now)
        return "the system clock (\(when)) is before this release was made: \(advice)"
    }

    /// The problem with `now` against a peer's `Date` (RFC 9110 §6.6.1, IMF-fixdate; the same
    /// format in SIP, RFC 3261 §20.17), if any.
    public static func problem(now: Date, peerDate text: String, peer: String) -> String? {
        guard let theirs = parseHTTPDate(text) else { return nil }
        let offset = now.timeIntervalSince(theirs)
        guard abs(offset) > tolerance else { return nil }
        let amount = Self.amount(abs(offset))
        return "the system clock is \(amount) \(offset > 0 ? "ahead of" : "behind") \(peer)'s: \(advice)"
    }

    static func amount(_ seconds: Double) -> String {
        switch seconds {
        // Rounded: a `Date` carries whole seconds, so 3 minutes measure 179.x s.
        case ..<120: "\(Int(seconds.rounded())) s"
        case ..<7200: "\(Int((seconds / 60).rounded())) min"
        case ..<172_800: "\(Int((seconds / 3600).rounded())) h"
        default: "\(Int((seconds / 86400).rounded())) days"
        }
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT`; nil for anything else (outside input: bounded length).
    public static func parseHTTPDate(_ text: String) -> Date? {
        guard text.utf8.count <= 64 else { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.date(from: text.trimmingCharacters(in: .whitespaces))
    }

    /// The IMF-fixdate of `date`.
    public static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }
}
