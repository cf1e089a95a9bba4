/// Refused calls, counted instead of logged and recorded one by one (issue 16): a flood of
/// INVITEs at a busy channel used to cost a SQLite row and three log lines each.
///
/// The first refusal of a kind (status, channel, direction) in a minute is logged and recorded in
/// full — one caller who found the channel busy is still in the history — and the rest of that
/// minute are counted; when the minute is over, `due` gives one summary per kind that had more.
/// Kinds are bounded (statuses × 14 channels × directions), whoever sends. Pure value on an
/// injected clock (seconds).
struct RefusalTally: Sendable {
    struct Kind: Hashable, Sendable {
        var status: Int
        var channel: Int?
        /// With a record status: refusals of this kind are call records.
        var record: RecordKind?
    }

    struct RecordKind: Hashable, Sendable {
        var direction: GatewayCallRecord.Direction
        var status: GatewayCallRecord.Status
    }

    struct Summary: Sendable, Equatable {
        var kind: Kind
        /// Refusals after the first, in the window.
        var more: Int
        var since: Double
        var lastCaller: String
        var lastReason: String
    }

    static let window = 60.0
    /// Refusals since start (the `stats` topic).
    private(set) var total = 0
    private var open: [Kind: Summary] = [:]

    /// Counts a refusal at `now`; true when it is the first of its kind in the window (log and
    /// record it in full).
    mutating func refused(_ kind: Kind, caller: String, reason: String, now: Double) -> Bool {
        total += 1
        guard var summary = open[kind] else {
            open[kind] = Summary(kind: kind, more: 0, since: now, lastCaller: caller, lastReason: reason)
            return true
        }
        summary.more += 1
        summary.lastCaller = caller
        summary.lastReason = reason
        open[kind] = summary
        return false
    }

    /// The windows that are over at `now`: summaries of those with more than their first; all of
    /// them closed, so that the next refusal of the kind is logged again.
    mutating func due(now: Double) -> [Summary] {
        let over = open.values.filter { now - $0.since >= Self.window }
        for summary in over { open[summary.kind] = nil }
        return over.filter { $0.more > 0 }.sorted { ($0.kind.channel ?? 0, $0.kind.status) < ($1.kind.channel ?? 0, $1.kind.status) }
    }

    /// When the oldest open window ends.
    var nextDue: Double? { open.values.map { $0.since + Self.window }.min() }
}
