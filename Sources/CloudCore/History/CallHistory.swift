public import Foundation
public import GRDB

/// How a call ended, as the call history tells it.
public enum DialStatus: String, Sendable, CaseIterable, Codable {
    case answered, missed, busy, declined, failed, cancelled

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
public struct CallRecord: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "callRecord"
    public var id: Int64?
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
    public var endedAt: Double
    public var durationSeconds: Double
    public var status: DialStatus
    public var reason: String?

    public init(
        callId: String, caller: String, callee: String, target: String, channel: String?, answeredBy: String?,
        startedAt: Double, answeredAt: Double?, endedAt: Double, status: DialStatus, reason: String?
    ) {
        self.callId = callId
        self.caller = caller
        self.callee = callee
        self.target = target
        self.channel = channel
        self.answeredBy = answeredBy
        self.startedAt = startedAt
        self.answeredAt = answeredAt
        self.endedAt = endedAt
        self.durationSeconds = answeredAt.map { max(0, endedAt - $0) } ?? 0
        self.status = status
        self.reason = reason
    }
}

extension Directory {
    /// Writes a record on the database's own writer queue; the caller (the SIP event loop) does
    /// not wait. A failing disk is logged by `completion`, never stops the call path.
    public func recordCall(_ record: CallRecord, completion: @escaping @Sendable ((any Error)?) -> Void = { _ in }) {
        recordCalls([record], completion: completion)
    }

    /// Several records in one transaction: the proxy collects a second's worth and writes them
    /// together, so that a busy core does one commit a second, not one a call.
    public func recordCalls(_ records: [CallRecord], completion: @escaping @Sendable ((any Error)?) -> Void = { _ in }) {
        guard !records.isEmpty else { return completion(nil) }
        database.asyncWrite({ db in
            for record in records { try record.insert(db) }
        }, completion: { _, result in
            if case .failure(let error) = result { completion(error) } else { completion(nil) }
        })
    }

    /// Deletes records that started before `cutoff`; returns how many.
    @discardableResult
    public func purgeCallRecords(startedBefore cutoff: Date) throws -> Int {
        try database.write { db in try Self.purgeCallRecords(startedBefore: cutoff, in: db) }
    }

    /// Inside a write the caller opened (the core's periodic job, on GRDB's writer queue).
    static func purgeCallRecords(startedBefore cutoff: Date, in db: Database) throws -> Int {
        try db.execute(sql: "DELETE FROM callRecord WHERE startedAt < ?", arguments: [cutoff.timeIntervalSince1970])
        return db.changesCount
    }

    public func callRecords() throws -> [CallRecord] {
        try database.read { db in try CallRecord.order(Column("startedAt"), Column("id")).fetchAll(db) }
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
