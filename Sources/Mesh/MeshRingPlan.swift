/// How a channel rings its mesh targets (`ring` in `[[channel]]`): all at once, or one after
/// another — each for `ring_s`, wrapping to the first — until someone answers, the caller gives
/// up, or a whole round passes without any target ringing (every one unknown, unreachable or
/// refusing at once: ringing more rounds would only loop).
///
/// A value: the router asks which targets to call now and tells it what happened.
public struct MeshRingPlan: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable { case parallel, chain }

    public let mode: Mode
    public let targets: [String]
    /// The chain's current target.
    public private(set) var position = 0
    private var rangThisRound = false
    private var stepsThisRound = 0

    public init(mode: Mode, targets: [String]) {
        self.mode = mode
        self.targets = targets
    }

    /// The targets to call first: all of them, or the chain's first.
    public func start() -> [Int] {
        guard !targets.isEmpty else { return [] }
        return mode == .parallel ? Array(targets.indices) : [0]
    }

    /// The current chain target rang (a provisional answer).
    public mutating func rang() {
        rangThisRound = true
    }

    /// The current chain target is done without answering (its `ring_s` passed, or it refused):
    /// the next target to call, or nil when the chain is over.
    public mutating func next() -> Int? {
        guard mode == .chain, !targets.isEmpty else { return nil }
        stepsThisRound += 1
        if stepsThisRound >= targets.count {
            guard rangThisRound else { return nil }
            stepsThisRound = 0
            rangThisRound = false
        }
        position = (position + 1) % targets.count
        return position
    }
}
