/// Checks a Date header: `rfc1123-date` of RFC 3261 §20.17 / §25.1, which allows only "GMT".
public enum SIPDate {
    private static let weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`
    public static func validate(_ s: inout SIPScanner) throws(SIPParseError) {
        s.skipWhitespace()
        let text = s.remainder.trimmingTrailingWhitespace
        let start = s.index
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 6,
            parts[0].count == 4, parts[0].hasSuffix(","), weekdays.contains(String(parts[0].dropLast())),
            parts[1].count == 2, parts[1].allSatisfy(\.isASCIIDigit),
            months.contains(String(parts[2])),
            parts[3].count == 4, parts[3].allSatisfy(\.isASCIIDigit),
            isTime(parts[4])
        else { throw SIPParseError("Date is not an RFC 1123 date (RFC 3261 §20.17)", at: start) }
        guard parts[5] == "GMT" else {
            throw SIPParseError("Date time zone must be GMT (RFC 3261 §20.17), not '\(parts[5])'", at: start)
        }
        s.index = s.end
    }

    private static func isTime(_ text: Substring) -> Bool {
        let fields = text.split(separator: ":", omittingEmptySubsequences: false)
        return fields.count == 3 && fields.allSatisfy { $0.count == 2 && $0.allSatisfy(\.isASCIIDigit) }
    }
}

extension String {
    var trimmingTrailingWhitespace: String {
        var copy = Substring(self)
        while let last = copy.last, last == " " || last == "\t" { copy = copy.dropLast() }
        return String(copy)
    }
}
