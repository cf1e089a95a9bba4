public import Logging
public import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// swift-log to stderr for a daemon. Under systemd (stderr connected to the journal, which
/// `$JOURNAL_STREAM` tells) each line starts with its syslog priority (`<3>` error … `<7>` debug,
/// sd-daemon(3)) and carries no timestamp — journald records both; elsewhere, an ISO 8601
/// timestamp and the level in words. One line per entry: newlines in messages are escaped, so a
/// crafted value cannot forge a log line.
public struct DaemonLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let journal: Bool

    let queue: LogLineQueue

    public init(
        label: String, level: Logger.Level, environment: [String: String] = ProcessInfo.processInfo.environment, queue: LogLineQueue = .standardError
    ) {
        self.label = label
        self.logLevel = level
        self.journal = environment["JOURNAL_STREAM"] != nil
        self.queue = queue
        let journal = journal
        queue.setDropNotice { count in
            let text = "\(count) log lines dropped: the log could not keep up"
            return (journal ? "<4>log: \(text)" : "\(Self.timestamp()) warning log: \(text)") + "\n"
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Queues the line for the writer thread (`LogLineQueue`): logging never waits for the
    /// journal; past the queue's bound, lines are dropped and counted.
    public func log(event: LogEvent) {
        queue.enqueue(format(level: event.level, message: event.message, metadata: event.metadata) + "\n")
    }

    func format(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?) -> String {
        let all = metadata.merging(extra ?? [:]) { $1 }
        let fields = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let text = Self.oneLine("\(message)\(fields)")
        if journal { return "<\(Self.priority(level))>\(label): \(text)" }
        return "\(Self.timestamp()) \(level) \(label): \(text)"
    }

    /// `2026-11-26T22:50:01Z` (UTC, ISO 8601) with strftime: an ISO8601DateFormatter made per
    /// line cost the gateway about 1.4 ms per call set up at log level info (docs/PERFORMANCE.md).
    static func timestamp(_ seconds: time_t = time(nil)) -> String {
        var now = seconds
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func oneLine(_ text: String) -> String {
        text.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
    }
}
