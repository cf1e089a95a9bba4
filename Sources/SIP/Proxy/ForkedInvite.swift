/// The response context of one forked INVITE (RFC 3261 §16.7): which branches still ring, which
/// final answer goes back to the caller, which branches get CANCEL and why. A value: it hears
/// responses, the ring timer and the caller's CANCEL, and returns actions; the proxy sends.
public struct ForkedInvite: Sendable {
    public enum BranchState: Sendable, Equatable {
        case trying
        case ringing
        case final(Int)
    }

    public enum CancelReason: Sendable, Equatable {
        /// Another branch answered: `Reason: SIP;cause=200;text="Call completed elsewhere"`.
        case answeredElsewhere
        /// A branch declined for everyone (6xx, §16.7 step 5): `Reason: SIP;cause=600/603`.
        case declinedElsewhere(Int)
        /// The caller hung up, or the ring time ran out: a plain CANCEL.
        case callerGone
        case ringTimeout

        /// RFC 3326 Reason header value, or nil for none.
        public var headerValue: String? {
            switch self {
            case .answeredElsewhere: "SIP;cause=200;text=\"Call completed elsewhere\""
            case .declinedElsewhere(let status): "SIP;cause=\(status);text=\"Declined elsewhere\""
            case .callerGone: nil
            case .ringTimeout: "SIP;cause=480;text=\"No answer\""
            }
        }
    }

    public enum Action: Sendable, Equatable {
        /// Relay this branch's response (provisional or final) to the caller.
        case relay(branch: Int, status: Int)
        /// Answer the caller ourselves (ring timeout, nothing to ring).
        case reply(status: Int, reason: String)
        case cancel(branches: [Int], reason: CancelReason)
    }

    public private(set) var branches: [BranchState]
    /// The branch whose 2xx won, once one did.
    public private(set) var answeredBranch: Int?
    /// A final response has gone to the caller (2xx, relayed best, or our own).
    public private(set) var finished = false
    /// The caller cancelled before any answer.
    public private(set) var callerCancelled = false
    public private(set) var timedOut = false
    /// The status the caller got (for the call record).
    public private(set) var finalStatus: Int?
    private var sixHundred = false

    public init(branchCount: Int) {
        branches = Array(repeating: .trying, count: branchCount)
    }

    public var pendingBranches: [Int] {
        branches.indices.filter { if case .final = branches[$0] { false } else { true } }
    }

    /// A response (or, from the transaction layer, 408 for timeout and 503 for transport failure)
    /// on `branch`.
    public mutating func response(_ status: Int, on branch: Int) -> [Action] {
        guard branches.indices.contains(branch) else { return [] }
        if case .final = branches[branch] {
            // A 2xx retransmission or a second 2xx of the winning branch goes through (§16.7 step 5).
            return (200...299).contains(status) && branch == answeredBranch ? [.relay(branch: branch, status: status)] : []
        }
        switch status {
        case 100:
            return []
        case 101...199:
            branches[branch] = .ringing
            return finished ? [] : [.relay(branch: branch, status: status)]
        case 200...299:
            branches[branch] = .final(status)
            // §16.7 step 5: every 2xx is forwarded; a 2xx after another branch won is a second
            // dialog the caller tears down itself (RFC 3261 §13.2.2.4).
            var actions: [Action] = [.relay(branch: branch, status: status)]
            if answeredBranch == nil {
                answeredBranch = branch
                finished = true
                finalStatus = status
                let losers = pendingBranches
                if !losers.isEmpty { actions.append(.cancel(branches: losers, reason: .answeredElsewhere)) }
            }
            return actions
        default:
            branches[branch] = .final(status)
            var actions: [Action] = []
            if (600...699).contains(status), !finished, !sixHundred {
                // §16.7 step 5: a 6xx ends the search; the others are cancelled.
                sixHundred = true
                let others = pendingBranches
                if !others.isEmpty { actions.append(.cancel(branches: others, reason: .declinedElsewhere(status))) }
            }
            if !finished, pendingBranches.isEmpty, let best = bestFinal() {
                finished = true
                finalStatus = branchStatus(best)
                actions.append(.relay(branch: best, status: branchStatus(best)))
            }
            return actions
        }
    }

    /// The ring time ran out with nobody answering: cancel all, tell the caller 480 (no answer).
    public mutating func ringTimerFired() -> [Action] {
        guard !finished else { return [] }
        timedOut = true
        finished = true
        finalStatus = 480
        let pending = pendingBranches
        var actions: [Action] = [.reply(status: 480, reason: "No Answer")]
        if !pending.isEmpty { actions.insert(.cancel(branches: pending, reason: .ringTimeout), at: 0) }
        return actions
    }

    /// The caller's CANCEL (§16.10): cancel every pending branch; the caller gets 487 once they
    /// answer (or now, when none is pending).
    public mutating func callerCancel() -> [Action] {
        guard !finished else { return [] }
        callerCancelled = true
        let pending = pendingBranches
        guard !pending.isEmpty else {
            finished = true
            finalStatus = 487
            return [.reply(status: 487, reason: "Request Terminated")]
        }
        return [.cancel(branches: pending, reason: .callerGone)]
    }

    private func branchStatus(_ branch: Int) -> Int {
        if case .final(let status) = branches[branch] { return status }
        return 0
    }

    /// §16.7 step 6: a 6xx if any; else the lowest class, preferring within 4xx what tells the
    /// caller most (busy over not found over the rest); 503 never goes upstream as such
    /// (the proxy's caller would think the proxy itself is down) — it becomes 500 in `relay`.
    func bestFinal() -> Int? {
        let finals = branches.indices.map { ($0, branchStatus($0)) }.filter { $0.1 >= 300 }
        if let six = finals.first(where: { $0.1 >= 600 }) { return six.0 }
        func rank(_ status: Int) -> (Int, Int) {
            let preferred = [486, 487, 480, 404, 408]
            return (status / 100, preferred.firstIndex(of: status) ?? preferred.count)
        }
        return finals.min { rank($0.1) < rank($1.1) }?.0
    }
}
