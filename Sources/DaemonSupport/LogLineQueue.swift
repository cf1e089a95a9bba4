import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Log lines on their way to a file descriptor (stderr: the journal under systemd), written by
/// a thread of their own (issue 16).
///
/// A `write(2)` to a journald stream blocks when journald falls behind; done on the thread that
/// logs, it stalled an event loop — the one that also carries SIP and fed the watchdog. Here the
/// thread that logs only appends to a bounded queue; when the queue is full the line is dropped
/// and counted, and the writer says how many were lost once it catches up. What is still queued
/// at a normal exit is written (`flush`, registered with `atexit`); a crash may lose the last
/// few lines (the crash report itself goes straight to stderr).
public final class LogLineQueue: @unchecked Sendable {
    /// Standard error, shared by every `DaemonLogHandler`.
    public static let standardError = LogLineQueue(fd: 2, capacity: 4 << 20)

    let fd: Int32
    /// Bytes queued at most.
    let capacity: Int
    private let condition = NSCondition()
    private var lines: [String] = []
    private var queuedBytes = 0
    private var dropped = 0
    /// Lines taken by the writer and not written yet (for `flush`).
    private var writing = false
    private var started = false
    /// How the writer reports lost lines (set by the handler, which knows the format).
    private var dropNotice: @Sendable (Int) -> String = { "\($0) log lines dropped: the log could not keep up\n" }

    public init(fd: Int32, capacity: Int) {
        self.fd = fd
        self.capacity = max(1024, capacity)
    }

    public func setDropNotice(_ notice: @escaping @Sendable (Int) -> String) {
        condition.withLock { dropNotice = notice }
    }

    /// Queues `line` (ending in a newline); false when the queue is full and it was dropped.
    @discardableResult
    public func enqueue(_ line: String) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if !started { start() }
        let size = line.utf8.count
        guard queuedBytes + size <= capacity else {
            dropped += 1
            return false
        }
        lines.append(line)
        queuedBytes += size
        condition.broadcast()  // the writer, not a `flush` waiting
        return true
    }

    /// Lines dropped and not reported yet (tests).
    public var droppedCount: Int { condition.withLock { dropped } }

    /// Waits until everything queued is written, at most `timeout`.
    public func flush(timeout: Duration = .seconds(2)) {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        condition.lock()
        defer { condition.unlock() }
        while started, !lines.isEmpty || writing || dropped > 0 {
            guard condition.wait(until: deadline) else { return }
        }
    }

    /// Called with the lock held.
    private func start() {
        started = true
        let thread = Thread { [self] in run() }
        thread.name = "log-writer"
        thread.start()
        if self === Self.standardError { atexit { LogLineQueue.standardError.flush() } }
    }

    private func run() {
        while true {
            condition.lock()
            while lines.isEmpty, dropped == 0 { condition.wait() }
            let batch = lines
            let lost = dropped
            let notice = dropNotice
            lines = []
            queuedBytes = 0
            dropped = 0
            writing = true
            condition.unlock()
            for line in batch { writeAll(line) }
            if lost > 0 { writeAll(notice(lost)) }
            condition.lock()
            writing = false
            condition.broadcast()
            condition.unlock()
        }
    }

    /// One write(2) per line, so that lines never interleave with another writer's.
    private func writeAll(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written > 0 { offset += written } else if written < 0, errno == EINTR { continue } else { return }
            }
        }
    }
}
