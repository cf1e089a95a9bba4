public import NIOCore

/// One side of a bridge. A call leg is a leg, whether it faces the legacy trunk, the cloud or a
/// mesh peer: what differs is only what offer/answer agreed (codec, payload types, SRTP keys,
/// where the peer is).
public enum MediaLegSide: Int, Sendable, CaseIterable, Hashable {
    case a = 0, b = 1

    public var other: MediaLegSide { self == .a ? .b : .a }
}

/// What offer/answer agreed for one leg, in media terms (no SDP here: the gateway maps
/// `SDPNegotiatedAudio` onto this).
public struct MediaLegConfiguration: Sendable {
    public struct SRTPKeys: Sendable {
        /// We protect what we send with this (the key in our SDP).
        public var local: SRTPKeyMaterial
        /// We check and decrypt what we receive with this (the key in the peer's SDP).
        public var remote: SRTPKeyMaterial

        public init(local: SRTPKeyMaterial, remote: SRTPKeyMaterial) {
            self.local = local
            self.remote = remote
        }
    }

    public enum DTMFTransport: Sendable, Equatable {
        /// RFC 4733 telephone-event with this payload type (its clock is the codec's).
        case telephoneEvent(payloadType: UInt8)
        /// The leg takes no telephone-event: digits go out as SIP INFO (through the delegate).
        case sipInfo
    }

    public var codec: AudioCodecKind
    public var payloadType: UInt8
    public var dtmf: DTMFTransport
    /// The telephone-event's RTP clock when it is not the codec's (Opus with
    /// telephone-event/8000): event durations count in it.
    public var telephoneEventClockRate: Int?
    /// Where the peer said (in SDP) it receives RTP. Packets are accepted only from this IP;
    /// the port latches to where they come from (symmetric RTP).
    public var remote: SocketAddress
    /// The peer's RTCP address; nil with rtcp-mux (RFC 5761).
    public var remoteRTCP: SocketAddress?
    public var srtp: SRTPKeys?
    /// Packet time in milliseconds.
    public var ptime: Int
    public var codecOptions: AudioCodecOptions
    /// RTCP CNAME (RFC 3550 §6.5.1).
    public var canonicalName: String
    /// What the leg's negotiated direction allows (RFC 3264 §5.1, §8.4): `sends` false when the
    /// peer holds us or is on hold (`recvonly`, `inactive`, or the old `c=0.0.0.0`): nothing
    /// goes to it; `receives` false when we put it on hold (`sendonly`, `inactive`): its RTP is
    /// dropped. RTCP flows either way (RFC 3264 §5.1).
    public var sends = true
    public var receives = true

    public init(
        codec: AudioCodecKind, payloadType: UInt8, dtmf: DTMFTransport, remote: SocketAddress, remoteRTCP: SocketAddress? = nil,
        srtp: SRTPKeys? = nil, ptime: Int = 20, codecOptions: AudioCodecOptions = .init(), canonicalName: String = "symphony-bridge"
    ) {
        self.codec = codec
        self.payloadType = payloadType
        self.dtmf = dtmf
        self.remote = remote
        self.remoteRTCP = remoteRTCP
        self.srtp = srtp
        self.ptime = ptime
        self.codecOptions = codecOptions
        self.canonicalName = canonicalName
    }

    /// The configuration as the bridge runs it: a packet time the codec can be framed in (else
    /// 20 ms), and a telephone-event clock the engine can count in (else the digits of this leg
    /// go by SIP INFO). Whatever offer/answer let through, nothing below sizes a buffer, a frame
    /// or a timer from an unchecked number (docs/RELIABILITY.md).
    public var checked: MediaLegConfiguration {
        var config = self
        config.ptime = codec.usablePacketTime(ptime)
        if let rate = telephoneEventClockRate, !Self.telephoneEventClockRates.contains(rate) {
            config.telephoneEventClockRate = nil
            config.dtmf = .sipInfo
        }
        return config
    }

    /// The clocks a telephone-event may count in (RFC 4733 §2.1: its codec's; these are ours).
    public static let telephoneEventClockRates: Set<Int> = [8000, 16000, 48000]

    var frameTicks: Int { codec.timestampTicks(milliseconds: ptime) }

    /// The clock event durations count in.
    var eventClockRate: Int { telephoneEventClockRate ?? codec.rtpClockRate }

    var telephoneEventPayloadType: UInt8? {
        if case .telephoneEvent(let pt) = dtmf { return pt }
        return nil
    }
}

/// Counters of one leg, for status and statistics (MQTT `stats`, call records).
public struct MediaLegCounters: Sendable, Equatable {
    public var packetsReceived: UInt64 = 0
    public var packetsSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    /// SRTP packets whose authentication failed: dropped, never played.
    public var authenticationFailures: UInt64 = 0
    public var replayed: UInt64 = 0
    /// Packets from an address other than the one in the peer's SDP.
    public var wrongSource: UInt64 = 0
    public var malformed: UInt64 = 0
    /// Packets with a payload type the leg did not negotiate.
    public var unknownPayloadType: UInt64 = 0
    public var rtcpReceived: UInt64 = 0
    public var rtcpSent: UInt64 = 0
    public var dtmfEvents: UInt64 = 0
    public var concealedFrames: UInt64 = 0
    public var latePackets: UInt64 = 0
    /// Packets that do not fit the leg's frame budget (an empty payload, more than 120 ms of
    /// audio, a datagram larger than the receive buffer): dropped, never decoded.
    public var oversized: UInt64 = 0
    /// Digits past the rate a keypad can produce (`MediaBridge.digitRate`): relayed in the media
    /// where the other leg takes telephone-event, but neither reported nor sent as SIP INFO.
    public var digitsThrottled: UInt64 = 0
    /// RTP that arrived or was due while the direction said no (hold): neither played nor sent.
    public var heldBack: UInt64 = 0

    /// Every packet this leg dropped instead of playing: malformed, failed SRTP, wrong source or
    /// payload type, oversized.
    public var dropped: UInt64 {
        malformed &+ authenticationFailures &+ replayed &+ wrongSource &+ unknownPayloadType &+ oversized
    }

    public init() {}
}

/// Where the bridge's packets go: the socket layer (or a test).
public protocol MediaPacketSink: AnyObject {
    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp: Bool)
}

/// What the bridge tells the call layer.
public protocol MediaBridgeDelegate: AnyObject {
    /// A DTMF digit arrived on `leg` for a peer that takes SIP INFO (the other leg has no
    /// telephone-event): send it as `application/dtmf-relay`.
    func mediaBridge(_ bridge: MediaBridge, receivedDigit digit: Character, durationMilliseconds: Int, on leg: MediaLegSide)

    /// A digit that arrived on `leg` was relayed as RFC 4733 events to the other leg (for
    /// status: a door was opened). Called once per digit, at its end.
    func mediaBridge(_ bridge: MediaBridge, relayedDigit digit: Character, on leg: MediaLegSide)
}

extension MediaBridgeDelegate {
    public func mediaBridge(_ bridge: MediaBridge, relayedDigit digit: Character, on leg: MediaLegSide) {}
}
