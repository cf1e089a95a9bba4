import Foundation
import PeerTestSupport
import Testing

/// Defense in depth (docs/RELIABILITY.md): should anything still crash a daemon, the journal gets
/// one line saying what it was handling — the built binary, crashing on purpose the three ways a
/// bug does (a runtime trap, a stack overflow, an abort).
@Suite("The line a crash leaves")
struct CrashLineTests {
    @Test("A trap, a stack overflow and an abort each leave exactly one line naming the context, before the runtime's own report", arguments: [
        "trap", "stack", "abort",
    ])
    func oneLineNamingTheContext(fault: String) async throws {
        let context = "SIP INVITE request from 192.0.2.99:5060, Call-ID \(fault)-check"
        let crashing = try PeerProcess(
            try builtExecutable("symphony-bridge"), ["crash-check", "--fault", fault, "--context", context], environment: ["SWIFT_BACKTRACE": "enable=no"])
        let status = try await crashing.wait(timeout: .seconds(60))
        #expect(status != 0)
        let lines = crashing.text.split(separator: "\n").filter { $0.hasPrefix("symphony-bridge: crashed") }
        #expect(lines.count == 1, "\(crashing.text.prefix(2000))")
        #expect(lines.first?.hasSuffix("while handling \(context)") == true, "\(lines)")
    }

    @Test("Under journald the line carries the critical priority, like the daemon's own lines; control characters cannot split it")
    func journalPriority() async throws {
        let crashing = try PeerProcess(
            try builtExecutable("symphony-bridge"), ["crash-check", "--context", "SIP from 192.0.2.1\nforged line"],
            environment: ["JOURNAL_STREAM": "8:1234", "SWIFT_BACKTRACE": "enable=no"])
        _ = try await crashing.wait(timeout: .seconds(60))
        let lines = crashing.text.split(separator: "\n").filter { $0.contains("crashed with") }
        #expect(lines.count == 1, "\(crashing.text.prefix(2000))")
        #expect(lines.first?.hasPrefix("<2>symphony-bridge: crashed with SIG") == true)
        #expect(lines.first?.hasSuffix("(a Swift runtime trap) while handling SIP from 192.0.2.1?forged line") == true, "\(lines)")
    }
}
