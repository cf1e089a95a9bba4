public import DurableState
public import Foundation
public import GRDB
public import Logging

/// How a call ended, as the call history tells it.
public enum DialStatus: String, Sendable, CaseIterable, Codable {
    case answered, missed, busy, declined, failed, cancelled
    /// Still routing or talking (the record of a call that has not ended).
    case inProgress = "in-progress"
    /// Open when the core stopped without ending it (a crash, kill -9, a power cut): closed at
    /// the next start with the last time the core was known alive.
    case interrupted

    /// From the final status the caller got, and whether the caller hung up first.
    public init(finalStatus: Int, callerCancelled: Bool) {
        switch finalStatus {
        case 200...299: self = .answered
        case _ where callerCancelled: self = .cancelled
        case 486, 600: self = .busy
        case 603, 607: self = .declined
        case 408, 480, 487: self = .missed
        default: self = .failed
        }
    }
}

/// One call in the history: who called whom, through which channel, when, and how it ended.
/// Written when routing starts (`in-progress`, no end), at the answer and at the end.
public struct CallRecord: Sendable, Equatable, Codable, FetchableRecord {
    public static let databaseTableName = "callRecord"
    public var id: Int64?
    /// The core's own key for the record, unique across restarts: what later writes replace.
    public var ref: String?
    public var callId: String
    public var caller: String
    public var callee: String
    /// What the callee resolved to: `user:alice`, `ring-group:door`, `channel:gw1-ch3`, or a
    /// forwarding rule's target.
    public var target: String
    /// The gateway channel on either end, if any.
    public var channel: String?
    public var answeredBy: String?
    public var startedAt: Double
    public var answeredAt: Double?
    public var endedAt: Double?
    public var durationSeconds: Double
    public var status: DialStatus
    public var reason: String?

    public init(
        ref: String = CallRecord.newRef(), callId: String, caller: String, callee: String, target: String, channel: String?, answeredBy: String?,
        startedAt: Double, answeredAt: Double?, endedAt: Double?, status: DialStatus, reason: String?
    ) {
        self.ref = ref
        self.callId = callId
        self.caller = caller
        self.callee = callee
        self.target = target
        self.channel = channel
        self.answeredBy = answeredBy
        self.startedAt = startedAt
        self.answeredAt = answeredAt
        self.endedAt = endedAt
        self.durationSeconds = answeredAt.flatMap { answered in endedAt.map { max(0, $0 - answered) } } ?? 0
        self.status = status
        self.reason = reason
    }

    public static func newRef() -> String { UUID().uuidString.lowercased() }
}

extension CallRecord: QueuedRecord {
    public var queueKey: String { ref ?? "" }
    public var statusText: String { status.rawValue }
    public var isFinal: Bool { endedAt != nil }
}

extension Directory {
    /// The writer the proxy hands its records to: batches off the event loop, kept while the
    /// disk cannot take them (docs/RELIABILITY.md "No call record lost").
    /// Records are collected for 200 ms and written in one transaction: a call's three writes
    /// (start, answer, end) cost a core at 500 calls/s a transaction each otherwise.
    public func callRecordWriter(logger: Logger, onBacklog: @escaping @Sendable (RecordBacklog) -> Void = { _ in }) -> RecordWriter<CallRecord> {
        RecordWriter(database: database, collectFor: .milliseconds(200), logger: logger, apply: Self.writeCallRecords, onBacklog: onBacklog)
    }

    static func writeCallRecords(_ db: Database, _ records: [CallRecord], _ summary: RecordSummary?) throws {
        for r in records {
            try db.execute(
                sql: """
                    INSERT INTO callRecord (ref, callId, caller, callee, target, channel, answeredBy, startedAt, answeredAt, endedAt, durationSeconds, status, reason)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(ref) DO UPDATE SET target = excluded.target, channel = excluded.channel, answeredBy = excluded.answeredBy, answeredAt = excluded.answeredAt,
                      endedAt = excluded.endedAt, durationSeconds = excluded.durationSeconds, status = excluded.status, reason = excluded.reason
                    """,
                arguments: [
                    r.ref, r.callId, r.caller, r.callee, r.target, r.channel, r.answeredBy, r.startedAt, r.answeredAt, r.endedAt, r.durationSeconds,
                    r.status.rawValue, r.reason,
                ])
        }
        try summary?.write(db)
    }

