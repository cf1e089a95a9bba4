public import NIOCore

/// One scheduled wake-up for a table of deadlines (a call's timers): set to the earliest
/// deadline, moved only when that changes, cancelled with its owner. Deadlines are seconds on
/// the owner's monotonic clock; `now` is that clock's reading.
public struct DeadlineWakeUp: Sendable {
    private var task: Scheduled<Void>?
    private var at: Double?

    public init() {}

    /// Wakes `fire` at `deadline` (nil: never), unless it is already set for that time.
    public mutating func set(to deadline: Double?, now: Double, on loop: any EventLoop, _ fire: @escaping @Sendable () -> Void) {
        guard deadline != at else { return }
        task?.cancel()
        at = deadline
        task = deadline.map { deadline in
            let delay = min(max(0, deadline - now), 86_400)
            return loop.scheduleTask(in: .nanoseconds(Int64(delay * 1e9)), fire)
        }
    }

    /// The wake-up came: the next `set` schedules anew.
    public mutating func fired() {
        task = nil
        at = nil
    }

    public func cancel() {
        task?.cancel()
    }

    /// A duration in the seconds the deadlines count in.
    public static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
