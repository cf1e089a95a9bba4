import DurableState
import Foundation
import GRDB
import Gateway
import PeerTestSupport
import Testing

/// The gateway's call records: written off the caller's thread, read back, purged after the
/// retention on a fixed clock, kept in a file across a reopen.
@Suite("Gateway call records")
struct GatewayCallRecordsTests {
    static func write(_ records: GatewayCallRecords, _ record: GatewayCallRecord) async throws {
        records.record(record)
        await records.flush()
        #expect(records.backlog.waiting == 0)
    }

    static func call(startedDaysAgo days: Double, now: Double, channel: Int = 3) -> GatewayCallRecord {
        let start = now - days * 86400
        return GatewayCallRecord(
            startedAt: start, answeredAt: start + 4, endedAt: start + 64, direction: .legacyToCloud, channel: channel, peer: "concierge",
            status: .answered, codec: "G722/opus", reason: nil)
    }

    @Test func recordsArePurgedAfterTheRetentionOnAFixedClock() async throws {
        let records = GatewayCallRecords(path: nil)
        let now = 1_800_000_000.0
        for days in [200.0, 180.5, 179.0, 0.5] { try await Self.write(records, Self.call(startedDaysAgo: days, now: now)) }
        #expect(try await records.purge(retentionDays: 180, now: Date(timeIntervalSince1970: now)) == 2)
        #expect(try records.all().map(\.startedAt) == [now - 179 * 86400, now - 0.5 * 86400])
        #expect(try await records.purge(retentionDays: 180, now: Date(timeIntervalSince1970: now)) == 0)
    }

    @Test func recordsSurviveAReopen() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("state/calls.sqlite")
        let now = Date().timeIntervalSince1970
        do {
            let records = GatewayCallRecords(path: path)
            try await Self.write(records, Self.call(startedDaysAgo: 1, now: now, channel: 7))
        }
        let reopened = GatewayCallRecords(path: path)
        let all = try reopened.all()
        #expect(all.count == 1 && all.first?.channel == 7 && all.first?.direction == .legacyToCloud && all.first?.codec == "G722/opus")
    }
}

