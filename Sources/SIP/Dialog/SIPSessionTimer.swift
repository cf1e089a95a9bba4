/// RFC 4028 session timers for one dialog, as a value: what to ask for in an INVITE, what a UAS
/// answers, what a 2xx settled, and when the refresher refreshes or the other side gives up.
/// The user agent keeps one per call and schedules what `nextDeadline` says; a far end that
/// vanished without BYE is then noticed on the signalling path too (§10: BYE at expiry).
public struct SIPSessionTimer: Sendable, Equatable {
    public enum Refresher: String, Sendable { case uac, uas }

    /// The session interval in seconds (Session-Expires, §4).
    public var interval: Int
    /// Whether we send the refreshes (the refresher parameter names our role).
    public var weRefresh: Bool

    public init(interval: Int, weRefresh: Bool) {
        self.interval = interval
        self.weRefresh = weRefresh
    }

    /// RFC 4028 §4: the smallest interval anyone may ask for.
    public static let floor = 90
    /// What we accept from outside: at most a day (product calls last 10 minutes).
    public static let ceiling = 86_400

    public static let minSE = SIPHeaderName("Min-SE")

    /// What happens next after a refresh: in `seconds`, refresh (we are the refresher: at half
    /// the interval, §10) or give up (the peer refreshes: at the interval less min(32, a third),
    /// §10, then BYE).
    public var nextDeadline: (seconds: Double, refresh: Bool) {
        weRefresh ? (Double(interval) / 2, true) : (Double(interval) - Double(min(32, interval / 3)), false)
    }

    /// `Session-Expires: 1800;refresher=uac` → (1800, .uac); nil when absent or out of range.
    public static func sessionExpires(in message: SIPMessage) -> (interval: Int, refresher: Refresher?)? {
        guard let value = message.headers[.sessionExpires] else { return nil }
        let parts = value.split(separator: ";", omittingEmptySubsequences: false)
        guard let first = parts.first, let seconds = Self.seconds(first) else { return nil }
        var refresher: Refresher?
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            if pair.count == 2, pair[0] == "refresher" { refresher = Refresher(rawValue: pair[1]) }
        }
        return (seconds, refresher)
    }

    /// Min-SE of a request or a 422, when present and in range.
    public static func minimum(in message: SIPMessage) -> Int? {
        message.headers[minSE].flatMap { Self.seconds($0.split(separator: ";").first ?? "") }
    }

    private static func seconds(_ text: Substring) -> Int? {
        let digits = text.trimmingCharacters(in: .whitespaces)
        guard (1...6).contains(digits.count), digits.allSatisfy(\.isASCII), let value = Int(digits), (1...ceiling).contains(value) else { return nil }
        return value
    }

    /// Whether a message says it supports (or requires) the `timer` extension.
    public static func supportsTimer(_ message: SIPMessage) -> Bool {
        (message.tokens(.supported) + message.tokens(.require)).contains { $0.lowercased() == "timer" }
    }

    // MARK: The UAS side (§9)

    public enum Answer: Sendable, Equatable {
        /// No session timer: the caller asked for none and does not support them.
        case none
        /// 422 Session Interval Too Small, with our Min-SE.
        case tooSmall(minimum: Int)
        /// Run this timer; the 2xx carries `headers`.
        case timer(SIPSessionTimer, headers: [SIPParameter])
    }

    /// What we answer to an INVITE (or a refresh): its Session-Expires if at least `minimum`
    /// (else 422); if it asks for none but supports timers, our `preferred` interval. The
    /// refresher is the one the request named, else the UAC when it supports timers, else us
    /// (a UAC without timer support cannot refresh, §9).
    public static func answer(_ request: SIPMessage, minimum: Int, preferred: Int?) -> Answer {
        let supports = supportsTimer(request)
        let asked = sessionExpires(in: request)
        if let asked, asked.interval < minimum { return .tooSmall(minimum: minimum) }
        guard let interval = asked?.interval ?? (supports ? preferred : nil) else { return .none }
        let refresher = asked?.refresher ?? (supports ? .uac : .uas)
        var headers = [SIPParameter(name: SIPHeaderName.sessionExpires.description, value: "\(interval);refresher=\(refresher.rawValue)")]
        if supports { headers.append(SIPParameter(name: SIPHeaderName.require.description, value: "timer")) }
        return .timer(SIPSessionTimer(interval: interval, weRefresh: refresher == .uas), headers: headers)
    }

    // MARK: The UAC side (§7)

    /// What the 2xx to our INVITE settled: a timer when it carries Session-Expires; the
    /// refresher is the one it names (uac when it names none, §7.2).
    public static func settled(by response: SIPMessage) -> SIPSessionTimer? {
        guard let settled = sessionExpires(in: response) else { return nil }
        return SIPSessionTimer(interval: settled.interval, weRefresh: (settled.refresher ?? .uac) == .uac)
    }
}
