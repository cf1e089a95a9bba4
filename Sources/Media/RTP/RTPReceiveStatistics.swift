/// What a receiver knows about one incoming RTP stream, kept as RFC 3550 Appendix A says:
/// extended sequence numbers (A.1), cumulative and interval loss (A.3) and interarrival
/// jitter (A.8). The arrival time is injected in units of the stream's RTP clock, so the value is
/// testable without a clock and cheap on the packet path.
public struct RTPReceiveStatistics: Sendable, Equatable {
    public private(set) var sequence = RTPSequenceTracker()
    public private(set) var received: UInt32 = 0
    public private(set) var lastSSRC: UInt32?
    /// Interarrival jitter in RTP timestamp units, scaled by 16 as in RFC 3550 A.8.
    private var jitterQ4: UInt32 = 0
    private var lastTransit: Int64?
    private var expectedPrior: UInt32 = 0
    private var receivedPrior: UInt32 = 0
    public private(set) var duplicatesOrLate: UInt64 = 0

    public init() {}

    /// Records one packet. `arrival` is the arrival time expressed in the stream's RTP clock
    /// (e.g. nanoseconds × clockRate / 1e9). Returns the sequence verdict.
    @discardableResult
    public mutating func record(sequenceNumber: UInt16, timestamp: UInt32, ssrc: UInt32, arrival: Int64)
        -> RTPSequenceTracker.Verdict
    {
        if lastSSRC != ssrc {
            // A new SSRC is a new source (RFC 3550 §8.2): start over.
            self = RTPReceiveStatistics()
            lastSSRC = ssrc
        }
        let verdict = sequence.update(sequenceNumber)
        switch verdict {
        case .accepted:
            received &+= 1
        case .late:
            duplicatesOrLate &+= 1
            return verdict
        case .probation, .jumped:
            return verdict
        }
        // RFC 3550 A.8: J += (|D| - J) / 16, with D the change in relative transit time.
        let transit = arrival &- Int64(timestamp)
        if let last = lastTransit {
            let d = UInt32(truncatingIfNeeded: Swift.min(abs(transit &- last), Int64(UInt32.max >> 4)))
            let dq4 = d << 4
            if dq4 > jitterQ4 {
                jitterQ4 &+= (dq4 - jitterQ4) >> 4
            } else {
                jitterQ4 &-= (jitterQ4 - dq4) >> 4
            }
        }
        lastTransit = transit
        return verdict
    }

    /// Interarrival jitter in RTP timestamp units (the value an RTCP report block carries).
    public var jitter: UInt32 { jitterQ4 >> 4 }

    public var extendedHighestSequence: UInt32 { sequence.extendedMax }

    /// Packets expected since the source was validated (RFC 3550 A.3).
    public var expected: UInt32 {
        guard received > 0 else { return 0 }
        return sequence.extendedMax &- sequence.baseSequence &+ 1
    }

    /// Cumulative number of packets lost; negative when duplicates outnumber losses. Clamped to
    /// the 24-bit signed field of the report block.
    public var cumulativeLost: Int32 {
        let lost = Int64(expected) - Int64(received)
        return Int32(Swift.max(-0x80_0000, Swift.min(0x7F_FFFF, lost)))
    }

    /// The fraction lost since the previous call, as the 8-bit fixed-point value of a report
    /// block (RFC 3550 A.3), and the interval counters reset.
    public mutating func takeFractionLost() -> UInt8 {
        let expectedInterval = Int64(expected) - Int64(expectedPrior)
        let receivedInterval = Int64(received) - Int64(receivedPrior)
        expectedPrior = expected
        receivedPrior = received
        let lostInterval = expectedInterval - receivedInterval
        guard expectedInterval > 0, lostInterval > 0 else { return 0 }
        return UInt8(Swift.min(255, (lostInterval << 8) / expectedInterval))
    }
}
