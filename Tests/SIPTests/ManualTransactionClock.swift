import SIP

/// Drives a transaction state machine on simulated time: records what it sends and delivers,
/// keeps its timers, and fires them in deadline order as time is advanced.
struct ManualTransactionClock<Machine: SIPTransactionMachine> {
    var machine: Machine
    private(set) var now: Duration = .zero
    private(set) var timers: [SIPTransactionTimer: Duration] = [:]
    private(set) var sent: [(at: Duration, message: SIPMessage)] = []
    private(set) var delivered: [SIPMessage] = []
    private(set) var timedOut = false
    private(set) var transportFailed = false
    private(set) var terminated = false
    private(set) var terminatedAt: Duration?

    init(_ machine: Machine) {
        self.machine = machine
    }

    mutating func start() {
        apply(machine.start())
    }

    /// Feeds the machine through `body` and applies what it returns.
    mutating func feed(_ body: (inout Machine) -> [SIPTransactionAction]) {
        apply(body(&machine))
    }

    mutating func apply(_ actions: [SIPTransactionAction]) {
        for action in actions {
            switch action {
            case .send(let message): sent.append((now, message))
            case .deliver(let message): delivered.append(message)
            case .startTimer(let timer, let duration): timers[timer] = now + duration
            case .cancelTimer(let timer): timers[timer] = nil
            case .timedOut: timedOut = true
            case .transportFailed: transportFailed = true
            case .terminate:
                terminated = true
                terminatedAt = now
                timers = [:]
            }
        }
    }

    /// Advances simulated time, firing every timer due on the way, earliest first.
    mutating func advance(by duration: Duration) {
        let target = now + duration
        while let (timer, deadline) = timers.min(by: { $0.value < $1.value }), deadline <= target {
            now = deadline
            timers[timer] = nil
            apply(machine.timerFired(timer))
        }
        now = target
    }

    /// Times (relative to start) at which the request itself was sent.
    var requestSendTimes: [Duration] {
        sent.filter { $0.message.isRequest && $0.message.method == machine.request.method }.map(\.at)
    }
}
