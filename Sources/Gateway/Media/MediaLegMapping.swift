public import Media
import NIOCore
public import SIP
import NetworkAddress
import Mesh

/// What offer/answer agreed for one leg (`SDPNegotiatedAudio`, SIP's view), in the media engine's
/// terms (`MediaLegConfiguration`). The one place the two vocabularies meet: SIP knows no codec
/// code, the media engine no SDP (docs/ARCHITECTURE.md).
public enum MediaLegMapping {
    public enum MappingError: Error, Sendable, Equatable, CustomStringConvertible {
        case badAddress(String, Int)
        case unknownSuite(String)
        case badKey(String)

        public var description: String {
            switch self {
            case .badAddress(let host, let port): "the peer's media address \(host):\(port) is not an IP address and port"
            case .unknownSuite(let suite): "SRTP suite \(suite) is not supported"
            case .badKey(let suite): "SRTP key of the wrong length for \(suite)"
            }
        }
    }

    /// The media engine's codec in SDP's terms (the reverse of `codec(_:)`).
    public static func sdpCodec(_ codec: AudioCodecKind) -> SDPAudioCodec {
        switch codec {
        case .opus: .opus
        case .g722: .g722
        case .pcma: .pcma
        case .pcmu: .pcmu
        }
    }

    public static func codec(_ codec: SDPAudioCodec) -> AudioCodecKind {
        switch codec {
        case .opus: .opus
        case .g722: .g722
        case .pcma: .pcma
        case .pcmu: .pcmu
        }
    }

    /// The leg's media configuration. Without a telephone-event payload type the leg's digits go
    /// by SIP INFO; with rtcp-mux there is no separate RTCP address (RFC 5761).
    /// `scope` is the interface a mesh peer's signalling arrived on: a link-local address in its
    /// SDP (which carries no zone) is reached through it.
    public static func configuration(
        _ negotiated: SDPNegotiatedAudio, codecOptions: AudioCodecOptions = .init(), canonicalName: String = "symphony-bridge", scope: UInt32 = 0
    ) throws(MappingError) -> MediaLegConfiguration {
        var host = negotiated.remoteAddress
        if scope != 0, LinkLocalAddress.isLinkLocal(host) {
            host += "%\(scope)"
        }
        guard let remote = try? SocketAddress(ipAddressWithZone: host, port: negotiated.remotePort) else {
            throw .badAddress(negotiated.remoteAddress, negotiated.remotePort)
        }
        let rtcp = negotiated.rtcpMux ? nil : try? SocketAddress(ipAddressWithZone: host, port: negotiated.remoteRTCPPort)
        var keys: MediaLegConfiguration.SRTPKeys?
        if let srtp = negotiated.srtp {
            guard let suite = SRTPCryptoSuite(rawValue: srtp.suite) else { throw .unknownSuite(srtp.suite) }
            do {
                keys = .init(local: try SRTPKeyMaterial(suite: suite, bytes: srtp.localKey), remote: try SRTPKeyMaterial(suite: suite, bytes: srtp.remoteKey))
            } catch {
                throw .badKey(srtp.suite)
            }
        }
        var config = MediaLegConfiguration(
            codec: codec(negotiated.codec), payloadType: UInt8(clamping: negotiated.payloadType),
            dtmf: negotiated.telephoneEventPayloadType.map { .telephoneEvent(payloadType: UInt8(clamping: $0)) } ?? .sipInfo,
            remote: remote, remoteRTCP: rtcp, srtp: keys, ptime: negotiated.ptime ?? 20, codecOptions: codecOptions, canonicalName: canonicalName)
        if let rate = negotiated.telephoneEventClockRate, rate != config.codec.rtpClockRate { config.telephoneEventClockRate = rate }
        // Hold (RFC 3264 §8.4): what the negotiated direction allows (it already counts an
        // unspecified address, the RFC 2543 hold, as receiving nothing: `effectiveDirection`).
        config.sends = negotiated.direction.sends
        config.receives = negotiated.direction.receives
        // The packet time and event clock as the bridge will run them, so that the passthrough
        // decision here and the bridge's agree (docs/RELIABILITY.md).
        return config.checked
    }

    /// Passthrough needs the same codec on both legs (payload types and SRTP may differ: the
    /// bridge rewrites headers and re-encrypts); otherwise the bridge transcodes.
    public static func isPassthrough(_ a: MediaLegConfiguration, _ b: MediaLegConfiguration) -> Bool {
        a.codec == b.codec && a.ptime == b.ptime
    }
}
