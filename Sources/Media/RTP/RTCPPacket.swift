/// RTCP packets (RFC 3550 §6.4–6.6): sender and receiver reports with their report blocks, SDES
/// CNAME and BYE, parsed from and written to compound packets. Other packet types (APP, the
/// RFC 4585 feedback types) are kept as `.other` so a compound packet is never refused for them.
public enum RTCPPacket: Sendable, Equatable {
    case senderReport(RTCPSenderReport)
    case receiverReport(RTCPReceiverReport)
    case sourceDescription([RTCPSourceDescription])
    case goodbye(ssrcs: [UInt32], reason: String?)
    case other(packetType: UInt8)

    public static let senderReportType: UInt8 = 200
    public static let receiverReportType: UInt8 = 201
    public static let sourceDescriptionType: UInt8 = 202
    public static let goodbyeType: UInt8 = 203
}

/// One report block: what the sender of the report knows about one source it receives.
public struct RTCPReportBlock: Sendable, Equatable {
    public var ssrc: UInt32
    public var fractionLost: UInt8
    public var cumulativeLost: Int32
    public var extendedHighestSequence: UInt32
    public var jitter: UInt32
    /// Middle 32 bits of the NTP timestamp of the last SR received from this source, or 0.
    public var lastSenderReport: UInt32
    /// Delay since that SR, in units of 1/65536 s.
    public var delaySinceLastSenderReport: UInt32

    public init(
        ssrc: UInt32, fractionLost: UInt8, cumulativeLost: Int32, extendedHighestSequence: UInt32,
        jitter: UInt32, lastSenderReport: UInt32, delaySinceLastSenderReport: UInt32
    ) {
        self.ssrc = ssrc
        self.fractionLost = fractionLost
        self.cumulativeLost = cumulativeLost
        self.extendedHighestSequence = extendedHighestSequence
        self.jitter = jitter
        self.lastSenderReport = lastSenderReport
        self.delaySinceLastSenderReport = delaySinceLastSenderReport
    }

    static let length = 24
}

public struct RTCPSenderReport: Sendable, Equatable {
    public var ssrc: UInt32
    /// 64-bit NTP timestamp (RFC 3550 §4).
    public var ntpTimestamp: UInt64
    public var rtpTimestamp: UInt32
    public var packetCount: UInt32
    public var octetCount: UInt32
    public var reports: [RTCPReportBlock]

    public init(ssrc: UInt32, ntpTimestamp: UInt64, rtpTimestamp: UInt32, packetCount: UInt32, octetCount: UInt32, reports: [RTCPReportBlock] = []) {
        self.ssrc = ssrc
        self.ntpTimestamp = ntpTimestamp
        self.rtpTimestamp = rtpTimestamp
        self.packetCount = packetCount
        self.octetCount = octetCount
        self.reports = reports
    }

    /// The middle 32 bits of the NTP timestamp: the LSR value receivers echo back.
    public var compactNTP: UInt32 { UInt32(truncatingIfNeeded: ntpTimestamp >> 16) }
}

public struct RTCPReceiverReport: Sendable, Equatable {
    public var ssrc: UInt32
    public var reports: [RTCPReportBlock]

    public init(ssrc: UInt32, reports: [RTCPReportBlock]) {
        self.ssrc = ssrc
        self.reports = reports
    }
}

public struct RTCPSourceDescription: Sendable, Equatable {
    public var ssrc: UInt32
    public var canonicalName: String?

    public init(ssrc: UInt32, canonicalName: String?) {
        self.ssrc = ssrc
        self.canonicalName = canonicalName
    }
}

