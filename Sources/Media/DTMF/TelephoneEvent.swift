/// An RFC 4733 telephone-event payload (§2.3): event code, end bit, volume, duration in RTP
/// timestamp units of the stream's clock.
public struct TelephoneEvent: Sendable, Equatable {
    public var event: UInt8
    public var isEnd: Bool
    /// Power level in −dBm0, 0–63.
    public var volume: UInt8
    public var duration: UInt16

    public static let length = 4

    public init(event: UInt8, isEnd: Bool = false, volume: UInt8 = 10, duration: UInt16) {
        self.event = event
        self.isEnd = isEnd
        self.volume = volume & 0x3F
        self.duration = duration
    }

    public init?(_ payload: UnsafeRawBufferPointer) {
        // §2.5.1.3: several events may be packed; the first is the current one for DTMF.
        guard payload.count >= Self.length else { return nil }
        self.init(
            event: payload[0], isEnd: payload[1] & 0x80 != 0, volume: payload[1] & 0x3F,
            duration: UInt16(payload[2]) << 8 | UInt16(payload[3]))
    }

    public func write(into out: UnsafeMutableRawBufferPointer) {
        out[0] = event
        out[1] = (isEnd ? 0x80 : 0) | (volume & 0x3F)
        out[2] = UInt8(truncatingIfNeeded: duration >> 8)
        out[3] = UInt8(truncatingIfNeeded: duration)
    }

    /// The DTMF digit of the event (RFC 4733 §3.2 table: 0–9, * = 10, # = 11, A–D = 12–15),
    /// or nil for other events (flash is 16).
    public var digit: Character? { Self.digits.indices.contains(Int(event)) ? Self.digits[Int(event)] : nil }

    public static func event(for digit: Character) -> UInt8? {
        // ASCII only: a non-ASCII character may uppercase to two ("ß" → "SS").
        guard digit.isASCII else { return nil }
        let upper = Character(digit.uppercased())
        return Self.digits.firstIndex(of: upper).map(UInt8.init)
    }

    static let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "A", "B", "C", "D"]
}
