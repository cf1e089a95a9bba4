public import NIOCore

/// What one side of an anchored call agreed in SDP, in relay terms: where its peer said it
/// receives, whether RTCP shares the RTP port, and the SRTP keys of this leg (ours toward the
/// peer, the peer's toward us). No codec: the anchor forwards whatever payload the ends agreed.
public struct AnchorLegConfiguration: Sendable, Equatable {
    /// The peer's RTP address from its SDP; nil when it gave none that is usable (a name, a
    /// rejected stream): then the leg sends only once it has latched.
    public var remote: SocketAddress?
    /// The peer's RTCP address (`a=rtcp`, RFC 3605); nil: the RTP port + 1.
    public var remoteRTCP: SocketAddress?
    /// RFC 5761: RTCP on the RTP port, both ways.
    public var rtcpMux: Bool
    /// This leg's SRTP keys (re-keyed per leg: `local` is the anchor's, `remote` the peer's);
    /// nil for plain RTP.
    public var srtp: MediaLegConfiguration.SRTPKeys?
    /// False until offer/answer is done for the leg: it takes nothing.
    public var agreed = true
    /// Whether `remote` may be sent to before the peer was heard from. Only for an address that
    /// is the peer's to give: a public unicast one (`AnchorSDP` decides). A private, loopback or
    /// multicast address in SDP is no place to send media an outsider chose.
    public var sendsBeforeLatching = true

    public init(remote: SocketAddress?, remoteRTCP: SocketAddress? = nil, rtcpMux: Bool = false, srtp: MediaLegConfiguration.SRTPKeys? = nil) {
        self.remote = remote
        self.remoteRTCP = remoteRTCP
        self.rtcpMux = rtcpMux
        self.srtp = srtp
    }

    /// A leg that has agreed nothing yet: everything it receives is dropped.
    public static var unknown: AnchorLegConfiguration {
        var config = AnchorLegConfiguration(remote: nil)
        config.agreed = false
        return config
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.agreed == rhs.agreed && lhs.sendsBeforeLatching == rhs.sendsBeforeLatching && lhs.remote == rhs.remote && lhs.remoteRTCP == rhs.remoteRTCP
            && lhs.rtcpMux == rhs.rtcpMux
            && lhs.srtp?.local == rhs.srtp?.local && lhs.srtp?.remote == rhs.srtp?.remote
    }
}

/// Counters of one anchored leg (what it received and what the anchor did with it).
public struct AnchorLegCounters: Sendable, Equatable {
    /// Packets (RTP and RTCP) taken from the peer and forwarded to the other leg.
    public var relayed: UInt64 = 0
    /// Packets whose SRTP/SRTCP authentication failed: dropped, never latched.
    public var authenticationFailures: UInt64 = 0
    /// Packets seen before (or older than the replay window): dropped, never latched.
    public var replayed: UInt64 = 0
    /// Of the authentication failures, how many were RTCP.
    public var rtcpAuthenticationFailures: UInt64 = 0
    /// Plain RTP from a source other than the latched one while that one is still heard.
    public var wrongSource: UInt64 = 0
    /// Not RTP/RTCP, or nothing agreed yet on this leg, or oversized, or from one SSRC more
    /// than `AnchoredStream.maxSources`.
    public var dropped: UInt64 = 0
    /// Times the leg moved to a new source (the first latch counts).
    public var latches: UInt64 = 0
    /// Packets for the other leg that had nowhere to go (no address yet) or failed to protect.
    public var undeliverable: UInt64 = 0

    public init() {}
}

/// The media of one call the core anchors (`[media] anchor = "embedded"`, issue 19): two legs,
/// each facing one end, and nothing in between but SRTP. A packet from leg X is checked and
/// decrypted with X's peer key, encrypted with the anchor's key for the other leg and sent to
/// where that leg's peer actually sends from. Sequence numbers, timestamps, SSRCs and payload
/// types pass unchanged (RFC 3550 §7.3 translator): the ends negotiated them end to end.
///
/// Latching (symmetric RTP, RFC 4961; docs/CLOUD-CORE.md "Media anchoring"): an end behind NAT
/// writes an address in its SDP that is not the one its packets come from, so a leg sends to the
/// source it actually hears. With SRTP the leg follows the source of the latest packet that
/// authenticates with the peer's key — a NAT that changes address heals with the next packet,
/// and nobody without the key can divert the media. A plain RTP leg latches to the first source;
/// it moves to the SDP's own address at once, elsewhere only when its stream (the same SSRC)
/// comes from there after `relatchSilence` of silence from the old source. Before a leg has
/// heard its peer it sends only to an SDP address marked `sendsBeforeLatching`.
///
/// Pure and single-threaded: the media thread owns it; the sink writes to the sockets.
public final class AnchoredStream {
    public static let relatchSilence: UInt64 = 2_000_000_000
    /// SSRCs one leg may send (a phone has one; a few more for a restart): libsrtp keeps state
    /// per SSRC, so a peer with fresh SSRCs in every packet must not grow it without bound.
    public static let maxSources = 8

