public import Media
public import SIP
public import SIPTransport

/// What the router works with: the channel plan, the cloud's names for us, the legacy server,
/// and each side's media choices — built from a `bridge.toml` in one place (`init(_:device:domain:)`).
extension ChannelRouter {
    public struct Settings: Sendable {
        public var channels: [BridgeConfiguration.Channel]
        /// The gateway's device name at the cloud: its channels register as `<device>-ch<n>`.
        public var device: String
        /// The cloud's SIP domain (targets are `sips:<target>@<domain>`).
        public var domain: String
        /// The channels' names at the cloud (`CloudAccounts`): `<device>-ch<n>`, the channels'
        /// `cloud_account`, or one trunk account.
        public var accounts: CloudAccounts
        /// The legacy intercom server: numbers in `legacy_targets` are called there.
        public var legacyServer: SIPDestination?
        public var legacyTransport: SIPTransportProtocol = .udp
        /// The address in our legacy SDP; nil picks the source address toward the peer.
        public var legacyMediaAddress: String?
        public var legacyPolicy: SDPAudioPolicy
        public var cloudPolicy: SDPAudioPolicy
        public var codecOptions = AudioCodecOptions()
        public var jitterBufferMax: Duration = .milliseconds(120)
        /// G.722 with SDES-SRTP on the mesh.
        public var meshPolicy = SDPAudioPolicy(codecs: [.g722], srtp: .required)
        /// A cloud leg without a provisional answer by then is cancelled and the call goes to the mesh.
        public var fallbackAfter: Duration = .milliseconds(1500)
        /// A connected call whose leg sends no RTP or RTCP for this long (while not on hold) ends
        /// with BYE on both legs; nil turns supervision off.
        public var mediaTimeout: Duration? = .seconds(30)
        /// A hold from the cloud or mesh leg is relayed to the station (a re-INVITE with the
        /// mirrored direction) when the station lists INVITE in its Allow; otherwise, or when
        /// false, it is absorbed at the bridge (`[legacy] hold`, docs/GATEWAY.md).
        public var relayHoldToStations = true

        public init(channels: [BridgeConfiguration.Channel], device: String, domain: String, legacyPolicy: SDPAudioPolicy, cloudPolicy: SDPAudioPolicy) {
            self.channels = channels
            self.device = device
            self.domain = domain
            self.accounts = CloudAccounts(device: device)
            self.legacyPolicy = legacyPolicy
            self.cloudPolicy = cloudPolicy
        }

        /// Everything a `bridge.toml` sets; `device` and `domain` come from the claimed identity.
        public init(_ config: BridgeConfiguration, device: String, domain: String) {
            let policies = Self.policies(config)
            self.init(channels: config.channels, device: device, domain: domain, legacyPolicy: policies.legacy, cloudPolicy: policies.cloud)
            accounts = CloudAccounts(registration: config.cloudAccess.registration, device: device, trunkAccount: config.cloudAccess.trunkAccount)
            let transport: SIPTransportProtocol = config.legacyTransport == .tcp ? .tcp : .udp
            legacyServer = config.legacyServer.map { SIPDestination(transport: transport, host: $0.host, port: $0.port) }
            legacyTransport = transport
            legacyMediaAddress = LocalMediaAddress.isWildcard(config.legacyListen.host) ? nil : config.legacyListen.host
            codecOptions = AudioCodecOptions(opusComplexity: config.opusComplexity)
            jitterBufferMax = .milliseconds(config.jitterMaxMilliseconds)
            meshPolicy = Self.meshPolicy(config)
            fallbackAfter = .milliseconds(config.fallbackAfterMilliseconds)
            mediaTimeout = config.mediaInactivitySeconds > 0 ? .seconds(config.mediaInactivitySeconds) : nil
            relayHoldToStations = config.legacyHold == .relay
        }

        /// The SDP policies a `bridge.toml` asks for: G.722 first and plain RTP on the legacy
        /// side; SDES-SRTP only, in the configured suite order, on the cloud side.
        public static func policies(_ config: BridgeConfiguration) -> (legacy: SDPAudioPolicy, cloud: SDPAudioPolicy) {
            let legacy = SDPAudioPolicy(codecs: config.legacyCodecs.compactMap(codec), srtp: .off, rtcpMux: false)
            let suites = config.srtpSuites.map { (name: $0, keyLength: $0.hasPrefix("AEAD") ? 28 : 30) }
            let cloud = SDPAudioPolicy(codecs: config.cloudCodecs.compactMap(codec), srtp: .required, cryptoSuites: suites)
            return (legacy, cloud)
        }

        /// G.722 only, SRTP required, in the configured suite order (../shared/ARCHITECTURE.md: G.722 on the mesh).
        public static func meshPolicy(_ config: BridgeConfiguration) -> SDPAudioPolicy {
            let suites = config.srtpSuites.map { (name: $0, keyLength: $0.hasPrefix("AEAD") ? 28 : 30) }
            return SDPAudioPolicy(codecs: [.g722], srtp: .required, cryptoSuites: suites)
        }

        static func codec(_ name: String) -> SDPAudioCodec? {
            switch name.lowercased() {
            case "opus": .opus
            case "g722": .g722
            case "pcma": .pcma
            case "pcmu": .pcmu
            default: nil
            }
        }
    }
}
