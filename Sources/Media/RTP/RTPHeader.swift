/// The fixed RTP header and what follows it (RFC 3550 §5.1, §5.3.1 header extension), read from
/// and written to raw bytes in place. The packet path never copies a payload to parse a header.
public struct RTPHeader: Sendable, Equatable {
    public var marker: Bool
    public var payloadType: UInt8
    public var sequenceNumber: UInt16
    public var timestamp: UInt32
    public var ssrc: UInt32
    /// Bytes before the payload: 12 + 4 per CSRC + the header extension, if any.
    public var headerLength: Int
    /// Bytes of padding at the end (RFC 3550 §5.1 P bit), already excluded from the payload.
    public var paddingLength: Int
    public var csrcCount: Int
    public var hasExtension: Bool

    public static let fixedLength = 12

    public init(
        marker: Bool = false, payloadType: UInt8, sequenceNumber: UInt16, timestamp: UInt32, ssrc: UInt32
    ) {
        self.marker = marker
        self.payloadType = payloadType
        self.sequenceNumber = sequenceNumber
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.headerLength = Self.fixedLength
        self.paddingLength = 0
        self.csrcCount = 0
        self.hasExtension = false
    }

    /// The payload's byte range within a packet of `packetLength` bytes.
    public func payloadRange(packetLength: Int) -> Range<Int> {
        headerLength..<(packetLength - paddingLength)
    }

    /// Parses the header of an RTP packet. Checks what a receiver must (RFC 3550 A.1): version 2,
    /// lengths that fit, padding that fits. Does not tell RTP from RTCP; see `RTPDemultiplexer`.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(RTPParseError) -> RTPHeader {
        let count = bytes.count
        guard count >= fixedLength else { throw .tooShort }
        let b0 = bytes[0]
        guard b0 >> 6 == 2 else { throw .badVersion }
        let b1 = bytes[1]
        let csrcCount = Int(b0 & 0x0F)
        var headerLength = fixedLength + 4 * csrcCount
        let hasExtension = b0 & 0x10 != 0
        if hasExtension {
            guard count >= headerLength + 4 else { throw .tooShort }
            let words = Int(bytes.loadBigEndianUInt16(at: headerLength + 2))
            headerLength += 4 + 4 * words
        }
        guard count >= headerLength else { throw .tooShort }
        var padding = 0
        if b0 & 0x20 != 0 {
            padding = Int(bytes[count - 1])
            guard padding > 0, headerLength + padding <= count else { throw .badPadding }
        }
        var header = RTPHeader(
            marker: b1 & 0x80 != 0,
            payloadType: b1 & 0x7F,
            sequenceNumber: bytes.loadBigEndianUInt16(at: 2),
            timestamp: bytes.loadBigEndianUInt32(at: 4),
            ssrc: bytes.loadBigEndianUInt32(at: 8)
        )
        header.headerLength = headerLength
        header.paddingLength = padding
        header.csrcCount = csrcCount
        header.hasExtension = hasExtension
        return header
    }

    /// Writes a fixed 12-byte header (no CSRC, no extension, no padding) at the start of `bytes`.
    public func writeFixed(into bytes: UnsafeMutableRawBufferPointer) {
        precondition(bytes.count >= Self.fixedLength)
        bytes[0] = 0x80
        bytes[1] = (marker ? 0x80 : 0) | (payloadType & 0x7F)
        bytes.storeBigEndian(sequenceNumber, at: 2)
        bytes.storeBigEndian(timestamp, at: 4)
        bytes.storeBigEndian(ssrc, at: 8)
    }

    /// Rewrites marker, payload type, sequence number, timestamp and SSRC of a packet in place,
    /// keeping its CSRCs, extension and payload: what a relay does to each forwarded packet.
    public static func rewrite(
        _ bytes: UnsafeMutableRawBufferPointer,
        marker: Bool, payloadType: UInt8, sequenceNumber: UInt16, timestamp: UInt32, ssrc: UInt32
    ) {
        bytes[1] = (marker ? 0x80 : 0) | (payloadType & 0x7F)
        bytes.storeBigEndian(sequenceNumber, at: 2)
        bytes.storeBigEndian(timestamp, at: 4)
        bytes.storeBigEndian(ssrc, at: 8)
    }
}

public enum RTPParseError: Error, Sendable, Equatable {
    case tooShort
    case badVersion
    case badPadding
    case badLength
    case unknownPacketType(UInt8)
}

/// RTP and RTCP on one port (RFC 5761 §4): the second byte of RTCP packet types 192–223 (SR, RR,
/// SDES, BYE, APP and the feedback types) cannot be an RTP payload type with the marker bit in
/// the ranges RFC 5761 allows, so that byte tells them apart.
public enum RTPDemultiplexer {
    public enum Kind: Sendable, Equatable { case rtp, rtcp, other }

    @inlinable
    public static func classify(_ bytes: UnsafeRawBufferPointer) -> Kind {
        guard bytes.count >= 2, bytes[0] >> 6 == 2 else { return .other }
        return (192...223).contains(bytes[1]) ? .rtcp : .rtp
    }
}

extension UnsafeRawBufferPointer {
    @inlinable
    func loadBigEndianUInt16(at offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    @inlinable
    func loadBigEndianUInt32(at offset: Int) -> UInt32 {
        UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16 | UInt32(self[offset + 2]) << 8
            | UInt32(self[offset + 3])
    }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable
    func storeBigEndian(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    @inlinable
    func storeBigEndian(_ value: UInt32, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value >> 24)
        self[offset + 1] = UInt8(truncatingIfNeeded: value >> 16)
        self[offset + 2] = UInt8(truncatingIfNeeded: value >> 8)
        self[offset + 3] = UInt8(truncatingIfNeeded: value)
    }
}