    struct Leg {
        var config: AnchorLegConfiguration
        var inbound: SRTPSession?
        var outbound: SRTPSession?
        var latched: SocketAddress?
        var latchedRTCP: SocketAddress?
        /// The SSRC of the plain RTP stream the leg latched to.
        var latchedSSRC: UInt32?
        var lastHeard: UInt64 = 0
        /// The SSRCs heard (authenticated, with SRTP), at most `maxSources`.
        var sources: [UInt32] = []
        var counters = AnchorLegCounters()

        init(_ config: AnchorLegConfiguration) throws(SRTPSession.SetupError) {
            self.config = config
            if let keys = config.srtp {
                inbound = try SRTPSession(key: keys.remote, direction: .inbound)
                outbound = try SRTPSession(key: keys.local, direction: .outbound)
            }
        }

        /// Where this leg's RTP goes: the latched source, else the SDP's address if it may.
        var rtpDestination: SocketAddress? { latched ?? (config.sendsBeforeLatching ? config.remote : nil) }

        /// Where this leg's RTCP goes (not muxed): the latched RTCP source, else `a=rtcp`, else
        /// the RTP destination's port + 1 (RFC 3550 §11).
        var rtcpDestination: SocketAddress? {
            if let latchedRTCP { return latchedRTCP }
            if let remoteRTCP = config.remoteRTCP, latched == nil ? config.sendsBeforeLatching : MediaBridge.sameHost(remoteRTCP, latched!) { return remoteRTCP }
            guard var address = rtpDestination, let port = address.port, port < 65535 else { return nil }
            address.port = port + 1
            return address
        }
    }

    private var legs: [Leg]
    private let sink: any MediaPacketSink

    public init(a: AnchorLegConfiguration, b: AnchorLegConfiguration, sink: any MediaPacketSink) throws(SRTPSession.SetupError) {
        legs = [try Leg(a), try Leg(b)]
        self.sink = sink
    }

    public func counters(_ side: MediaLegSide) -> AnchorLegCounters { legs[side.rawValue].counters }
    /// Where the leg sends its RTP now.
    public func destination(_ side: MediaLegSide) -> SocketAddress? { legs[side.rawValue].rtpDestination }
    public func configuration(_ side: MediaLegSide) -> AnchorLegConfiguration { legs[side.rawValue].config }
    /// Which libsrtp sessions a leg runs (tests: a renegotiation keeps the ones whose key stayed).
    func sessions(_ side: MediaLegSide) -> (inbound: ObjectIdentifier?, outbound: ObjectIdentifier?) {
        (legs[side.rawValue].inbound.map(ObjectIdentifier.init), legs[side.rawValue].outbound.map(ObjectIdentifier.init))
    }

    /// Offer/answer changed a leg (the answer, a re-INVITE, an UPDATE). Unchanged keys keep
    /// their SRTP state (rollover counter, replay window); an SDP address that moved drops the
    /// latch, so a plain RTP leg learns the new source at once.
    public func update(_ side: MediaLegSide, to config: AnchorLegConfiguration) throws(SRTPSession.SetupError) {
        let leg = legs[side.rawValue]
        guard leg.config != config else { return }
        var next = try Leg(config)
        // Each direction's libsrtp state (rollover counter, replay window, the SRTCP index) stays
        // as long as its key does: the far end keeps its own, and a fresh session after a
        // sequence wrap would fail every packet (or reuse keystream, outbound).
        if leg.config.srtp?.remote == config.srtp?.remote {
            next.inbound = leg.inbound
            next.sources = leg.sources
        }
        if leg.config.srtp?.local == config.srtp?.local { next.outbound = leg.outbound }
        if leg.config.remote == config.remote || leg.config.srtp != nil {
            next.latched = leg.latched
            next.latchedRTCP = leg.latchedRTCP
            next.latchedSSRC = leg.latchedSSRC
            next.lastHeard = leg.lastHeard
        }
        next.counters = leg.counters
        legs[side.rawValue] = next
    }

