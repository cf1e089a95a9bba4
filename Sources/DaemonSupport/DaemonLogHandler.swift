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

    public init(label: String, level: Logger.Level, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.label = label
        self.logLevel = level
        self.journal = environment["JOURNAL_STREAM"] != nil
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        // One write(2) per line: lines of several threads never interleave (below PIPE_BUF, and
        // O_APPEND files), and nothing is buffered that a crash would lose.
        var line = format(level: event.level, message: event.message, metadata: event.metadata) + "\n"
        line.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
                if written > 0 { offset += written } else if written < 0, errno == EINTR { continue } else { return }
            }
        }
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