/// Issue 18: records that survive a broken file, a crash, a full disk, a stepped clock
/// (docs/RELIABILITY.md "Durable state").
extension GatewayCallRecordsTests {
    @Test func aFileThatIsNotADatabaseIsMovedAsideAndANewOneMade() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("calls.sqlite")
        let garbage = String(repeating: "not a database, a disk's bad day. ", count: 200)
        try scratch.write("calls.sqlite", garbage)
        let records = GatewayCallRecords(path: path)
        let problem = try #require(records.problem)
        #expect(problem.contains(path) && problem.contains("moved aside"), "\(problem)")
        let aside = try FileManager.default.contentsOfDirectory(atPath: scratch.url.path).filter { $0.hasPrefix("calls.sqlite.corrupt-") }
        #expect(aside.count == 1)
        #expect(try String(contentsOfFile: scratch.path(aside[0]), encoding: .utf8) == garbage, "the broken file is kept as it was")
        try await Self.write(records, Self.call(startedDaysAgo: 0, now: Date().timeIntervalSince1970))
        #expect(try records.all().count == 1)
        // A readable SQLite file with somebody else's `call` table is not ours either.
        let foreign = scratch.path("foreign.sqlite")
        let queue = try DatabaseQueue(path: foreign)
        try await queue.write { db in try db.execute(sql: "CREATE TABLE call (who TEXT); CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)") }
        try queue.close()
        let second = GatewayCallRecords(path: foreign)
        #expect(second.problem?.contains("moved aside") == true)
        try await Self.write(second, Self.call(startedDaysAgo: 0, now: Date().timeIntervalSince1970))
        #expect(try second.all().count == 1)
    }

    @Test func aFileThatCannotBeOpenedKeepsTheRecordsInMemoryUntilItCan() async throws {
        let scratch = try ScratchDirectory()
        // A directory where the file belongs: nothing can open it, nothing is moved.
        try FileManager.default.createDirectory(atPath: scratch.path("calls.sqlite"), withIntermediateDirectories: true)
        let records = GatewayCallRecords(path: scratch.path("calls.sqlite"))
        #expect(records.problem?.contains("cannot be opened") == true, "\(records.problem ?? "no problem")")
        let call = Self.call(startedDaysAgo: 0, now: Date().timeIntervalSince1970)
        records.record(call)
        await records.flush()
        #expect(records.backlog.waiting == 1)
        try FileManager.default.removeItem(atPath: scratch.path("calls.sqlite"))
        records.reopen()
        await records.flush()
        #expect(records.backlog.waiting == 0 && records.problem == nil)
        #expect(try records.all().map(\.ref) == [call.ref])
    }

    /// The end of a call replaces everything that changed since its start: a call that fell
    /// back to the mesh started as legacy → cloud.
    @Test func aLaterVersionReplacesEveryFieldThatChanged() async throws {
        let records = GatewayCallRecords(path: nil)
        let now = Date().timeIntervalSince1970
        var call = GatewayCallRecord(
            startedAt: now, answeredAt: nil, endedAt: nil, direction: .legacyToCloud, channel: 1, peer: "alice", status: .inProgress, codec: nil, reason: nil)
        try await Self.write(records, call)
        call.direction = .legacyToMesh
        call.peer = "201"
        (call.answeredAt, call.endedAt, call.status, call.codec, call.reason) = (now + 2, now + 9, .answered, "g722", "legacy station hung up")
        try await Self.write(records, call)
        var stored = try #require(try records.all().first)
        stored.id = nil
        let count = try records.all().count
        #expect(stored == call && count == 1)
    }

    @Test func aCallsRecordIsWrittenAtItsStartAndClosedAsInterruptedAfterACrash() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("calls.sqlite")
        let started = Date().timeIntervalSince1970 - 120
        var open = GatewayCallRecord(
            startedAt: started, answeredAt: nil, endedAt: nil, direction: .cloudToLegacy, channel: 4, peer: "alice", status: .inProgress, codec: nil, reason: nil)
        var answered = open
        answered.answeredAt = started + 3
        answered.codec = "G722"
        do {
            let records = GatewayCallRecords(path: path)
            try await Self.write(records, open)
            try await Self.write(records, answered)
            records.heartbeat(now: Date(timeIntervalSince1970: started + 47))
            await records.flush()
            _ = try await records.database?.write { _ in }  // the heartbeat's write went before
            open = try #require(try records.all().first)
            #expect(open.status == .inProgress && open.endedAt == nil && open.answeredAt == started + 3)
        }
        // The gateway died without ending it (nothing else wrote); the next start closes it.
        let reopened = GatewayCallRecords(path: path)
        let closed = try #require(try reopened.all().first)
        #expect(closed.status == .interrupted && closed.endedAt == started + 47 && closed.answeredAt == started + 3 && closed.codec == "G722")
        #expect(closed.reason?.contains("stopped during the call") == true)
        #expect(try reopened.all().count == 1)
    }

    /// A real full disk: a 2 MiB tmpfs filled to the last byte (root: CI runs as root).
    @Test func callsDuringAFullDiskAreRecordedWhenSpaceReturnsAndTheOldestSummarisedPastTheLimit() async throws {
        guard getuid() == 0 else { throw PeerError("mounting a small tmpfs as a full disk needs root (CI runs as root)") }
        let scratch = try ScratchDirectory()
        let mount = scratch.path("disk")
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        try await runCommand("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mount])
        defer { _ = try? Process.run(URL(fileURLWithPath: "/usr/bin/umount"), arguments: ["-l", mount]).waitUntilExit() }
        let records = GatewayCallRecords(path: mount + "/calls.sqlite", queueLimit: 100)
        let now = Date().timeIntervalSince1970
        try await Self.write(records, Self.call(startedDaysAgo: 0, now: now))
        // Fill the disk.
        #expect(FileManager.default.createFile(atPath: mount + "/filler", contents: nil))
        let filler = try #require(FileHandle(forWritingAtPath: mount + "/filler"))
        let block = Data(repeating: 0x55, count: 64 * 1024)
        while (try? filler.write(contentsOf: block)) != nil {}
        let small = Data(repeating: 0x55, count: 512)
        while (try? filler.write(contentsOf: small)) != nil {}
        try? filler.close()
        var placed = 1
        for n in 0..<150 {
            var call = Self.call(startedDaysAgo: 0, now: now + Double(n), channel: 1 + n % 14)
            call.peer = String(repeating: "p", count: 200)
            records.record(call)
            placed += 1
        }
        await records.flush()
        let backlog = records.backlog
        #expect(backlog.waiting > 0 && backlog.waiting <= 100, "\(backlog)")
        #expect(backlog.summarised > 0, "past the limit of 100 the oldest are summarised")
        #expect(records.problem?.contains("disk full") == true, "\(records.problem ?? "no problem")")
        // Space returns: the writer's next attempt (at most 30 s after the last) writes them.
        try FileManager.default.removeItem(atPath: mount + "/filler")
        let deadline = ContinuousClock.now + .seconds(40)
        while records.backlog.waiting > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(200)) }
        #expect(records.backlog.waiting == 0 && records.problem?.contains("disk full") != true)
        // Every call accounted for: one by one, or in the summary.
        let contents = try GatewayCallRecordFile.read(mount + "/calls.sqlite", since: nil)
        let summarised = contents.summaries.reduce(0) { $0 + $1.calls }
        #expect(contents.records.count + summarised == placed, "\(contents.records.count) records + \(summarised) summarised")
        #expect(summarised == records.backlog.summarised)
    }

    @Test func theRetentionClockDoesNotBelieveAWallClockSteppedForward() {
        let clock = RetentionClock(wall: 1_800_000_000, monotonic: 100)
        // An hour later, the wall clock stepped 6 hours ahead: the purge's now is an hour later.
        #expect(clock.now(wall: 1_800_000_000 + 7 * 3600, monotonic: 100 + 3600) == 1_800_000_000 + 3600)
        let step = clock.step(wall: 1_800_000_000 + 7 * 3600, monotonic: 100 + 3600)
        #expect(step.map { abs($0 - 6 * 3600) < 0.001 } == true, "\(step ?? 0)")
        // Stepped back: the wall clock (earlier) is used; no step of a few seconds is reported.
        #expect(clock.now(wall: 1_800_000_000 - 3600, monotonic: 100 + 3600) == 1_800_000_000 - 3600)
        #expect(clock.step(wall: 1_800_000_000 + 3602, monotonic: 100 + 3600) == nil)
    }

    @Test func recordsPastTheRetentionOnASteppedClockStay() async throws {
        let records = GatewayCallRecords(path: nil)
        let now = Date().timeIntervalSince1970
        try await Self.write(records, Self.call(startedDaysAgo: 179.9, now: now))
        let retention = RetentionClock(wall: now, monotonic: MonotonicTime.seconds())
        // The wall clock jumps 5 hours ahead: the record would be past 180 days on it.
        let stepped = retention.now(wall: now + 5 * 3600, monotonic: MonotonicTime.seconds())
        #expect(try await records.purge(retentionDays: 180, now: Date(timeIntervalSince1970: stepped)) == 0)
        #expect(try await records.purge(retentionDays: 180, now: Date(timeIntervalSince1970: now + 5 * 3600)) == 1, "the same purge on the stepped wall clock would delete it")
    }
}

