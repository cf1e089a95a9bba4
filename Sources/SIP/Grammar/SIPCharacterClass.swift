/// Character classes of the RFC 3261 §25.1 ABNF. Each class is a 128-bit mask over ASCII held in
/// two constants, so testing a byte is a shift and an AND with no memory access; bytes ≥ 0x80
/// belong to no class.
public struct SIPCharacterClass: Sendable, Equatable {
    public let low: UInt64
    public let high: UInt64

    @inlinable
    init(low: UInt64, high: UInt64) {
        self.low = low
        self.high = high
    }

    @inlinable
    public func contains(_ byte: UInt8) -> Bool {
        byte < 64 ? (low >> UInt64(byte)) & 1 == 1 : (byte < 128 ? (high >> UInt64(byte &- 64)) & 1 == 1 : false)
    }

    /// The union of two classes.
    @inlinable
    public func union(_ other: SIPCharacterClass) -> SIPCharacterClass {
        SIPCharacterClass(low: low | other.low, high: high | other.high)
    }
    /// `token` (RFC 3261 §25.1): alphanum and `-.!%*_+` + "`'~".
    public static let token = SIPCharacterClass(low: 0x03FF6CA200000000, high: 0x47FFFFFF87FFFFFE)
    /// `word`: token plus `()<>:\\"/[]?{}`.
    public static let word = SIPCharacterClass(low: 0xD7FFEFA600000000, high: 0x6FFFFFFFBFFFFFFE)
    /// `unreserved`: alphanum and the marks `-_.!~*'()`.
    public static let unreserved = SIPCharacterClass(low: 0x03FF678200000000, high: 0x47FFFFFE87FFFFFE)
    /// `user-unreserved`: `&=+$,;?/`.
    public static let userUnreserved = SIPCharacterClass(low: 0xA800985000000000, high: 0x0000000000000000)
    /// `password` extras: `&=+$,`.
    public static let passwordExtra = SIPCharacterClass(low: 0x2000185000000000, high: 0x0000000000000000)
    /// `param-unreserved`: `[]/:&+$`.
    public static let paramUnreserved = SIPCharacterClass(low: 0x0400885000000000, high: 0x0000000028000000)
    /// `hnv-unreserved`: `[]/?:+$`.
    public static let headerUnreserved = SIPCharacterClass(low: 0x8400881000000000, high: 0x0000000028000000)
    /// hostname characters: alphanum, `-` and `.`.
    public static let hostname = SIPCharacterClass(low: 0x03FF600000000000, high: 0x07FFFFFE07FFFFFE)
    /// `uric` of RFC 2396 (reserved / unreserved), `%` checked apart.
    public static let uric = SIPCharacterClass(low: 0xAFFFFFD200000000, high: 0x47FFFFFE87FFFFFF)
    /// URI scheme characters after the first: alphanum and `+-.`.
    public static let scheme = SIPCharacterClass(low: 0x03FF680000000000, high: 0x07FFFFFE07FFFFFE)
    /// Digits.
    public static let digit = SIPCharacterClass(low: 0x03FF000000000000, high: 0x0000000000000000)
    /// Hex digits.
    public static let hex = SIPCharacterClass(low: 0x03FF000000000000, high: 0x0000007E0000007E)
}

extension UInt8 {
    @inlinable var isSIPToken: Bool { SIPCharacterClass.token.contains(self) }
    @inlinable var isSIPDigit: Bool { self >= 0x30 && self <= 0x39 }
    @inlinable var isSIPWhitespace: Bool { self == 0x20 || self == 0x09 }
    @inlinable func isIn(_ cls: SIPCharacterClass) -> Bool { cls.contains(self) }
    @inlinable var asciiLowercased: UInt8 { (self >= 0x41 && self <= 0x5A) ? self | 0x20 : self }
}
