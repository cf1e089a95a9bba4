public import GRDB
public import Logging
import NIOConcurrencyHelpers

/// How many records wait for the disk, how many were summarised, and why.
public struct RecordBacklog: Sendable, Equatable {
    public var waiting: Int
    public var summarised: Int
    /// Why the last write failed, while records wait.
    public var error: String?

    public init(waiting: Int = 0, summarised: Int = 0, error: String? = nil) {
        self.waiting = waiting
        self.summarised = summarised
        self.error = error
    }
}

/// Writes `QueuedRecord`s to a database on GRDB's writer queue (never on the caller's thread),
/// keeping them in `PendingRecords` until a write succeeds: a full disk, a lock held past the
/// busy timeout or a database that is not open yet delays records, never loses them. After a
/// failure the writer tries again after 1 s, then doubling to 30 s; a record added meanwhile
/// waits for that attempt.
public final class RecordWriter<Record: QueuedRecord>: Sendable {
    /// Writes one batch inside a transaction the writer opened.
    public typealias Apply = @Sendable (Database, [Record], RecordSummary?) throws -> Void

    private struct State: Sendable {
        var pending: PendingRecords<Record>
        var database: (any DatabaseWriter)?
        var retryDelay: Double = 0
        var retryScheduled = false
        var lastError: String?
        /// The backlog last told to `onBacklog` had records waiting or an error.
        var reportedTrouble = false
        /// When a broken file was last replaced (monotonic seconds): at most one a minute.
        var lastReplacement = -Double.infinity
        var waiters: [CheckedContinuation<Void, Never>] = []
        /// A write is due after the collecting delay.
        var collecting = false
    }

    private let state: NIOLockedValueBox<State>
    private let apply: Apply
    private let logger: Logger
    /// Called (on no particular thread) when the backlog changes between empty and not, or its error.
    private let onBacklog: @Sendable (RecordBacklog) -> Void
    /// Told when a write fails with an error that says the file is broken; returns a fresh
    /// database to write to, or nil.
    private let onBroken: @Sendable (any Error) -> (any DatabaseWriter)?
    /// How long records are collected before a write (one transaction for all of them); zero
    /// writes at once. A busy core writes a few times a second instead of three times a call.
    private let collectFor: Duration

    public init(
        database: (any DatabaseWriter)?, limit: Int = 10_000, collectFor: Duration = .zero, logger: Logger, apply: @escaping Apply,
        onBacklog: @escaping @Sendable (RecordBacklog) -> Void = { _ in }, onBroken: @escaping @Sendable (any Error) -> (any DatabaseWriter)? = { _ in nil }
    ) {
        state = NIOLockedValueBox(State(pending: PendingRecords(limit: limit), database: database))
        self.apply = apply
        self.logger = logger
        self.onBacklog = onBacklog
        self.onBroken = onBroken
        self.collectFor = collectFor
    }

    public var backlog: RecordBacklog {
        state.withLockedValue { RecordBacklog(waiting: $0.pending.count, summarised: $0.pending.summarisedTotal, error: $0.lastError) }
    }

    /// A database to write to from now on (one opened late, or replacing a broken one).
    public func use(_ database: any DatabaseWriter) {
        state.withLockedValue { $0.database = database }
        drain()
    }

    public func add(_ record: Record) {
        let (failing, startCollecting) = state.withLockedValue { state in
            state.pending.add(record)
            let start = collectFor > .zero && !state.collecting && !state.retryScheduled
            if start { state.collecting = true }
            return (state.retryScheduled, start)
        }
        if collectFor > .zero {
            guard startCollecting else { return }
            Task { [self] in
                try? await Task.sleep(for: collectFor)
                state.withLockedValue { $0.collecting = false }
                drain()
            }
        } else if !failing {
            drain()
        }
    }

    /// Returns when nothing waits any more, or when a write has failed (the records stay queued).
    public func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLockedValue { state in
                guard state.pending.count > 0 || state.pending.summary != nil || state.pending.isWriting else { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() } else { drain(force: true) }
        }
    }

    private func drain(force: Bool = false) {
        let next = state.withLockedValue { state -> (any DatabaseWriter, [Record], RecordSummary?)? in
            guard force || !state.retryScheduled, let database = state.database, let batch = state.pending.nextBatch() else { return nil }
            return (database, batch.records, batch.summary)
        }
        guard let (database, records, summary) = next else {
            let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
                guard !state.pending.isWriting else { return [] }
                if state.database == nil || state.retryScheduled || (state.pending.count == 0 && state.pending.summary == nil) {
                    defer { state.waiters = [] }
                    return state.waiters
                }
                return []
            }
            for waiter in waiters { waiter.resume() }
            return
        }
        let apply = apply
        database.asyncWrite({ db in try apply(db, records, summary) }, completion: { [self] _, result in
            switch result {
            case .success: self.written()
            case .failure(let error): self.failed(error)
            }
        })
    }

    private func written() {
        let (change, waiters, more) = state.withLockedValue { state -> (RecordBacklog?, [CheckedContinuation<Void, Never>], Bool) in
            state.pending.written()
            state.lastError = nil
            state.retryDelay = 0
            state.retryScheduled = false
            let more = state.pending.count > 0 || state.pending.summary != nil
            let waiters = more ? [] : state.waiters
            if !more { state.waiters = [] }
            // Tell the status once the trouble is over: no error, nothing waiting.
            var change: RecordBacklog?
            if state.reportedTrouble, !more {
                state.reportedTrouble = false
                change = RecordBacklog(waiting: 0, summarised: state.pending.summarisedTotal, error: nil)
            }
            return (change, waiters, more)
        }
        if let change {
            logger.notice("call records written again: none waiting")
            onBacklog(change)
        }
        for waiter in waiters { waiter.resume() }
        if more { drain(force: true) }
    }

    private func failed(_ error: any Error) {
        let now = MonotonicTime.seconds()
        let mayReplace = state.withLockedValue { state in
            guard now - state.lastReplacement >= 60 else { return false }
            state.lastReplacement = now
            return true
        }
        // A file that broke under us is replaced at most once a minute (a failing card would
        // otherwise fill the directory with copies); past that, the usual retries.
        if SQLiteFile.isBroken(error, whileOpening: false), mayReplace, let fresh = onBroken(error) {
            state.withLockedValue {
                $0.pending.failed()
                $0.database = fresh
            }
            return drain(force: true)
        }
        let text = SQLiteFile.describe(error)
        let (backlog, delay, waiters) = state.withLockedValue { state -> (RecordBacklog, Double, [CheckedContinuation<Void, Never>]) in
            state.pending.failed()
            state.retryDelay = min(30, max(1, state.retryDelay * 2))
            state.retryScheduled = true
            state.lastError = text
            state.reportedTrouble = true
            defer { state.waiters = [] }
            return (RecordBacklog(waiting: state.pending.count, summarised: state.pending.summarisedTotal, error: text), state.retryDelay, state.waiters)
        }
        for waiter in waiters { waiter.resume() }
        logger.error("call records not written, kept to write later", metadata: ["error": "\(text)", "waiting": "\(backlog.waiting)", "retry_s": "\(Int(delay))"])
        onBacklog(backlog)
        Task { [self] in
            try? await Task.sleep(for: .seconds(delay))
            self.state.withLockedValue { $0.retryScheduled = false }
            self.drain()
        }
    }

}
