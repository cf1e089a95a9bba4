/// An adaptive jitter buffer for one transcoded input (only the transcoding path has one:
/// passthrough forwards at once and leaves de-jittering to the far end).
///
/// Each packet gets a playout time: its media time on a playout clock anchored at the fastest
/// transit seen, plus an offset. The offset starts at zero, so a packet is due the moment it
/// arrives and costs no latency. A packet that arrives after its frame was
/// already concealed grows the offset by how late it was (capped at `maxDelay`); when for a long
/// stretch every packet waited more than a frame, the offset shrinks by one frame at a time, by
/// dropping one frame. A pure value: times are injected, in nanoseconds.
public struct JitterBuffer: Sendable {
    public enum Item: Sendable, Equatable {
        /// The next frame, in order.
        case frame(sequence: UInt16, timestamp: UInt32, payload: [UInt8])
        /// The next frame is missing and its time has come: conceal it. `next` is the payload of
        /// the packet after it when already here (for Opus in-band FEC).
        case lost(sequence: UInt16, next: [UInt8]?)
    }

    public let clockRate: Int
    public let frameTicks: Int
    public let maxDelay: Duration
    public static let capacity = 64

    private var slots: [Slot?] = Array(repeating: nil, count: JitterBuffer.capacity)
    /// The source being played: another SSRC is a new stream (RFC 3550 §8.2), started over.
    private var ssrc: UInt32?
    /// A far-behind packet seen just before, kept to tell a restarted sender (two in a row,
    /// RFC 3550 A.1's probation) from one stray packet.
    private var farBehind: UInt16?
    /// The earliest the anchor may go: it follows faster transits, but never by more than the
    /// largest delay the buffer would add, so packets with timestamps in the future cannot make
    /// every later frame due at once.
    private var anchorFloor: Int64 = 0
    private var expectedSequence: UInt16?
    private var expectedTimestamp: UInt32 = 0
    /// Playout time (ns, before the offset) of `expectedTimestamp`.
    private var anchor: Int64 = 0
    private var offsetNanoseconds: Int64 = 0
    /// The least wait (ns) of the packets since the last shrink check.
    private var minimumWait: Int64 = .max
    private var packetsSinceCheck = 0

    public private(set) var late: UInt64 = 0
    public private(set) var duplicates: UInt64 = 0
    public private(set) var concealed: UInt64 = 0
    public private(set) var dropped: UInt64 = 0

    private struct Slot: Sendable {
        var sequence: UInt16
        var timestamp: UInt32
        var payload: [UInt8]
    }

    public init(clockRate: Int, frameTicks: Int, maxDelay: Duration) {
        self.clockRate = clockRate
        self.frameTicks = frameTicks
        self.maxDelay = maxDelay
    }

    /// The current added delay.
    public var delay: Duration { .nanoseconds(offsetNanoseconds) }

    private var frameNanoseconds: Int64 { Int64(frameTicks) * 1_000_000_000 / Int64(clockRate) }
    private var maxNanoseconds: Int64 { Int64(maxDelay.components.seconds) * 1_000_000_000 + maxDelay.components.attoseconds / 1_000_000_000 }

    private func mediaNanoseconds(_ timestamp: UInt32) -> Int64 {
        // Relative to the expected timestamp, so the 32-bit wrap never matters.
        let ticks = Int64(RTPSerialNumber.distance(from: expectedTimestamp, to: timestamp))
        return ticks * 1_000_000_000 / Int64(clockRate)
    }

    /// Playout time of a timestamp.
    private func due(_ timestamp: UInt32) -> Int64 { anchor + mediaNanoseconds(timestamp) + offsetNanoseconds }

