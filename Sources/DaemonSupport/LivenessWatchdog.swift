import Foundation
public import Logging

/// Feeds the systemd watchdog only while every part that must not stall answers (issue 16):
/// each round asks every probe — an event loop runs an empty task, an actor an empty method —
/// and sends `WATCHDOG=1` when all answered within the interval. A loop stuck in a blocking call
/// stops the keepalives, and systemd restarts the daemon after `WatchdogSec=`; the probe that did
/// not answer is named in the log first. (Fed from one loop, as before, a stuck actor or another
/// loop went unnoticed, and a loop stuck in a log write stopped SIP and the watchdog together.)
public struct LivenessWatchdog: Sendable {
    public struct Probe: Sendable {
        public let name: String
        public let answer: @Sendable () async -> Void

        public init(_ name: String, answer: @escaping @Sendable () async -> Void) {
            self.name = name
            self.answer = answer
        }
    }

    public let probes: [Probe]
    public let interval: Duration
    let logger: Logger

    public init(probes: [Probe], interval: Duration, logger: Logger) {
        self.probes = probes
        self.interval = interval
        self.logger = logger
    }

    /// One round: true when every probe answered within `interval`. A probe that never answers
    /// holds the round (and so the keepalives) for good, as it should.
    public func round() async -> Bool {
        let answered: Bool = await withTaskGroup(of: Bool.self) { group in
            let pending = PendingProbes(probes.map(\.name))
            for probe in probes {
                group.addTask {
                    await probe.answer()
                    pending.answered(probe.name)
                    return true
                }
            }
            group.addTask { [interval] in
                try? await Task.sleep(for: interval)
                return false
            }
            var count = 0
            while let result = await group.next() {
                if !result {
                    // The clock child: whoever has not answered is late.
                    guard count < probes.count else { break }
                    logger.error("watchdog: no answer within \(interval) from \(pending.names.joined(separator: ", ")); keepalives stop")
                    return false
                }
                count += 1
                if count == probes.count {
                    group.cancelAll()
                    return true
                }
            }
            return count == probes.count
        }
        return answered
    }

    /// Rounds every `interval` until cancelled; `keepalive` after each good one.
    public func run(keepalive: @Sendable () -> Void) async {
        while !Task.isCancelled {
            if await round() { keepalive() }
            try? await Task.sleep(for: interval)
        }
    }
}

/// The names of the probes that have not answered yet in a round.
private final class PendingProbes: @unchecked Sendable {
    private let lock = NSLock()
    private var waiting: [String]

    init(_ names: [String]) { waiting = names }

    func answered(_ name: String) { lock.withLock { waiting.removeAll { $0 == name } } }
    var names: [String] { lock.withLock { waiting } }
}
