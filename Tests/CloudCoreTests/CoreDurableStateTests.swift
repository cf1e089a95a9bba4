import CloudCore
import DeviceTrust
import DurableState
import Foundation
import GRDB
import Logging
import NIOConcurrencyHelpers
import PeerTestSupport
import Testing

/// Issue 18 at the core (docs/RELIABILITY.md "Durable state"): a broken directory refuses the
/// start with the way back, records of calls a crash left open are closed as interrupted,
/// registrations live through wall-clock steps, backup while calls run and restore into a new core.
@Suite("Core durable state")
struct CoreDurableStateTests {
    typealias Sipp = CloudCoreSippTests.Sipp

    @Test func aBrokenDirectoryStopsTheStartNamingTheFileAndTheRestoreCommand() async throws {
        let scratch = try ScratchDirectory()
        var c = CloudCoreConfiguration()
        c.stateDirectory = scratch.path("state")
        c.tlsListen = [.init("127.0.0.1:0")!]
        try FileManager.default.createDirectory(atPath: c.stateDirectory, withIntermediateDirectories: true)
        try String(repeating: "garbage ", count: 1000).write(toFile: c.directoryFile, atomically: true, encoding: .utf8)
        do {
            _ = try await CloudCoreServer.start(c, logger: Logger(label: "test"))
            Issue.record("the core started on a broken directory")
        } catch {
            let text = "\(error)"
            #expect(error is Directory.Unusable)
            #expect(text.contains(c.directoryFile) && text.contains("symphony-cloud-core admin restore"), "\(text)")
        }
        #expect(try String(contentsOfFile: c.directoryFile, encoding: .utf8).hasPrefix("garbage"), "the file is left for the operator")
    }