/// The queue between the records and the disk, on its own.
@Suite("Pending records")
struct PendingRecordsTests {
    struct Item: QueuedRecord {
        var queueKey: String
        var startedAt: Double
        var statusText: String
        var isFinal: Bool { statusText != "in-progress" }
    }

    @Test func aCallsLaterVersionReplacesTheEarlierAndFailedBatchesStay() {
        var pending = PendingRecords<Item>(limit: 10)
        pending.add(Item(queueKey: "a", startedAt: 1, statusText: "in-progress"))
        pending.add(Item(queueKey: "b", startedAt: 2, statusText: "in-progress"))
        pending.add(Item(queueKey: "a", startedAt: 1, statusText: "answered"))
        #expect(pending.records.map(\.statusText) == ["answered", "in-progress"], "a keeps its place, newest version")
        let batch = pending.nextBatch()
        #expect(batch?.records.count == 2 && pending.nextBatch() == nil, "one write at a time")
        pending.add(Item(queueKey: "b", startedAt: 2, statusText: "missed"))
        pending.written()
        #expect(pending.records.map(\.statusText) == ["missed"], "b changed while being written: its new version stays")
        _ = pending.nextBatch()
        pending.failed()
        #expect(pending.count == 1)
    }

    @Test func pastTheLimitTheOldestAreSummarisedAndTheSummaryIsKeptUntilWritten() {
        var pending = PendingRecords<Item>(limit: 10)
        for n in 0..<25 { pending.add(Item(queueKey: "\(n)", startedAt: Double(n), statusText: n % 2 == 0 ? "answered" : "failed")) }
        #expect(pending.count <= 10)
        let summary = pending.summary
        #expect(summary.map { $0.calls + pending.count } == 25)
        #expect(summary?.firstStartedAt == 0 && pending.records.first.map { $0.startedAt > summary!.lastStartedAt } == true, "the oldest went")
        let batch = pending.nextBatch()
        #expect(batch?.summary == summary)
        pending.failed()
        #expect(pending.summary == summary, "a failed write keeps the summary")
        _ = pending.nextBatch()
        pending.written()
        #expect(pending.count == 0 && pending.summary == nil && pending.summarisedTotal == summary?.calls)
    }

