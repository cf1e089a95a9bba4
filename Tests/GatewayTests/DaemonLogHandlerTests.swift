@testable import DaemonSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import PeerTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Log lines for journald and for a terminal: the priority prefix under systemd, one line per
/// entry whatever the message holds.
@Suite("Daemon log lines")
struct DaemonLogHandlerTests {
    @Test func underSystemdLinesCarryTheSyslogPriorityAndNoTimestamp() {
        var handler = DaemonLogHandler(label: "symphony-bridge", level: .info, environment: ["JOURNAL_STREAM": "8:12345"])
        handler[metadataKey: "component"] = "router"
        #expect(handler.format(level: .error, message: "call record not written", metadata: ["channel": "3"])
            == "<3>symphony-bridge: call record not written channel=3 component=router")
        #expect(handler.format(level: .notice, message: "cloud uplink registered", metadata: nil).hasPrefix("<5>"))
        #expect(handler.format(level: .debug, message: "x", metadata: nil).hasPrefix("<7>"))
    }

    @Test func aMessageCannotForgeASecondLine() {
        let handler = DaemonLogHandler(label: "symphony-bridge", level: .info, environment: ["JOURNAL_STREAM": "8:1"])
        let line = handler.format(level: .warning, message: "INFO from \("evil\n<3>symphony-bridge: forged")", metadata: nil)
        #expect(!line.contains("\n") && line.contains("\\n<3>"))
    }

    @Test func onATerminalLinesStartWithATimestampAndTheLevel() {
        let handler = DaemonLogHandler(label: "symphony-cloud-core", level: .info, environment: [:])
        let line = handler.format(level: .warning, message: "flood", metadata: ["source": "127.0.0.2"])
        #expect(line.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ warning symphony-cloud-core: flood source=127.0.0.2$"#, options: .regularExpression) != nil, "\(line)")
    }

    @Test func theTimestampIsUTCInISO8601() {
        #expect(DaemonLogHandler.timestamp(0) == "1970-01-01T00:00:00Z")
        #expect(DaemonLogHandler.timestamp(1_795_734_601) == "2026-11-26T23:10:01Z")
    }

    @Test("A log that does not take lines (a journal behind, a full pipe) never holds up the thread that logs: lines past the bound are dropped, counted and reported")
    func aStuckLogDropsAndCounts() async throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        let queue = LogLineQueue(fd: ends[1], capacity: 4096)
        var handler = DaemonLogHandler(label: "test", level: .info, environment: [:], queue: queue)
        handler.logLevel = .info
        let logger = Logger(label: "test") { _ in handler }
        let started = ContinuousClock.now
        // 200,000 lines of ~100 bytes: 20 MB into a pipe nobody reads (64 KB of room).
        for index in 0..<200_000 { logger.info("line \(index) \(String(repeating: "x", count: 80))") }
        let spent = ContinuousClock.now - started
        #expect(spent < .seconds(10), "logging went on while nobody read: \(spent)")
        #expect(queue.droppedCount > 100_000, "most lines were dropped: \(queue.droppedCount)")
        // Now read: what was queued comes out, then the count of what was lost.
        _ = fcntl(ends[0], F_SETFL, fcntl(ends[0], F_GETFL) | O_NONBLOCK)
        var text = ""
        let deadline = ContinuousClock.now + .seconds(10)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !text.contains("log lines dropped"), ContinuousClock.now < deadline {
            let count = buffer.withUnsafeMutableBytes { read(ends[0], $0.baseAddress, $0.count) }
            if count > 0 { text += String(decoding: buffer[..<count], as: UTF8.self) } else { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(text.contains("info test: line 0 "), "the first lines were kept")
        #expect(text.contains("log lines dropped: the log could not keep up"))
    }

    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func add(_ line: String) { lock.withLock { lines.append(line) } }
        var all: [String] { lock.withLock { lines } }
    }

    struct CapturingHandler: LogHandler {
        let lines: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { lines.add("\(event.message)") }
    }

    @Test("The watchdog is fed while every loop answers; a loop stuck in a blocking call stops the keepalives and is named; they resume when it is free")
    func theWatchdogFollowsTheLoops() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (healthy, stuck) = (group.next(), group.next())
        let lines = Lines()
        let logger = Logger(label: "test") { _ in CapturingHandler(lines: lines) }
        let keepalives = Lines()
        let watchdog = LivenessWatchdog(probes: [
            .init("healthy loop") { try? await healthy.submit {}.get() }, .init("stuck loop") { try? await stuck.submit {}.get() },
        ], interval: .milliseconds(300), logger: logger)
        let task = Task { await watchdog.run { keepalives.add("WATCHDOG=1") } }
        func eventually(_ what: String, _ condition: () -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(15)
            while !condition() {
                guard ContinuousClock.now < deadline else { throw PeerError("timed out waiting for \(what)") }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        try await eventually("keepalives while both loops answer") { keepalives.all.count >= 2 }
        // The loop blocks (a write that does not return, a synchronous query) until released.
        let release = DispatchSemaphore(value: 0)
        stuck.execute { release.wait() }
        try await eventually("the stuck loop named") { lines.all.contains { $0.contains("no answer within") && $0.contains("stuck loop") } }
        #expect(!lines.all.contains { $0.contains("healthy loop") }, "\(lines.all)")
        // The round that named it waits for the loop: nothing is fed from now on.
        let before = keepalives.all.count
        try await Task.sleep(for: .milliseconds(1000))
        #expect(keepalives.all.count == before, "no keepalive while the loop is stuck")
        release.signal()
        try await eventually("keepalives again once the loop is free") { keepalives.all.count > before }
        task.cancel()
        try await group.shutdownGracefully()
    }
}