    @Test func recordsLeftOpenByACrashAreClosedAsInterruptedWithTheLastTimeKnown() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("directory.sqlite")
        let started = Date().timeIntervalSince1970 - 600
        do {
            let directory = try Directory(path: path, realm: "r")
            try directory.recordCalls([
                CallRecord(callId: "a", caller: "bob", callee: "alice", target: "user:alice", channel: nil, answeredBy: "alice",
                           startedAt: started, answeredAt: started + 2, endedAt: nil, status: .inProgress, reason: nil),
                CallRecord(callId: "b", caller: "bob", callee: "carol", target: "user:carol", channel: nil, answeredBy: nil,
                           startedAt: started + 1, answeredAt: started + 3, endedAt: started + 9, status: .answered, reason: nil),
            ])
            directory.heartbeat(now: Date(timeIntervalSince1970: started + 30))
            _ = try await directory.database.write { _ in }
        }
        let directory = try Directory(path: path, realm: "r")
        #expect(try directory.closeInterruptedCalls(now: Date()) == 1)
        let records = try directory.callRecords()
        #expect(records.map(\.status) == [.interrupted, .answered])
        #expect(records.first?.endedAt == started + 30 && records.first?.durationSeconds == 28)
        #expect(try directory.callHistoryCSV().contains(",interrupted,"))
    }

    /// A wall clock stepped 5 hours ahead, then 5 hours back: the registrations made before
    /// stay (expiry is monotonic) and route calls; a record 179.9 days old is not purged.
    @Test func aWallClockStepNeitherExpiresRegistrationsNorPurgesYoungRecords() async throws {
        let offset = NIOLockedValueBox<Double>(0)
        let now = Date().timeIntervalSince1970
        let core = try await CoreHarness.start(
            configure: { $0.purgeIntervalSeconds = 1; $0.defaultExpires = 600; $0.maxExpires = 600 },
            clock: { Date().addingTimeInterval(offset.withLockedValue { $0 }) },
            before: { directory in
                try directory.recordCalls([CallRecord(
                    callId: "old-but-not-too-old", caller: "bob", callee: "alice", target: "user:alice", channel: nil, answeredBy: nil,
                    startedAt: now - 179.9 * 86400, answeredAt: nil, endedAt: now - 179.9 * 86400 + 20, status: .missed, reason: nil)])
            })
        let setup = CloudCoreSippTests.Setup(core: core, path: .udp)
        let callee = try await setup.callee("carol", .answer(afterMilliseconds: 100), index: 0)
        #expect(await core.server.proxy.contacts(of: "carol").count == 1)
        for step in [5.0 * 3600, -5.0 * 3600] {
            offset.withLockedValue { $0 = step }
            try await Task.sleep(for: .milliseconds(2500))  // housekeeping and two purges on the stepped clock
            #expect(await core.server.proxy.contacts(of: "carol").count == 1, "stepped \(step) s: the registration is alive")
            #expect(try core.directory.callRecords().contains { $0.callId == "old-but-not-too-old" }, "stepped \(step) s: nothing young purged")
        }
        let caller = try await setup.caller(.hangUp(holdMilliseconds: 200), callee: "carol")
        try await caller.expectSuccess()
        try await callee.expectSuccess()
        #expect(try await core.records(atLeast: 2).contains { $0.status == .answered && $0.callee == "carol" })
        await setup.stop()
    }

    /// `admin backup` while a call runs, `admin restore` into a new state directory: the new
    /// core has the users, the same CA, and routes a call.
    @Test func aBackupTakenWhileACallRunsRestoresIntoANewCoreThatRoutesCalls() async throws {
        let first = CloudCoreSippTests.Setup(core: try await CoreHarness.start(), path: .udp)
        let callee = try await first.callee("carol", .answer(afterMilliseconds: 100), index: 0)
        let caller = try await first.caller(.hangUp(holdMilliseconds: 3000), callee: "carol")
        try await first.core.eventually("the call answered") { await first.core.server.proxy.activeDialogs == 1 }
        // Its record, written at the start and the answer (collected for 200 ms), is on disk.
        let directory = first.core.directory
        try await first.core.eventually("the call's open record on disk") { (try? directory.callRecords().contains { $0.status == .inProgress && $0.answeredAt != nil }) == true }
        let backup = first.scratch.path("backup.sqlite")
        let summary = try DirectoryBackup.backup(first.core.directory, configuration: first.core.server.configuration, to: backup)
        #expect(summary.users == 3 && summary.devices == 1 && summary.files.contains("ca-key.pem"), "\(summary)")
        let mode = try FileManager.default.attributesOfItem(atPath: backup)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        try await caller.expectSuccess()
        try await callee.expectSuccess()
        let oldCA = try String(contentsOfFile: first.core.server.configuration.resolvedCACertificateFile, encoding: .utf8)
        await first.stop()

        // A new machine: an empty state directory, the backup restored, the core started.
        let scratch = try ScratchDirectory()
        var c = first.core.server.configuration
        c.stateDirectory = scratch.path("state")
        #expect(try DirectoryBackup.restore(backup, configuration: c).users == 3)
        #expect(try String(contentsOfFile: c.resolvedCACertificateFile, encoding: .utf8) == oldCA, "the same CA: devices keep their certificates")
        var logger = Logger(label: "restored-core")
        logger.logLevel = .warning
        let server = try await CloudCoreServer.start(c, logger: logger)
        let restored = CloudCoreSippTests.Setup(core: CoreHarness(scratch: scratch, server: server), path: .udp)
        // The running core holds its state: a second restore is refused, naming why.
        #expect(throws: DirectoryBackup.Refusal.self) { try DirectoryBackup.restore(backup, configuration: c) }
        let callee2 = try await restored.callee("carol", .answer(afterMilliseconds: 100), index: 1)
        let caller2 = try await restored.caller(.hangUp(holdMilliseconds: 200), callee: "carol")
        try await caller2.expectSuccess()
        try await callee2.expectSuccess()
        let records = try await restored.core.records(atLeast: 2)
        // The call the backup caught going is closed as interrupted by the restored core's start.
        #expect(records.map(\.status) == [.interrupted, .answered], "\(records.map(\.status))")
        await restored.stop()
    }

    /// The directory locked by another process past the busy timeout: the registration's
    /// write-back fails, is kept, and is written once the lock is gone (it used to be forgotten).
    @Test func aRegistrationWhoseWriteBackFailsIsWrittenLater() async throws {
        let core = try await CoreHarness.start()
        let setup = CloudCoreSippTests.Setup(core: core, path: .udp)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let blocker = try DatabaseQueue(path: core.server.configuration.directoryFile, configuration: configuration)
        let holding = Task.detached {
            try blocker.inDatabase { db in
                try db.execute(sql: "BEGIN EXCLUSIVE")
                Thread.sleep(forTimeInterval: 8)
                try db.execute(sql: "COMMIT")
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        try await setup.register("carol", contact: "sip:carol@127.0.0.1:9;transport=udp", fromPort: try freePort(udp: true), viaUDP: true)
        #expect(await core.server.proxy.contacts(of: "carol").count == 1, "the registrar answered from memory")
        try await Task.sleep(for: .seconds(6))
        #expect(try core.directory.loadRegistrations().allSatisfy { $0.addressOfRecord != "carol" }, "not written while the file is locked")
        try await holding.value
        let directory = core.directory
        try await core.eventually("the registration written after the lock") {
            (try? directory.loadRegistrations().contains { $0.addressOfRecord == "carol" }) == true
        }
        await setup.stop()
    }

    @Test func aBackupOfSomethingElseIsRefusedWithAReason() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("not.sqlite", "hello")
        #expect(throws: DirectoryBackup.Refusal.self) { try DirectoryBackup.verify(scratch.path("not.sqlite")) }
        let queue = try DatabaseQueue(path: scratch.path("other.sqlite"))
        try queue.write { db in try db.execute(sql: "CREATE TABLE t (x)") }
        try queue.close()
        do {
            _ = try DirectoryBackup.verify(scratch.path("other.sqlite"))
            Issue.record("a foreign database passed")
        } catch {
            #expect("\(error)".contains("not a directory backup"))
        }
    }

    @Test func theRegistrarSaysItsTimeAndAFarClockIsNamed() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let text = ClockCheck.httpDate(now)
        #expect(text == "Fri, 15 Jan 2027 08:00:00 GMT")
        #expect(ClockCheck.parseHTTPDate(text) == now)
        #expect(ClockCheck.problem(now: now.addingTimeInterval(30), peerDate: text, peer: "the cloud") == nil)
        let ahead = ClockCheck.problem(now: now.addingTimeInterval(3 * 3600), peerDate: text, peer: "the cloud")
        #expect(ahead?.contains("3 h ahead of the cloud") == true && ahead?.contains("NTP") == true, "\(ahead ?? "")")
        #expect(ClockCheck.problem(now: now.addingTimeInterval(-600), peerDate: text, peer: "the cloud")?.contains("10 min behind") == true)
        #expect(ClockCheck.problem(now: now, peerDate: String(repeating: "x", count: 5000), peer: "the cloud") == nil)
        #expect(ClockCheck.problem(now: Date(timeIntervalSince1970: 0))?.contains("before this release") == true)
        #expect(ClockCheck.problem(now: Date()) == nil, "today is after the release date")
    }

    /// The release date the clock check uses is the package's (packaging/debian/changelog).
    @Test func theReleaseDateIsTheChangelogs() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let changelog = try String(contentsOf: root.appendingPathComponent("packaging/debian/changelog"), encoding: .utf8)
        let line = try #require(changelog.split(separator: "\n").first { $0.hasPrefix(" -- ") })
        let dateText = try #require(line.components(separatedBy: "  ").last)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        let date = try #require(formatter.date(from: dateText))
        #expect(ClockCheck.releaseDate <= date && date.timeIntervalSince(ClockCheck.releaseDate) < 86400, "release date \(ClockCheck.releaseDate), changelog \(date)")
    }
}