    /// An open call is never summarised, nor the end of a call whose open version is on disk:
    /// the row would stay open and the call be counted twice.
    @Test func openCallsAndEndsOfCallsOnDiskAreNeverSummarised() {
        var pending = PendingRecords<Item>(limit: 10)
        pending.add(Item(queueKey: "live", startedAt: 0, statusText: "in-progress"))
        pending.add(Item(queueKey: "on-disk", startedAt: 1, statusText: "in-progress"))
        _ = pending.nextBatch()
        pending.written()
        pending.add(Item(queueKey: "on-disk", startedAt: 1, statusText: "answered"))
        for n in 0..<30 { pending.add(Item(queueKey: "\(n)", startedAt: Double(10 + n), statusText: "answered")) }
        let keys = Set(pending.records.map(\.queueKey))
        #expect(keys.contains("on-disk") && !keys.contains("live"), "live was written; on-disk's end stays queued")
        pending.add(Item(queueKey: "live", startedAt: 0, statusText: "in-progress"))
        for n in 30..<60 { pending.add(Item(queueKey: "\(n)", startedAt: Double(10 + n), statusText: "answered")) }
        #expect(pending.records.contains { $0.queueKey == "live" } && pending.records.contains { $0.queueKey == "on-disk" })
        #expect(pending.summary.map { $0.byStatus["in-progress"] == nil } == true)
    }
}

/// `symphony-bridge calls`, the built binary on a records file.
@Suite("symphony-bridge calls")
struct CallsCommandTests {
    @Test func theRecordsAsATableCSVAndJSONSinceATime() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("calls.sqlite")
        let records = GatewayCallRecords(path: path)
        let now = Date().timeIntervalSince1970
        records.record(GatewayCallRecord(
            startedAt: now - 3 * 86400, answeredAt: now - 3 * 86400 + 2, endedAt: now - 3 * 86400 + 32, direction: .legacyToCloud, channel: 2,
            peer: "alice", status: .answered, codec: "G722/opus", reason: nil))
        records.record(GatewayCallRecord(
            startedAt: now - 600, answeredAt: nil, endedAt: now - 590, direction: .cloudToLegacy, channel: 5, peer: "bob, \"the builder\"",
            status: .missed, codec: nil, reason: "no answer"))
        records.record(GatewayCallRecord(
            startedAt: now - 60, answeredAt: now - 58, endedAt: nil, direction: .legacyToMesh, channel: 7, peer: "gw2", status: .inProgress, codec: "G722", reason: nil))
        await records.flush()
        let binary = try builtExecutable("symphony-bridge")
        let table = try await runCommand(binary, ["calls", "--file", path])
        #expect(table.contains("ch2") && table.contains("30.0 s") && table.contains("3 call(s): answered 1, in-progress 1, missed 1"), "\(table)")
        let csv = try await runCommand(binary, ["calls", "--file", path, "--csv", "--since", "1d"])
        let lines = csv.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        #expect(lines.count == 3 && lines[0].hasPrefix("started_at,answered_at,ended_at,duration_s,direction,channel,peer,status"), "\(csv)")
        #expect(lines[1].contains(",cloud-to-legacy,5,\"bob, \"\"the builder\"\"\",missed,,no answer"), "\(lines[1])")
        let json = try await runCommand(binary, ["calls", "--file", path, "--json"])
        let objects = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: String]]
        #expect(objects?.map { $0["status"] } == ["answered", "missed", "in-progress"] && objects?.first?["duration_s"] == "30.0", "\(json)")
        // A wrong --since is refused before anything is read; a missing file exits 66.
        await #expect(throws: (any Error).self) { try await runCommand(binary, ["calls", "--file", path, "--since", "yesterday-ish"]) }
        await #expect(throws: (any Error).self) { try await runCommand(binary, ["calls", "--file", scratch.path("none.sqlite")]) }
    }
}
