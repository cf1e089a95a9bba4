import Foundation

/// Seconds on a clock that only moves forward at the rate of real time, whatever the wall clock
/// does (CLOCK_MONOTONIC): for expiries, timers, rate limits and anything that measures an
/// interval (docs/RELIABILITY.md "Time"). Not comparable across processes or restarts.
public enum MonotonicTime {
    public static func seconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

/// The wall time the retention purge may believe: the wall clock, but never further ahead than
/// the monotonic time elapsed since the daemon started says it can be. A wall clock stepped
/// forward by hours (a wrong NTP server, an operator's `date -s`) therefore deletes nothing
/// younger than the retention; a step back only makes the purge wait. The step is believed
/// after a restart (by then someone has looked at the warning the step caused).
public struct RetentionClock: Sendable {
    private let wallAtStart: Double
    private let monotonicAtStart: Double

    public init(wall: Double, monotonic: Double) {
        wallAtStart = wall
        monotonicAtStart = monotonic
    }

    /// What wall time the elapsed monotonic time vouches for.
    public func vouched(monotonic: Double) -> Double { wallAtStart + max(0, monotonic - monotonicAtStart) }

    /// The purge's now.
    public func now(wall: Double, monotonic: Double) -> Double { min(wall, vouched(monotonic: monotonic)) }

    /// How far the wall clock has been stepped since the start (positive: forward), if more than `tolerance`.
    public func step(wall: Double, monotonic: Double, tolerance: Double = 5) -> Double? {
        let step = wall - vouched(monotonic: monotonic)
        return abs(step) > tolerance ? step : nil
    }
}
