/// Character classes of the RFC 3261 §25.1 ABNF, as bit flags in one 256-entry table so that
/// the parser's inner loops test a byte with a single load.
public struct SIPCharacterClass: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// `token` (RFC 3261 §25.1): alphanum and `-.!%*_+` + "`'~".
    public static let token = SIPCharacterClass(rawValue: 1 << 0)
    /// `word`: token plus `()<>:\"/[]?{}`.
    public static let word = SIPCharacterClass(rawValue: 1 << 1)
    /// `unreserved`: alphanum and the marks `-_.!~*'()`.
    public static let unreserved = SIPCharacterClass(rawValue: 1 << 2)
    /// `user-unreserved`: `&=+$,;?/`.
    public static let userUnreserved = SIPCharacterClass(rawValue: 1 << 3)
    /// `password` extras: `&=+$,`.
    public static let passwordExtra = SIPCharacterClass(rawValue: 1 << 4)
    /// `param-unreserved`: `[]/:&+$`.
    public static let paramUnreserved = SIPCharacterClass(rawValue: 1 << 5)
    /// `hnv-unreserved`: `[]/?:+$`.
    public static let headerUnreserved = SIPCharacterClass(rawValue: 1 << 6)
    /// hostname characters: alphanum, `-` and `.`.
    public static let hostname = SIPCharacterClass(rawValue: 1 << 7)
    /// `uric` of RFC 2396 (reserved / unreserved / escaped), minus `%` which is checked apart.
    public static let uric = SIPCharacterClass(rawValue: 1 << 8)
    /// URI scheme characters after the first: alphanum and `+-.`.
    public static let scheme = SIPCharacterClass(rawValue: 1 << 9)
    /// Digits.
    public static let digit = SIPCharacterClass(rawValue: 1 << 10)
    /// Hex digits (for `%HH` escapes and IPv6).
    public static let hex = SIPCharacterClass(rawValue: 1 << 11)

    @usableFromInline
    static let table: [SIPCharacterClass] = {
        var table = [SIPCharacterClass](repeating: [], count: 256)
        func add(_ chars: String, _ cls: SIPCharacterClass) {
            for byte in chars.utf8 { table[Int(byte)].insert(cls) }
        }
        let alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        let digits = "0123456789"
        let alphanum = alpha + digits
        add(alphanum + "-.!%*_+`'~", .token)
        add(alphanum + "-.!%*_+`'~" + "()<>:\\\"/[]?{}", .word)
        add(alphanum + "-_.!~*'()", .unreserved)
        add("&=+$,;?/", .userUnreserved)
        add("&=+$,", .passwordExtra)
        add("[]/:&+$", .paramUnreserved)
        add("[]/?:+$", .headerUnreserved)
        add(alphanum + "-.", .hostname)
        add(alphanum + "-_.!~*'()" + ";/?:@&=+$,", .uric)
        add(alphanum + "+-.", .scheme)
        add(digits, .digit)
        add(digits + "abcdefABCDEF", .hex)
        return table
    }()

    @inlinable
    public static func of(_ byte: UInt8) -> SIPCharacterClass { table[Int(byte)] }
}

extension UInt8 {
    @inlinable var isSIPToken: Bool { SIPCharacterClass.table[Int(self)].contains(.token) }
    @inlinable var isSIPDigit: Bool { self >= 0x30 && self <= 0x39 }
    @inlinable var isSIPWhitespace: Bool { self == 0x20 || self == 0x09 }
    @inlinable func isIn(_ cls: SIPCharacterClass) -> Bool { SIPCharacterClass.table[Int(self)].contains(cls) }
    @inlinable var asciiLowercased: UInt8 { (self >= 0x41 && self <= 0x5A) ? self | 0x20 : self }
}
