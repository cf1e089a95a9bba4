/// The `application/dtmf-relay` body of a SIP INFO (the de-facto format of Cisco and most PBXs;
/// no RFC defines it): `Signal=<digit>` and `Duration=<ms>` lines. The gateway converts it to and
/// from RFC 4733 events for a leg that only takes SIP INFO.
public struct DTMFRelayBody: Sendable, Equatable {
    public static let contentType = "application/dtmf-relay"

    public var signal: Character
    /// Duration in milliseconds.
    public var duration: Int

    public static let signals: Set<Character> = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "A", "B", "C", "D"]

    public init?(signal: Character, duration: Int) {
        // Only ASCII letters change case here: "ß".uppercased() is "SS", two characters, and
        // `Character(_:)` traps on that (docs/RELIABILITY.md).
        let upper = signal.isASCII ? Character(signal.uppercased()) : signal
        guard Self.signals.contains(upper), (0...60_000).contains(duration) else { return nil }
        self.signal = upper
        self.duration = duration
    }

    /// Parses the body; keys are case-insensitive, spaces around `=` allowed, unknown lines
    /// ignored. Nil when no valid `Signal` is present. A missing duration means 250 ms.
    public init?(_ text: String) {
        var signal: Character?
        var duration = 250
        for line in text.split(whereSeparator: \.isNewline) {  // "\r\n" is one Character
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: " \t").lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: " \t")
            switch key {
            case "signal":
                guard value.count == 1 else { return nil }
                signal = value.first
            case "duration":
                guard let ms = Int(value) else { return nil }
                duration = ms
            default:
                continue
            }
        }
        guard let signal else { return nil }
        self.init(signal: signal, duration: duration)
    }

    public var text: String { "Signal=\(signal)\r\nDuration=\(duration)\r\n" }
}
