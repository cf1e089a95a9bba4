/// The RTCP state of one media stream (one SSRC we send, one remote source we receive): it counts
/// what we send, keeps the receive statistics, answers the peer's sender reports with LSR/DLSR,
/// and measures the round-trip time from the peer's report blocks (RFC 3550 §6.4). Times are
/// injected (Unix nanoseconds), so it is a value tested without a clock.
public struct RTCPReporter: Sendable {
    public let ssrc: UInt32
    public let canonicalName: String
    public let clockRate: Int
    public var receiveStatistics = RTPReceiveStatistics()

    public private(set) var packetsSent: UInt32 = 0
    public private(set) var octetsSent: UInt32 = 0
    private var lastSentTimestamp: UInt32 = 0
    private var lastSentAt: UInt64 = 0
    private var lastSenderReportReceived: (compact: UInt32, at: UInt64)?
    /// Arrival times count from the first packet received, so the conversion to RTP clock units
    /// cannot overflow.
    private var receiveEpoch: UInt64?
    /// The latest round-trip time measured from a report block about our SSRC.
    public private(set) var roundTripTime: Duration?
    /// What the peer last reported about our stream.
    public private(set) var remoteReport: RTCPReportBlock?

    public init(ssrc: UInt32, canonicalName: String, clockRate: Int) {
        self.ssrc = ssrc
        self.canonicalName = canonicalName
        self.clockRate = clockRate
    }

    /// Records one RTP packet we sent.
    public mutating func sent(payloadBytes: Int, timestamp: UInt32, at now: UInt64) {
        packetsSent &+= 1
        octetsSent &+= UInt32(truncatingIfNeeded: payloadBytes)
        lastSentTimestamp = timestamp
        lastSentAt = now
    }

    /// Records one RTP packet received (arrival converted to the stream's RTP clock here).
    @discardableResult
    public mutating func received(sequenceNumber: UInt16, timestamp: UInt32, ssrc: UInt32, at now: UInt64) -> RTPSequenceTracker.Verdict {
        let epoch = receiveEpoch ?? now
        receiveEpoch = epoch
        let arrival = Int64(truncatingIfNeeded: (now &- epoch) / 1000 &* UInt64(clockRate) / 1_000_000)
        return receiveStatistics.record(sequenceNumber: sequenceNumber, timestamp: timestamp, ssrc: ssrc, arrival: arrival)
    }

    /// Takes in a compound RTCP packet from the peer.
    public mutating func receive(_ packets: [RTCPPacket], at now: UInt64) {
        let arrival = RTCPTiming.compact(RTCPTiming.ntpTimestamp(unixNanoseconds: now))
        for packet in packets {
            let blocks: [RTCPReportBlock]
            switch packet {
            case .senderReport(let sr):
                lastSenderReportReceived = (sr.compactNTP, now)
                blocks = sr.reports
            case .receiverReport(let rr):
                blocks = rr.reports
            default:
                continue
            }
            for block in blocks where block.ssrc == ssrc {
                remoteReport = block
                if let rtt = RTCPTiming.roundTrip(block: block, arrival: arrival) { roundTripTime = rtt }
            }
        }
    }

    /// The compound packet to send now: an SR when we sent RTP since the start (else an RR), with
    /// one report block about the remote source if it is known, then SDES CNAME (RFC 3550 §6.1).
    public mutating func makeReport(at now: UInt64) -> [UInt8] {
        var blocks: [RTCPReportBlock] = []
        if let remote = receiveStatistics.lastSSRC, receiveStatistics.received > 0 {
            var lsr: UInt32 = 0
            var dlsr: UInt32 = 0
            if let last = lastSenderReportReceived {
                lsr = last.compact
                // In units of 1/65536 s (RFC 3550 §6.4.1); an SR older than the 32-bit field can
                // say (18 h) is reported as the field's maximum, never overflowing the product.
                let elapsed = min(now &- last.at, 65_535 * 1_000_000_000)
                dlsr = UInt32(truncatingIfNeeded: elapsed * 65536 / 1_000_000_000)
            }
            blocks.append(
                RTCPReportBlock(
                    ssrc: remote, fractionLost: receiveStatistics.takeFractionLost(),
                    cumulativeLost: receiveStatistics.cumulativeLost,
                    extendedHighestSequence: receiveStatistics.extendedHighestSequence,
                    jitter: receiveStatistics.jitter, lastSenderReport: lsr, delaySinceLastSenderReport: dlsr))
        }
        var out: [UInt8] = []
        out.reserveCapacity(96)
        if packetsSent > 0 {
            // The SR's RTP timestamp corresponds to `now` on the media clock (§6.4.1).
            let elapsed = (now &- lastSentAt) / 1000 &* UInt64(clockRate) / 1_000_000
            let rtpNow = lastSentTimestamp &+ UInt32(truncatingIfNeeded: elapsed)
            RTCPPacket.senderReport(
                RTCPSenderReport(
                    ssrc: ssrc, ntpTimestamp: RTCPTiming.ntpTimestamp(unixNanoseconds: now), rtpTimestamp: rtpNow,
                    packetCount: packetsSent, octetCount: octetsSent, reports: blocks)
            ).serialize(into: &out)
        } else {
            RTCPPacket.receiverReport(RTCPReceiverReport(ssrc: ssrc, reports: blocks)).serialize(into: &out)
        }
        RTCPPacket.sourceDescription([RTCPSourceDescription(ssrc: ssrc, canonicalName: canonicalName)]).serialize(into: &out)
        return out
    }
}
