import Foundation
public import GRDB

/// A record a daemon keeps (a call): known by a key the daemon gives it, written when it begins
/// and again, whole, when it changes and ends.
public protocol QueuedRecord: Sendable {
    var queueKey: String { get }
    var startedAt: Double { get }
    /// How the call ended (or `in-progress`): what a summary counts.
    var statusText: String { get }
    /// The call has ended: this version is the record's last.
    var isFinal: Bool { get }
}

/// What the oldest records became when the queue was full: counted, not kept one by one.
public struct RecordSummary: Sendable, Equatable {
    public var calls = 0
    public var firstStartedAt = Double.infinity
    public var lastStartedAt = -Double.infinity
    public var byStatus: [String: Int] = [:]

    public init() {}

    mutating func add(_ record: some QueuedRecord) {
        calls += 1
        firstStartedAt = min(firstStartedAt, record.startedAt)
        lastStartedAt = max(lastStartedAt, record.startedAt)
        byStatus[record.statusText, default: 0] += 1
    }

    mutating func merge(_ other: RecordSummary) {
        calls += other.calls
        firstStartedAt = min(firstStartedAt, other.firstStartedAt)
        lastStartedAt = max(lastStartedAt, other.lastStartedAt)
        for (status, count) in other.byStatus { byStatus[status, default: 0] += count }
    }

    /// The table summaries are kept in, beside the records (both daemons). Part of shipped
    /// migrations: never changed, a later migration alters it.
    public static let createTable = """
        CREATE TABLE callSummary (
          id INTEGER PRIMARY KEY, firstStartedAt DOUBLE NOT NULL, lastStartedAt DOUBLE NOT NULL, calls INTEGER NOT NULL,
          statuses TEXT NOT NULL, writtenAt DOUBLE NOT NULL)
        """

    /// `answered 12, failed 3`, by name.
    public var statusText: String { byStatus.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") }

    /// Adds the summary to `callSummary` (inside the writer's transaction).
    public func write(_ db: Database) throws {
        try db.execute(
            sql: "INSERT INTO callSummary (firstStartedAt, lastStartedAt, calls, statuses, writtenAt) VALUES (?, ?, ?, ?, ?)",
            arguments: [firstStartedAt, lastStartedAt, calls, statusText, Date().timeIntervalSince1970])
    }
}

/// Records waiting for the disk (docs/RELIABILITY.md "No call record lost"): a pure state machine,
/// no I/O. Each record key has its newest version only (a call's end replaces its beginning if
/// neither is written yet); writes go in batches, oldest first; a batch that failed stays and is
/// tried again; past `limit` records the oldest are folded into one `RecordSummary`, which is
/// written with the next batch that succeeds.
public struct PendingRecords<Record: QueuedRecord>: Sendable {
    public let limit: Int
    private struct Entry: Sendable {
        var record: Record
        /// When the key was first queued (its place in line).
        var order: UInt64
        /// Which change this is (a write succeeded only for the version it wrote).
        var version: UInt64
    }
    private var waiting: [String: Entry] = [:]
    private var counter: UInt64 = 0
    private var inFlight: [String: UInt64]?
    /// Keys whose open (not final) version is on disk: their later versions are never
    /// summarised, else the row would stay open and the call count twice. Bounded by the calls
    /// going on.
    private var openOnDisk: Set<String> = []
    /// Records folded since the last successful write.
    public private(set) var summary: RecordSummary?
    private var summaryInFlight: RecordSummary?
    /// Records folded into summaries since the start (for the status topic).
    public private(set) var summarisedTotal = 0

    public init(limit: Int) {
        precondition(limit > 0)
        self.limit = limit
    }

    public var count: Int { waiting.count }
    public var isWriting: Bool { inFlight != nil }

    /// A new or changed record; past the limit, the oldest waiting ones are summarised.
    public mutating func add(_ record: Record) {
        counter &+= 1
        let order = waiting[record.queueKey]?.order ?? counter
        waiting[record.queueKey] = Entry(record: record, order: order, version: counter)
        guard waiting.count > limit else { return }
        // Only a call's last version, of a call with nothing on disk yet, and never one of the batch
        // being written (if that write succeeds, it would be counted twice). Open calls wait:
        // they are as many as the calls going on.
        let candidates = waiting.filter { inFlight?[$0.key] == nil && $0.value.record.isFinal && !openOnDisk.contains($0.key) }
            .sorted { $0.value.order < $1.value.order }
        // A tenth of the limit at once: the sort is paid once per tenth, not once per record.
        for (key, entry) in candidates.prefix(waiting.count - limit + limit / 10) {
            waiting[key] = nil
            summary = summary ?? RecordSummary()
            summary?.add(entry.record)
            summarisedTotal += 1
        }
    }

    /// What to write now (oldest first), or nil if a write is under way or nothing waits.
    public mutating func nextBatch(max: Int = 500) -> (records: [Record], summary: RecordSummary?)? {
        guard inFlight == nil, !waiting.isEmpty || summary != nil else { return nil }
        let batch = waiting.sorted { $0.value.order < $1.value.order }.prefix(max)
        inFlight = Dictionary(uniqueKeysWithValues: batch.map { ($0.key, $0.value.version) })
        inFlightFinal = Dictionary(uniqueKeysWithValues: batch.map { ($0.key, $0.value.record.isFinal) })
        summaryInFlight = summary
        summary = nil
        return (batch.map(\.value.record), summaryInFlight)
    }

    private var inFlightFinal: [String: Bool] = [:]

    /// The batch is on disk: what did not change meanwhile leaves the queue.
    public mutating func written() {
        for (key, version) in inFlight ?? [:] where waiting[key]?.version == version { waiting[key] = nil }
        for (key, final) in inFlightFinal {
            if final { openOnDisk.remove(key) } else { openOnDisk.insert(key) }
        }
        inFlightFinal = [:]
        inFlight = nil
        summaryInFlight = nil
    }

    /// The batch failed: everything stays (the summary too).
    public mutating func failed() {
        inFlight = nil
        inFlightFinal = [:]
        if let unwritten = summaryInFlight {
            var merged = unwritten
            if let summary { merged.merge(summary) }
            summary = merged
        }
        summaryInFlight = nil
    }

    /// Everything waiting, newest versions, oldest first.
    public var records: [Record] { waiting.values.sorted { $0.order < $1.order }.map(\.record) }
}