extension RTCPPacket {
    /// Parses a compound RTCP packet (RFC 3550 §6.1). Every sub-packet must be version 2 and its
    /// length must fit; the first must be SR or RR (A.2 validity check) unless `strictCompound` is
    /// false (RFC 5506 reduced-size RTCP).
    public static func parseCompound(_ bytes: UnsafeRawBufferPointer, strictCompound: Bool = true) throws(RTPParseError) -> [RTCPPacket] {
        var packets: [RTCPPacket] = []
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= 4 else { throw .tooShort }
            let b0 = bytes[offset]
            guard b0 >> 6 == 2 else { throw .badVersion }
            let type = bytes[offset + 1]
            let length = (Int(bytes.loadBigEndianUInt16(at: offset + 2)) + 1) * 4
            guard offset + length <= bytes.count else { throw .badLength }
            if strictCompound, offset == 0, type != senderReportType, type != receiverReportType {
                throw .unknownPacketType(type)
            }
            var bodyEnd = offset + length
            if b0 & 0x20 != 0 {
                // Only the last packet of a compound may be padded (RFC 3550 §6.4.1).
                let padding = Int(bytes[bodyEnd - 1])
                guard padding > 0, padding <= length - 4, bodyEnd == bytes.count else { throw .badPadding }
                bodyEnd -= padding
            }
            let count = Int(b0 & 0x1F)
            let body = UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<bodyEnd])
            packets.append(try parseOne(type: type, count: count, body: body))
            offset += length
        }
        guard !packets.isEmpty else { throw .tooShort }
        return packets
    }

    private static func parseBlocks(_ body: UnsafeRawBufferPointer, from start: Int, count: Int) throws(RTPParseError) -> [RTCPReportBlock] {
        guard body.count >= start + count * RTCPReportBlock.length else { throw .badLength }
        var blocks: [RTCPReportBlock] = []
        blocks.reserveCapacity(count)
        for index in 0..<count {
            let o = start + index * RTCPReportBlock.length
            let lostField = body.loadBigEndianUInt32(at: o + 4) & 0x00FF_FFFF
            // 24-bit two's complement.
            let lost = Int32(bitPattern: lostField << 8) >> 8
            blocks.append(
                RTCPReportBlock(
                    ssrc: body.loadBigEndianUInt32(at: o),
                    fractionLost: body[o + 4],
                    cumulativeLost: lost,
                    extendedHighestSequence: body.loadBigEndianUInt32(at: o + 8),
                    jitter: body.loadBigEndianUInt32(at: o + 12),
                    lastSenderReport: body.loadBigEndianUInt32(at: o + 16),
                    delaySinceLastSenderReport: body.loadBigEndianUInt32(at: o + 20)
                ))
        }
        return blocks
    }

    private static func parseOne(type: UInt8, count: Int, body: UnsafeRawBufferPointer) throws(RTPParseError) -> RTCPPacket {
        switch type {
        case senderReportType:
            guard body.count >= 24 else { throw .badLength }
            let ntp = UInt64(body.loadBigEndianUInt32(at: 4)) << 32 | UInt64(body.loadBigEndianUInt32(at: 8))
            return .senderReport(
                RTCPSenderReport(
                    ssrc: body.loadBigEndianUInt32(at: 0), ntpTimestamp: ntp,
                    rtpTimestamp: body.loadBigEndianUInt32(at: 12),
                    packetCount: body.loadBigEndianUInt32(at: 16), octetCount: body.loadBigEndianUInt32(at: 20),
                    reports: try parseBlocks(body, from: 24, count: count)))
        case receiverReportType:
            guard body.count >= 4 else { throw .badLength }
            return .receiverReport(
                RTCPReceiverReport(ssrc: body.loadBigEndianUInt32(at: 0), reports: try parseBlocks(body, from: 4, count: count)))
        case sourceDescriptionType:
            var chunks: [RTCPSourceDescription] = []
            var o = 0
            for _ in 0..<count {
                guard body.count >= o + 4 else { throw .badLength }
                var chunk = RTCPSourceDescription(ssrc: body.loadBigEndianUInt32(at: o), canonicalName: nil)
                o += 4
                // Items until a zero type, then padding to the next 32-bit boundary (§6.5).
                while true {
                    guard o < body.count else { throw .badLength }
                    let itemType = body[o]
                    if itemType == 0 { break }
                    guard o + 2 <= body.count else { throw .badLength }
                    let itemLength = Int(body[o + 1])
                    guard o + 2 + itemLength <= body.count else { throw .badLength }
                    if itemType == 1 {
                        // Text items are UTF-8 (§6.5); a CNAME that is not is dropped, not mangled.
                        chunk.canonicalName = String(validating: body[(o + 2)..<(o + 2 + itemLength)], as: UTF8.self)
                    }
                    o += 2 + itemLength
                }
                o = (o + 4) & ~3
                chunks.append(chunk)
            }
            return .sourceDescription(chunks)
        case goodbyeType:
            guard body.count >= 4 * count else { throw .badLength }
            let ssrcs = (0..<count).map { body.loadBigEndianUInt32(at: 4 * $0) }
            var reason: String?
            let o = 4 * count
            if body.count > o {
                let length = Int(body[o])
                guard o + 1 + length <= body.count else { throw .badLength }
                reason = String(validating: body[(o + 1)..<(o + 1 + length)], as: UTF8.self)
            }
            return .goodbye(ssrcs: ssrcs, reason: reason)
        default:
            return .other(packetType: type)
        }
    }

    /// Appends this packet in wire format to `out`.
    public func serialize(into out: inout [UInt8]) {
        let start = out.count
        func u32(_ v: UInt32) {
            out.append(UInt8(truncatingIfNeeded: v >> 24)); out.append(UInt8(truncatingIfNeeded: v >> 16))
            out.append(UInt8(truncatingIfNeeded: v >> 8)); out.append(UInt8(truncatingIfNeeded: v))
        }
        func blocks(_ reports: [RTCPReportBlock]) {
            for r in reports {
                u32(r.ssrc)
                u32(UInt32(r.fractionLost) << 24 | (UInt32(bitPattern: r.cumulativeLost) & 0x00FF_FFFF))
                u32(r.extendedHighestSequence); u32(r.jitter); u32(r.lastSenderReport); u32(r.delaySinceLastSenderReport)
            }
        }
        func header(count: Int, type: UInt8) { out += [0x80 | UInt8(count & 0x1F), type, 0, 0] }
        switch self {
        case .senderReport(let sr):
            header(count: sr.reports.count, type: Self.senderReportType)
            u32(sr.ssrc); u32(UInt32(truncatingIfNeeded: sr.ntpTimestamp >> 32)); u32(UInt32(truncatingIfNeeded: sr.ntpTimestamp))
            u32(sr.rtpTimestamp); u32(sr.packetCount); u32(sr.octetCount)
            blocks(sr.reports)
        case .receiverReport(let rr):
            header(count: rr.reports.count, type: Self.receiverReportType)
            u32(rr.ssrc)
            blocks(rr.reports)
        case .sourceDescription(let chunks):
            header(count: chunks.count, type: Self.sourceDescriptionType)
            for chunk in chunks {
                u32(chunk.ssrc)
                if let name = chunk.canonicalName {
                    let bytes = Array(name.utf8.prefix(255))
                    out.append(1); out.append(UInt8(bytes.count)); out += bytes
                }
                // End of items, then pad the chunk to 32 bits (at least one zero byte).
                out.append(0)
                while (out.count - start) % 4 != 0 { out.append(0) }
            }
        case .goodbye(let ssrcs, let reason):
            header(count: ssrcs.count, type: Self.goodbyeType)
            for s in ssrcs { u32(s) }
            if let reason {
                let bytes = Array(reason.utf8.prefix(255))
                out.append(UInt8(bytes.count)); out += bytes
                while (out.count - start) % 4 != 0 { out.append(0) }
            }
        case .other:
            return
        }
        let words = (out.count - start) / 4 - 1
        out[start + 2] = UInt8(truncatingIfNeeded: words >> 8)
        out[start + 3] = UInt8(truncatingIfNeeded: words)
    }
}