    public mutating func insert(sequence: UInt16, timestamp: UInt32, ssrc: UInt32 = 0, payload: [UInt8], arrival: UInt64) {
        // Times past Int64 (292 years of uptime) are not times.
        let now = Int64(clamping: arrival)
        guard let expected = expectedSequence, self.ssrc == ssrc else {
            if expectedSequence != nil { self = JitterBuffer(clockRate: clockRate, frameTicks: frameTicks, maxDelay: maxDelay, keepingCountersOf: self) }
            self.ssrc = ssrc
            expectedSequence = sequence
            expectedTimestamp = timestamp
            anchor = now
            anchorFloor = now - maxNanoseconds - frameNanoseconds
            slots[Int(sequence) % Self.capacity] = Slot(sequence: sequence, timestamp: timestamp, payload: payload)
            return
        }
        let ahead = RTPSerialNumber.distance(from: expected, to: sequence)
        if ahead < -Self.capacity {
            // Far behind: one such packet is a stray, two in a row a sender that started over.
            defer { farBehind = sequence }
            if let previous = farBehind, sequence == previous &+ 1 {
                self = JitterBuffer(clockRate: clockRate, frameTicks: frameTicks, maxDelay: maxDelay, keepingCountersOf: self)
                insert(sequence: sequence, timestamp: timestamp, ssrc: ssrc, payload: payload, arrival: arrival)
                return
            }
            late &+= 1
            return
        }
        farBehind = nil
        if ahead < 0 {
            // Its frame was already played or concealed: it came too late. Grow the delay.
            late &+= 1
            let lateness = now - due(timestamp)
            if lateness > 0 { offsetNanoseconds = min(maxNanoseconds, offsetNanoseconds + min(lateness, maxNanoseconds) + frameNanoseconds / 4) }
            return
        }
        // Far ahead (a restart, or a long outage), or a timestamp that does not go with the
        // sequence number (a jump of more than the buffer's reach): start over from this packet.
        let media = mediaNanoseconds(timestamp)
        if ahead >= Self.capacity || abs(media - Int64(ahead) * frameNanoseconds) > maxNanoseconds + 1_000_000_000 {
            self = JitterBuffer(clockRate: clockRate, frameTicks: frameTicks, maxDelay: maxDelay, keepingCountersOf: self)
            insert(sequence: sequence, timestamp: timestamp, ssrc: ssrc, payload: payload, arrival: arrival)
            return
        }
        let index = Int(sequence) % Self.capacity
        if let existing = slots[index], existing.sequence == sequence {
            duplicates &+= 1
            return
        }
        slots[index] = Slot(sequence: sequence, timestamp: timestamp, payload: payload)
        // The anchor follows the fastest transit seen: a packet that arrives before its due time
        // shows the first packet was slow, and waiting for its timing would only add delay.
        anchor = max(anchorFloor, min(anchor, now - media))
        minimumWait = min(minimumWait, due(timestamp) - now)
        packetsSinceCheck += 1
    }

    private init(clockRate: Int, frameTicks: Int, maxDelay: Duration, keepingCountersOf old: JitterBuffer) {
        self.init(clockRate: clockRate, frameTicks: frameTicks, maxDelay: maxDelay)
        late = old.late
        duplicates = old.duplicates
        concealed = old.concealed
        dropped = old.dropped
        offsetNanoseconds = old.offsetNanoseconds
    }

    /// The next item whose playout time has come, or nil.
    public mutating func pop(now: UInt64) -> Item? {
        guard let expected = expectedSequence else { return nil }
        let index = Int(expected) % Self.capacity
        let present = slots[index].map { $0.sequence == expected } ?? false
        guard Int64(now) >= due(expectedTimestamp) else { return nil }
        // Shrink: a whole stretch (50 packets) where every packet would still have been on time
        // a frame earlier.
        if packetsSinceCheck >= 50 {
            if minimumWait >= frameNanoseconds, offsetNanoseconds >= frameNanoseconds, present {
                offsetNanoseconds -= frameNanoseconds
                dropped &+= 1
                slots[index] = nil
                advance()
                packetsSinceCheck = 0
                minimumWait = .max
                return pop(now: now)
            }
            packetsSinceCheck = 0
            minimumWait = .max
        }
        if present, let slot = slots[index] {
            slots[index] = nil
            advance()
            return .frame(sequence: slot.sequence, timestamp: slot.timestamp, payload: slot.payload)
        }
        // Missing. It is lost only once something newer is here; until then it may still come
        // (late), and an input that paused (hold, silence suppression) is not concealed at all.
        guard slots.contains(where: { $0 != nil }) else { return nil }
        let nextIndex = Int(expected &+ 1) % Self.capacity
        let next = slots[nextIndex].flatMap { $0.sequence == expected &+ 1 ? $0.payload : nil }
        let item = Item.lost(sequence: expected, next: next)
        concealed &+= 1
        advance()
        return item
    }

    private mutating func advance() {
        expectedSequence = expectedSequence.map { $0 &+ 1 }
        expectedTimestamp &+= UInt32(truncatingIfNeeded: frameTicks)
        // Keep the anchor on the new expected timestamp, so media times stay small.
        anchor += frameNanoseconds
        anchorFloor += frameNanoseconds
    }
}
