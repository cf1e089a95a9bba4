/// Wrap-around arithmetic for RTP sequence numbers (16 bits) and timestamps (32 bits).
///
/// Both are serial numbers in the sense of RFC 1982: `a` is newer than `b` when the signed
/// difference `a - b` is positive. RFC 3550 §5.1 and Appendix A.1 rely on this for reordering and
/// loss detection, and RFC 3711 §3.3.1 for the SRTP rollover counter.
public enum RTPSerialNumber {
    /// Signed distance from `b` to `a` (positive when `a` is ahead), for sequence numbers.
    @inlinable
    public static func distance(from b: UInt16, to a: UInt16) -> Int {
        Int(Int16(bitPattern: a &- b))
    }

    /// Signed distance from `b` to `a` (positive when `a` is ahead), for timestamps.
    @inlinable
    public static func distance(from b: UInt32, to a: UInt32) -> Int {
        Int(Int32(bitPattern: a &- b))
    }

    @inlinable
    public static func isNewer(_ a: UInt16, than b: UInt16) -> Bool { distance(from: b, to: a) > 0 }

    @inlinable
    public static func isNewer(_ a: UInt32, than b: UInt32) -> Bool { distance(from: b, to: a) > 0 }
}

/// Extends 16-bit sequence numbers to a 32-bit count of cycles and sequence (RFC 3550 A.1), with
/// the source validation of that appendix: a new source must deliver `minSequential` packets in a
/// row before it counts, a jump of more than `maxDropout` is treated as a restart only when the
/// next packet confirms it, and packets up to `maxMisorder` behind are late, not a restart.
public struct RTPSequenceTracker: Sendable, Equatable {
    public static let maxDropout = 3000
    public static let maxMisorder = 100
    public static let minSequential = 2

    public enum Verdict: Sendable, Equatable {
        /// The packet is valid; `extended` is its 32-bit extended sequence number.
        case accepted(extended: UInt32)
        /// Still on probation (a new or restarted source).
        case probation
        /// A duplicate or a packet too far behind.
        case late
        /// A large jump: dropped, unless the next packet follows it (then the source restarted).
        case jumped
    }

    public private(set) var maxSequence: UInt16 = 0
    /// Shifted count of sequence number cycles (RFC 3550 A.1 `cycles`).
    public private(set) var cycles: UInt32 = 0
    public private(set) var baseSequence: UInt32 = 0
    private var badSequence: UInt32 = UInt32.max
    private var probation: Int = RTPSequenceTracker.minSequential
    private var started = false

    public init() {}

    /// The highest extended sequence number seen.
    public var extendedMax: UInt32 { cycles &+ UInt32(maxSequence) }

    private mutating func reset(to seq: UInt16) {
        baseSequence = UInt32(seq)
        maxSequence = seq
        badSequence = UInt32.max
        cycles = 0
    }

    public mutating func update(_ seq: UInt16) -> Verdict {
        if !started {
            started = true
            reset(to: seq)
            maxSequence = seq &- 1
            probation = Self.minSequential
        }
        let delta = Int(seq &- maxSequence)  // unsigned 16-bit distance ahead
        if probation > 0 {
            if seq == maxSequence &+ 1 {
                probation -= 1
                maxSequence = seq
                if probation == 0 {
                    reset(to: seq)
                    return .accepted(extended: extendedMax)
                }
            } else {
                probation = Self.minSequential - 1
                maxSequence = seq
            }
            return .probation
        }
        if delta == 0 { return .late }
        if delta < Self.maxDropout {
            if seq < maxSequence { cycles &+= 1 << 16 }
            maxSequence = seq
            return .accepted(extended: extendedMax)
        }
        if delta <= 65536 - Self.maxMisorder {
            if UInt32(seq) == badSequence {
                // Two packets in a row after the jump: the other side restarted.
                reset(to: seq)
                return .accepted(extended: extendedMax)
            }
            badSequence = UInt32(seq &+ 1)
            return .jumped
        }
        // Up to maxMisorder behind: a late or duplicate packet.
        return .late
    }

    /// The extended number of a late packet, relative to the current maximum.
    public func extended(late seq: UInt16) -> UInt32 {
        let back = UInt32(maxSequence &- seq)
        return extendedMax &- back
    }
}
