public import Media

/// RTP/RTCP inactivity supervision of one bridged call, as a value: it is shown each leg's
/// activity (`MediaBridge.activity`) every few seconds and says when a leg that should be sending
/// has been silent for `timeout`. A leg on hold (we hold it, or it said `inactive`/`recvonly`)
/// is not expected to send: its silence does not count, and its clock starts again when it
/// should send again. A far end that vanished without BYE frees its channel this way (RFC 3550
/// §6.3.5 keeps RTCP going even while nothing is said, so a live peer is never silent).
public struct MediaInactivity: Sendable {
    public let timeout: Double
    private var last: [MediaLegSide: (received: UInt64, since: Double)] = [:]

    /// `timeout` in seconds; `now` the call's answer time (seconds, any epoch).
    public init(timeout: Double, now: Double) {
        self.timeout = timeout
        for leg in MediaLegSide.allCases { last[leg] = (0, now) }
    }

    /// How often to look: a fifth of the timeout, between 1 and 5 s.
    public var checkInterval: Double { min(5, max(1, timeout / 5)) }

    /// One look at a leg. True when it is silent past the timeout.
    public mutating func observe(_ leg: MediaLegSide, received: UInt64, expected: Bool, now: Double) -> Bool {
        guard let previous = last[leg] else { return false }
        if received != previous.received || !expected {
            last[leg] = (received, now)
            return false
        }
        return now - previous.since >= timeout
    }
}
