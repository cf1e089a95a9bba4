@testable import DaemonSupport
import Logging
import Testing

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
}