    /// Writes records now (tests, tools); the proxy uses `callRecordWriter`.
    public func recordCalls(_ records: [CallRecord]) throws {
        try database.write { db in try Self.writeCallRecords(db, records, nil) }
    }

    /// Records left `in-progress` by a core that stopped without ending them are closed as
    /// `interrupted` with the last time it was known alive; returns how many. At start.
    @discardableResult
    public func closeInterruptedCalls(now: Date) throws -> Int {
        try database.write { db in
            let alive = try Heartbeat.read(db, now: now.timeIntervalSince1970)
            try db.execute(
                sql: """
                    UPDATE callRecord SET status = 'interrupted', endedAt = MAX(COALESCE(answeredAt, startedAt), COALESCE(?, 0)),
                      durationSeconds = CASE WHEN answeredAt IS NULL THEN 0 ELSE MAX(0, COALESCE(?, 0) - answeredAt) END,
                      reason = 'the core stopped during the call; ended at the last time it was known alive'
                    WHERE endedAt IS NULL OR status = 'in-progress'
                    """, arguments: [alive, alive])
            let closed = db.changesCount
            try Heartbeat.write(db, now: now.timeIntervalSince1970)
            return closed
        }
    }

    /// Notes that the core is alive (the end time of records a crash leaves open).
    public func heartbeat(now: Date) {
        database.asyncWriteWithoutTransaction { db in try? Heartbeat.write(db, now: now.timeIntervalSince1970) }
    }

    /// Deletes records that started before `cutoff`; returns how many.
    @discardableResult
    public func purgeCallRecords(startedBefore cutoff: Date) throws -> Int {
        try database.write { db in try Self.purgeCallRecords(startedBefore: cutoff, in: db) }
    }

    /// Inside a write the caller opened (the core's periodic job, on GRDB's writer queue).
    static func purgeCallRecords(startedBefore cutoff: Date, in db: Database) throws -> Int {
        try db.execute(sql: "DELETE FROM callRecord WHERE startedAt < ? AND endedAt IS NOT NULL", arguments: [cutoff.timeIntervalSince1970])
        let removed = db.changesCount
        try db.execute(sql: "DELETE FROM callSummary WHERE lastStartedAt < ?", arguments: [cutoff.timeIntervalSince1970])
        return removed
    }

    /// The history, oldest first. The file is outside input: a row that does not decode is skipped.
    public func callRecords() throws -> [CallRecord] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM callRecord ORDER BY startedAt, id").compactMap { try? CallRecord(row: $0) }
        }
    }

    /// The history as CSV (RFC 4180: CRLF line ends, fields quoted when they need it), times in
    /// ISO 8601 UTC.
    public func callHistoryCSV() throws -> String {
        let header = ["call_id", "caller", "callee", "target", "channel", "answered_by", "started_at", "answered_at", "ended_at", "duration_s", "status", "reason"]
        let formatter = ISO8601DateFormatter()
        func time(_ seconds: Double?) -> String { seconds.map { formatter.string(from: Date(timeIntervalSince1970: $0)) } ?? "" }
        func field(_ text: String) -> String {
            text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
        }
        var lines = [header.joined(separator: ",")]
        for r in try callRecords() {
            let columns = [
                r.callId, r.caller, r.callee, r.target, r.channel ?? "", r.answeredBy ?? "", time(r.startedAt), time(r.answeredAt),
                time(r.endedAt), String(format: "%.1f", r.durationSeconds), r.status.rawValue, r.reason ?? "",
            ]
            lines.append(columns.map(field).joined(separator: ","))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }
}