/// RTCP timing: NTP timestamps and the round-trip time a sender computes from a receiver's
/// report block (RFC 3550 §6.4.1: RTT = A − LSR − DLSR, in units of 1/65536 s).
public enum RTCPTiming {
    /// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
    public static let ntpUnixOffset: UInt64 = 2_208_988_800

    /// The 64-bit NTP timestamp of a Unix time in nanoseconds.
    public static func ntpTimestamp(unixNanoseconds: UInt64) -> UInt64 {
        let seconds = unixNanoseconds / 1_000_000_000 + ntpUnixOffset
        let fraction = (unixNanoseconds % 1_000_000_000) << 32 / 1_000_000_000
        return seconds << 32 | fraction
    }

    /// The middle 32 bits of an NTP timestamp.
    public static func compact(_ ntp: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: ntp >> 16) }

    /// Round-trip time from a report block that echoes one of our SRs, arriving at `arrival`
    /// (compact NTP). Nil when the block carries no LSR.
    public static func roundTrip(block: RTCPReportBlock, arrival: UInt32) -> Duration? {
        guard block.lastSenderReport != 0 else { return nil }
        let rtt = arrival &- block.lastSenderReport &- block.delaySinceLastSenderReport
        // A negative result (clock trouble, or a block older than the wrap) is no measurement.
        guard Int32(bitPattern: rtt) >= 0 else { return nil }
        return .nanoseconds(Int64(rtt) * 1_000_000_000 / 65536)
    }
}
