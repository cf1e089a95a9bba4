import ArgumentParser
import CrashContext
import Foundation

/// `symphony-bridge crash-check`: makes this process crash the way a bug would, with the crash
/// line installed as `run` installs it — to see (and test) the one line a crash leaves in the
/// journal (docs/RELIABILITY.md). Takes no outside input; hidden from the help.
struct CrashCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crash-check", abstract: "Crash on purpose, to show the crash line (testing only).", shouldDisplay: false)

    enum Fault: String, ExpressibleByArgument, CaseIterable {
        /// A Swift runtime trap (an overflow).
        case trap
        /// Unbounded recursion: a stack overflow, reported from the alternate signal stack.
        case stack
        case abort
    }

    @Option(help: "What the thread is handling when it crashes.")
    var context = "SIP INVITE request from 192.0.2.1:5060, Call-ID crash-check"

    @Option(help: "How to crash: \(Fault.allCases.map(\.rawValue).joined(separator: ", ")).")
    var fault: Fault = .trap

    func run() throws {
        CrashContext.install(daemon: "symphony-bridge", journal: ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil)
        CrashContext.set(context)
        switch fault {
        case .trap:
            let big = Int(ProcessInfo.processInfo.environment["CRASH_CHECK_BASE"] ?? "") ?? Int.max
            print(big + Int(fault.rawValue.count))  // overflows
        case .stack:
            print(Self.recurse(1, []))
        case .abort:
            abort()
        }
    }

    /// Recurses until the stack runs out (`depth` never reaches `Int.max` first).
    private static func recurse(_ depth: Int, _ carry: [Int]) -> Int {
        var local = carry
        local.append(depth)
        guard depth < Int.max - 1 else { return local.count }
        return recurse(depth + 1, local.count > 8 ? [] : local) + local.count
    }
}
