/// Relays RFC 4733 events from one stream to another with a different clock rate and payload
/// type. An input event is identified by its RTP timestamp (§2.5.1.1: all packets of one event
/// share the timestamp of its start); the output event gets its own timestamp on the output
/// timeline, the marker bit on its first packet (§2.5.1.2), and its duration scaled to the
/// output clock. Retransmitted end packets (§2.5.1.4) are relayed as such.
public struct TelephoneEventRelay: Sendable, Equatable {
    public let inputClockRate: Int
    public let outputClockRate: Int
    private var currentInputTimestamp: UInt32?
    private var currentOutputTimestamp: UInt32 = 0
    private var endedInputTimestamp: UInt32?

    public init(inputClockRate: Int, outputClockRate: Int) {
        self.inputClockRate = inputClockRate
        self.outputClockRate = outputClockRate
    }

    public struct Output: Sendable, Equatable {
        public var event: TelephoneEvent
        public var timestamp: UInt32
        public var marker: Bool
        /// True the first time the end of this event is seen: the moment to report the digit.
        public var completesEvent: Bool
    }

    /// Maps one input event packet. `outputTimestamp` is where the output timeline is now (used
    /// when the event is new). Nil for packets of an event that already ended and was relayed.
    public mutating func relay(_ event: TelephoneEvent, inputTimestamp: UInt32, outputTimestamp: UInt32) -> Output? {
        var marker = false
        if currentInputTimestamp != inputTimestamp {
            // A new event; ignore stragglers of the previous one.
            if let ended = endedInputTimestamp, RTPSerialNumber.distance(from: ended, to: inputTimestamp) <= 0 { return nil }
            currentInputTimestamp = inputTimestamp
            currentOutputTimestamp = outputTimestamp
            marker = true
        }
        var out = event
        // Clocks are checked (`MediaLegConfiguration.checked`), but a relay must not trap on
        // whatever it is given: the product stays far inside Int for any 32-bit clock.
        let scaled = inputClockRate > 0 ? Int(event.duration) * (outputClockRate & 0xFFFF_FFFF) / inputClockRate : 0
        out.duration = UInt16(clamping: scaled)
        var completes = false
        if event.isEnd {
            completes = endedInputTimestamp != inputTimestamp
            endedInputTimestamp = inputTimestamp
        }
        return Output(event: out, timestamp: currentOutputTimestamp, marker: marker, completesEvent: completes)
    }
}

/// Generates the RFC 4733 packets of one digit to inject into a stream (a SIP INFO digit from
/// the other leg): a start packet with the marker, updates every packet interval, and three end
/// packets (§2.5.1.4), all with the timestamp of the start.
public struct TelephoneEventGenerator: Sendable, Equatable {
    public let event: UInt8
    public let totalDuration: Int
    public let step: Int
    public let timestamp: UInt32
    private var elapsed = 0
    private var endsSent = 0

    /// `duration` and `step` in ticks of the stream's clock.
    public init(event: UInt8, duration: Int, step: Int, timestamp: UInt32) {
        self.event = event
        // Every count fits the 16-bit duration field, and each packet moves on by a tick at
        // least, so a digit always ends (RFC 4733 §2.5.1.3).
        self.step = min(max(step, 1), Int(UInt16.max))
        self.totalDuration = max(self.step, min(duration, Int(UInt16.max)))
        self.timestamp = timestamp
    }

    public var isFinished: Bool { endsSent >= 3 }

    /// The next packet to send, every `step` ticks, or nil when done.
    public mutating func next() -> (event: TelephoneEvent, marker: Bool)? {
        guard !isFinished else { return nil }
        let marker = elapsed == 0
        elapsed = min(totalDuration, elapsed + step)
        if elapsed >= totalDuration {
            endsSent += 1
            return (TelephoneEvent(event: event, isEnd: true, duration: UInt16(clamping: totalDuration)), marker)
        }
        return (TelephoneEvent(event: event, duration: UInt16(clamping: elapsed)), marker)
    }
}