    /// A datagram that arrived on `side`'s RTP socket (`rtcpSocket` false) or its RTCP socket.
    /// `buffer` holds it at the start with `SRTPSession.maxTrailer + 4` bytes of room after it;
    /// it is worked on in place.
    public func receive(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: SocketAddress, on side: MediaLegSide, rtcpSocket: Bool, now: UInt64) {
        let i = side.rawValue
        guard legs[i].config.agreed else {
            legs[i].counters.dropped &+= 1  // nothing agreed on this leg yet
            return
        }
        let isRTCP: Bool
        switch RTPDemultiplexer.classify(UnsafeRawBufferPointer(rebasing: buffer[..<length])) {
        case .rtp: isRTCP = rtcpSocket
        case .rtcp: isRTCP = true
        case .other:
            legs[i].counters.dropped &+= 1
            return
        }
        // The sender's SSRC (RFC 3550 §5.1, §6.4.1): a new one past `maxSources` is not let in.
        let ssrcOffset = isRTCP ? 4 : 8
        guard length >= ssrcOffset + 4 else {
            legs[i].counters.dropped &+= 1
            return
        }
        let ssrc = UnsafeRawBufferPointer(rebasing: buffer[..<length]).loadBigEndianUInt32(at: ssrcOffset)
        let known = legs[i].sources.contains(ssrc)
        guard known || legs[i].sources.count < Self.maxSources else {
            legs[i].counters.dropped &+= 1
            return
        }
        // Checked with the peer's key before anything is believed, the source least of all.
        var plainLength = length
        if let inbound = legs[i].inbound {
            do {
                plainLength = try isRTCP ? inbound.unprotectRTCP(buffer, length: length) : inbound.unprotect(buffer, length: length)
            } catch .replay {
                legs[i].counters.replayed &+= 1
                return
            } catch {
                legs[i].counters.authenticationFailures &+= 1
                if isRTCP { legs[i].counters.rtcpAuthenticationFailures &+= 1 }
                return
            }
        }
        if !known { legs[i].sources.append(ssrc) }
        guard latch(i, to: source, ssrc: isRTCP ? nil : ssrc, rtcpSocket: rtcpSocket, now: now) else { return }
        legs[i].counters.relayed &+= 1
        forward(buffer, length: plainLength, rtcp: isRTCP, to: side.other)
    }

    /// Moves the leg to `source` when the rules allow; false: the packet is not the peer's.
    /// `ssrc`: an RTP packet's (nil for RTCP).
    private func latch(_ i: Int, to source: SocketAddress, ssrc: UInt32?, rtcpSocket: Bool, now: UInt64) -> Bool {
        let current = rtcpSocket ? legs[i].latchedRTCP : legs[i].latched
        if current != source {
            guard current != nil, legs[i].inbound == nil else { return move(i, to: source, ssrc: ssrc, rtcpSocket: rtcpSocket, now: now) }
            // Plain RTP: anyone can send. The SDP's own host is the peer's word; elsewhere only
            // the latched stream itself, after its old source fell silent (a NAT's new address).
            let sdpHost = legs[i].config.remote.map { MediaBridge.sameHost($0, source) } ?? false
            let sameStream = ssrc != nil && ssrc == legs[i].latchedSSRC && now &- legs[i].lastHeard > Self.relatchSilence
            let rtcpOfTheStream = rtcpSocket && legs[i].latched.map { MediaBridge.sameHost($0, source) } ?? false
            guard sdpHost || sameStream || rtcpOfTheStream else {
                legs[i].counters.wrongSource &+= 1
                return false
            }
            return move(i, to: source, ssrc: ssrc, rtcpSocket: rtcpSocket, now: now)
        }
        if !rtcpSocket { legs[i].lastHeard = now }
        return true
    }

    private func move(_ i: Int, to source: SocketAddress, ssrc: UInt32?, rtcpSocket: Bool, now: UInt64) -> Bool {
        if rtcpSocket {
            legs[i].latchedRTCP = source
        } else {
            legs[i].latched = source
            legs[i].latchedSSRC = ssrc
            legs[i].lastHeard = now
            legs[i].counters.latches &+= 1
        }
        return true
    }

    private func forward(_ buffer: UnsafeMutableRawBufferPointer, length: Int, rtcp: Bool, to side: MediaLegSide) {
        let o = side.rawValue
        let muxed = legs[o].config.rtcpMux
        guard let destination = rtcp && !muxed ? legs[o].rtcpDestination : legs[o].rtpDestination else {
            legs[o].counters.undeliverable &+= 1
            return
        }
        var sendLength = length
        if let outbound = legs[o].outbound {
            do {
                sendLength = try rtcp ? outbound.protectRTCP(buffer, length: length) : outbound.protect(buffer, length: length)
            } catch {
                legs[o].counters.undeliverable &+= 1
                return
            }
        }
        sink.send(UnsafeRawBufferPointer(rebasing: buffer[..<sendLength]), to: destination, from: side, rtcp: rtcp && !muxed)
    }

    /// A datagram too large for the receive buffer: dropped, counted.
    public func dropOversized(on side: MediaLegSide) {
        legs[side.rawValue].counters.dropped &+= 1
    }
}
