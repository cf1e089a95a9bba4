/// Forwarding rules written as text, for the admin command and the seed file:
///
///     weekdays=1-5 time=08:00-18:00 tz=Europe/Berlin target=ring-group:door
///     dates=2026-12-24..2026-12-26 tz=Europe/Berlin target=reject:486
///
/// `weekdays` takes ISO numbers (1 = Monday) as lists and ranges (`1-5`, `6,7`); `time` is
/// `HH:MM-HH:MM` (an end at or before the start spans midnight); `target` is `user:NAME`,
/// `ring-group:NAME`, `uri:SIP-URI` or `reject:STATUS`.
extension ForwardingRule {
    public struct TextError: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    public init(text: String) throws(TextError) {
        var fields: [String: String] = [:]
        for item in text.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            guard let equals = item.firstIndex(of: "=") else { throw TextError(message: "\"\(item)\": expected key=value") }
            let key = String(item[..<equals])
            guard ["weekdays", "time", "dates", "tz", "target"].contains(key) else {
                throw TextError(message: "unknown rule field \"\(key)\" (weekdays, time, dates, tz, target)")
            }
            fields[key] = String(item[item.index(after: equals)...])
        }
        guard let zone = fields["tz"] else { throw TextError(message: "a rule needs tz=ZONE (IANA, say Europe/Berlin)") }
        guard let targetText = fields["target"] else { throw TextError(message: "a rule needs target=user:NAME|ring-group:NAME|uri:URI|reject:STATUS") }
        var weekdays = Set<Int>()
        if let text = fields["weekdays"] {
            for part in text.split(separator: ",") {
                let bounds = part.split(separator: "-").compactMap { Int($0) }
                guard (1...2).contains(bounds.count), bounds.allSatisfy({ (1...7).contains($0) }), bounds.first! <= bounds.last! else {
                    throw TextError(message: "weekdays \"\(text)\": ISO numbers 1 (Monday) to 7, as 1-5 or 6,7")
                }
                weekdays.formUnion(bounds.first!...bounds.last!)
            }
        }
        var dates: ClosedRange<Day>?
        if let text = fields["dates"] {
            let parts = text.components(separatedBy: "..")
            guard let from = Day(text: parts.first), let to = Day(text: parts.last), parts.count <= 2, from <= to else {
                throw TextError(message: "dates \"\(text)\": YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD")
            }
            dates = from...to
        }
        var window: (Int, Int)?
        if let text = fields["time"] {
            let parts = text.split(separator: "-").map { Self.minutes(String($0)) }
            guard parts.count == 2, let start = parts[0], let end = parts[1] else {
                throw TextError(message: "time \"\(text)\": HH:MM-HH:MM")
            }
            window = (start, end)
        }
        let target: Target
        let kind = targetText.prefix { $0 != ":" }
        let value = String(targetText.dropFirst(kind.count + 1))
        switch kind {
        case "user" where !value.isEmpty: target = .user(value)
        case "ring-group" where !value.isEmpty: target = .ringGroup(value)
        case "uri" where value.hasPrefix("sip:") || value.hasPrefix("sips:"): target = .uri(value)
        case "reject":
            guard let status = Int(value), (400...699).contains(status) else { throw TextError(message: "reject:STATUS needs a status 400–699") }
            target = .reject(status)
        default:
            throw TextError(message: "target \"\(targetText)\": user:NAME, ring-group:NAME, uri:sip:… or reject:STATUS")
        }
        self.init(weekdays: weekdays, dates: dates, timeOfDay: window, timeZone: zone, target: target)
        do { try Self.validate([self]) } catch { throw TextError(message: error.description) }
    }

    static func minutes(_ text: String) -> Int? {
        let parts = text.split(separator: ":").compactMap { Int($0) }
        guard parts.count == 2, (0...23).contains(parts[0]), (0...59).contains(parts[1]) else { return nil }
        return parts[0] * 60 + parts[1]
    }
}
