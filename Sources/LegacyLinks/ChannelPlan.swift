/// The SYM-BRIDGE channel plan: up to 14 channels, each with the number the legacy intercom
/// server dials. A number belongs to exactly one channel (../shared/ARCHITECTURE.md); the
/// legacy trunk looks incoming Request-URI users up here.
public struct ChannelPlan: Sendable, Equatable {
    /// Channel indices run 1...14.
    public static let channelRange = 1...14

    public struct Channel: Sendable, Equatable {
        public var index: Int
        /// The legacy number: digits, `*` and `#` (what an intercom keypad can dial).
        public var number: String
        public var enabled: Bool

        public init(index: Int, number: String, enabled: Bool = true) {
            self.index = index
            self.number = number
            self.enabled = enabled
        }
    }

    public enum PlanError: Error, Equatable, CustomStringConvertible {
        case indexOutOfRange(Int)
        case duplicateIndex(Int)
        case badNumber(index: Int, number: String)
        case duplicateNumber(String, channels: [Int])

        public var description: String {
            switch self {
            case .indexOutOfRange(let index): "channel index \(index) is outside 1–14"
            case .duplicateIndex(let index): "channel \(index) is defined twice"
            case .badNumber(let index, let number): "channel \(index): number '\(number)' must be 1–32 of 0-9, * and #"
            case .duplicateNumber(let number, let channels): "number \(number) is used by channels \(channels.map(String.init).joined(separator: " and "))"
            }
        }
    }

    public private(set) var channels: [Channel]
    private var byNumber: [String: Int]

    public init(_ channels: [Channel]) throws(PlanError) {
        var seen = Set<Int>()
        var byNumber: [String: Int] = [:]
        for channel in channels {
            guard Self.channelRange.contains(channel.index) else { throw .indexOutOfRange(channel.index) }
            guard seen.insert(channel.index).inserted else { throw .duplicateIndex(channel.index) }
            guard Self.isDialable(channel.number) else { throw .badNumber(index: channel.index, number: channel.number) }
            if let other = byNumber[channel.number] { throw .duplicateNumber(channel.number, channels: [other, channel.index]) }
            byNumber[channel.number] = channel.index
        }
        self.channels = channels.sorted { $0.index < $1.index }
        self.byNumber = byNumber
    }

    /// The enabled channel a legacy station reaches by dialling `number`, if any.
    public func channel(forNumber number: String) -> Channel? {
        guard let index = byNumber[number] else { return nil }
        return channels.first { $0.index == index && $0.enabled }
    }

    static func isDialable(_ number: String) -> Bool {
        (1...32).contains(number.utf8.count) && number.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "#") }
    }
}
