/// What one output stream of the bridge sends: its own SSRC, sequence numbers and timestamps
/// (rtpengine's per-output `ssrc_ctx`, ARCHITECTURE.md). Inputs may change SSRC, lose packets,
/// pause for DTMF or switch codec; the receiver of this stream sees one continuous source.
public struct RTPOutputStream: Sendable, Equatable {
    public let ssrc: UInt32
    public let clockRate: Int
    public private(set) var nextSequence: UInt16
    /// Timestamp of the next audio frame to send.
    public private(set) var nextTimestamp: UInt32
    /// When the last packet went out (ns), to carry the timeline across a gap.
    public private(set) var lastSentAt: UInt64?
    public private(set) var packetsSent: UInt64 = 0

    /// Random SSRC, sequence and timestamp starts (RFC 3550 §5.1, §8.1).
    public init(clockRate: Int) {
        var generator = SystemRandomNumberGenerator()
        self.init(
            clockRate: clockRate, ssrc: UInt32.random(in: 1 ... .max, using: &generator),
            sequence: UInt16.random(in: .min ... .max, using: &generator), timestamp: UInt32.random(in: .min ... .max, using: &generator))
    }

    public init(clockRate: Int, ssrc: UInt32, sequence: UInt16, timestamp: UInt32) {
        self.clockRate = clockRate
        self.ssrc = ssrc
        self.nextSequence = sequence
        self.nextTimestamp = timestamp
    }

    /// The same stream (SSRC, next sequence number, timeline) going on at another clock rate, after
    /// a codec change: timestamps keep moving forward from where they were.
    public func continued(clockRate: Int) -> RTPOutputStream {
        var next = RTPOutputStream(clockRate: clockRate, ssrc: ssrc, sequence: nextSequence, timestamp: nextTimestamp)
        next.lastSentAt = lastSentAt
        next.packetsSent = packetsSent
        return next
    }

    /// Takes the sequence number for one packet.
    public mutating func takeSequence(at now: UInt64) -> UInt16 {
        defer { nextSequence &+= 1 }
        lastSentAt = now
        packetsSent &+= 1
        return nextSequence
    }

    /// The timestamp of the next audio frame, then advances by `ticks`.
    public mutating func takeTimestamp(advancingBy ticks: Int) -> UInt32 {
        defer { nextTimestamp &+= UInt32(truncatingIfNeeded: ticks) }
        return nextTimestamp
    }

    /// After a pause in sending (the input went quiet, or changed source), moves the timeline on
    /// by the wall-clock time that passed, so timestamps keep pace with real time (RFC 3550 §5.1).
    public mutating func catchUp(to now: UInt64, frameTicks: Int) {
        guard let last = lastSentAt, now > last, frameTicks > 0 else { return }
        // A gap of more than a day counts as a day: the timeline only has to move on.
        let elapsedTicks = Int(min(now - last, 86_400_000_000_000) / 1000 * UInt64(clockRate) / 1_000_000)
        if elapsedTicks > 2 * frameTicks {
            let frames = elapsedTicks / frameTicks
            nextTimestamp &+= UInt32(truncatingIfNeeded: (frames - 1) * frameTicks)
        }
    }
}

/// How a passthrough direction maps input sequence numbers and timestamps onto its output
/// stream: by offsets, so the input's own gaps (loss) stay visible to the far end's concealment,
/// recomputed whenever the input changes SSRC or jumps, so the output never jumps.
public struct RTPPassthroughMapping: Sendable, Equatable {
    private var inputSSRC: UInt32?
    private var sequenceOffset: UInt16 = 0
    private var timestampOffset: UInt32 = 0
    private var lastInputSequence: UInt16 = 0
    private var lastInputTimestamp: UInt32 = 0

    public init() {}

    /// Output (sequence, timestamp) for an input packet; updates `output` as the last sent.
    public mutating func map(
        sequence: UInt16, timestamp: UInt32, ssrc: UInt32, output: inout RTPOutputStream, now: UInt64, frameTicks: Int
    ) -> (sequence: UInt16, timestamp: UInt32) {
        let jump = abs(RTPSerialNumber.distance(from: lastInputSequence, to: sequence)) > RTPSequenceTracker.maxDropout
            || abs(RTPSerialNumber.distance(from: lastInputTimestamp, to: timestamp)) > output.clockRate * 10
        if inputSSRC != ssrc || jump {
            // Rebase: this packet continues the output right after the last one sent.
            output.catchUp(to: now, frameTicks: frameTicks)
            sequenceOffset = output.nextSequence &- sequence
            timestampOffset = output.nextTimestamp &- timestamp
            inputSSRC = ssrc
        }
        lastInputSequence = sequence
        lastInputTimestamp = timestamp
        let outSequence = sequence &+ sequenceOffset
        let outTimestamp = timestamp &+ timestampOffset
        output.advance(pastSequence: outSequence, timestamp: outTimestamp, frameTicks: frameTicks, at: now)
        return (outSequence, outTimestamp)
    }
}

extension RTPOutputStream {
    /// Records a packet sent with a mapped sequence number and timestamp (passthrough).
    mutating func advance(pastSequence sequence: UInt16, timestamp: UInt32, frameTicks: Int, at now: UInt64) {
        if RTPSerialNumber.distance(from: nextSequence, to: sequence) >= 0 { nextSequence = sequence &+ 1 }
        let next = timestamp &+ UInt32(truncatingIfNeeded: frameTicks)
        if RTPSerialNumber.distance(from: nextTimestamp, to: next) > 0 { nextTimestamp = next }
        lastSentAt = now
        packetsSent &+= 1
    }
}
