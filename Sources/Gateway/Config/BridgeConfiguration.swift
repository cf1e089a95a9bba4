import Crypto
import Foundation
import LegacyLinks
import NetworkAddress
import SIP
public import MQTTStatus
public import TOMLConfig

/// `bridge.toml`, read against its schema (../shared/ARCHITECTURE.md "Config"; the commented
/// example is `etc/bridge.toml`, the rules docs/CONFIG.md). Product limits are enforced here:
/// at most 14 channels, calls of at most 600 s, SRTP ports within 10000–50000.
public struct BridgeConfiguration: Sendable, Equatable {
    /// host, host:port or [IPv6]:port; the port defaults per key.
    public typealias Endpoint = HostPort

    public enum LegacyTransport: String, Sendable, Equatable { case udp, tcp }
    public enum RingMode: String, Sendable, Equatable { case parallel, chain }
    /// `relay`: a hold from the cloud or mesh leg re-INVITEs a station that lists INVITE in its
    /// Allow; `absorb`: the bridge alone keeps it (silence toward the station).
    public enum LegacyHold: String, Sendable, Equatable, CaseIterable { case relay, absorb }

    public struct Channel: Sendable, Equatable {
        public var index: Int
        /// What legacy stations dial to reach the channel.
        public var number: String
        /// The one cloud call target: a user or a ring group of the cloud directory.
        public var cloudTarget: String
        /// Legacy stations rung (in parallel) when the cloud calls the channel: numbers at the
        /// legacy server, or SIP URIs of stations.
        public var legacyTargets: [String]
        /// Numbers of mesh stations on the site, for the fallback.
        public var meshTargets: [String]
        public var ring: RingMode
        public var ringSeconds: Int
        public var maxCallSeconds: Int
        public var enabled: Bool
        /// What the cloud sees as the caller when a station calls ("Lobby door"; the station's
        /// number follows in parentheses); unset: the station's own display name.
        public var displayName: String?
        /// The account (AOR user) the channel registers as at a cloud other than the reference
        /// core's claiming (`[cloud] auth = "certificate"|"digest"`); nil: `<device>-ch<n>`.
        public var cloudAccount: String?

        public init(
            index: Int, number: String, cloudTarget: String, legacyTargets: [String], meshTargets: [String] = [], ring: RingMode = .parallel,
            ringSeconds: Int = 30, maxCallSeconds: Int = 600, enabled: Bool = true, displayName: String? = nil, cloudAccount: String? = nil
        ) {
            self.displayName = displayName
            self.cloudAccount = cloudAccount
            self.index = index
            self.number = number
            self.cloudTarget = cloudTarget
            self.legacyTargets = legacyTargets
            self.meshTargets = meshTargets
            self.ring = ring
            self.ringSeconds = ringSeconds
            self.maxCallSeconds = maxCallSeconds
            self.enabled = enabled
        }
    }

    // [gateway]
    public var gatewayID = ""
    public var site: String?
    public var stateDirectory = "/var/lib/symphony-bridge"
    public var logLevel = "info"
    // [legacy]
    public var legacyListen = Endpoint(host: "0.0.0.0", port: 5060)
    public var legacyTransport = LegacyTransport.udp
    public var legacyServer: Endpoint?
    public var legacyCodecs = ["G722", "PCMA", "PCMU"]
    public var optionsIntervalSeconds = 30
    /// What a hold from the cloud or mesh leg does to the station (docs/GATEWAY.md).
    public var legacyHold = LegacyHold.relay
    /// Who may send requests to the legacy side (IP addresses or prefixes); nil: the legacy
    /// server and the hosts of the channels' `sip:` legacy targets.
    public var legacyAllow: [String]?
    // [cloud]
    public var cloudServer: Endpoint?
    public var cloudCAFile: String?
    public var claimURL: String?
    public var claimCode: String?
    public var cloudCodecs = ["opus", "G722", "PCMA", "PCMU"]
    public var srtpSuites = ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"]
    public var keepaliveSeconds = 25
    /// `auth`, `registration`, `account`, `domain`, `outbound_proxy` (`CloudAccess`).
    public var cloudAccess = CloudAccess()
    /// Whether `server` named its port; without one, a name is looked up per RFC 3263 (SRV).
    public var cloudServerHasPort = true
    // [media]
    public var rtpPortMin = 10000
    public var rtpPortMax = 50000
    public var jitterMaxMilliseconds = 120
    public var opusComplexity = 5
    /// A connected call whose leg sends no RTP or RTCP for this long (while not on hold) ends;
    /// 0 turns the supervision off.
    public var mediaInactivitySeconds = 30
    // [[channel]]
    public var channels: [Channel] = []
    // [mesh]
    public var meshEnabled = false
    public var meshInterfaces: [String] = []
    public var fallbackAfterMilliseconds = 1500
    /// The SIPS port of the mesh listener on each interface's link-local address.
    public var meshPort = 5061
    // [mqtt]
    public var mqtt = MQTTBrokerConfiguration(topicPrefix: "symphony-bridge")
    public var homeAssistantDiscovery = false
    /// `door_open` events carry the digit only when asked (a door PIN is a secret; issue 17).
    public var mqttIncludeDigits = false
    /// Who calls (`peer`) in the retained `channel/<n>` topics only when asked: retained values
    /// stay on the broker for anyone who subscribes later.
    public var mqttRetainCaller = false
    // [records]
    public var retentionDays = 180
    /// The product limit of devices ringing for one call (legacy or mesh targets of a channel).
    public static let maxRingingTargets = 32
    /// The first 16 hex digits of the file's SHA-256 (MQTT `info.config_hash`): which file runs.
    public var digest = ""

    public static let knownLegacyCodecs = ["G722", "PCMA", "PCMU"]
    public static let knownCloudCodecs = ["opus", "G722", "PCMA", "PCMU"]
    public static let knownSRTPSuites = ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"]

    public init() {}

    public static func load(file: String) throws(ConfigErrors) -> BridgeConfiguration {
        var configuration = try read(try ConfigDocument(contentsOfFile: file))
        if let bytes = FileManager.default.contents(atPath: file) {
            configuration.digest = SHA256.hash(data: bytes).prefix(8).map { String(format: "%02x", $0) }.joined()
        }
        return configuration
    }

    public static func parse(_ text: String, file: String) throws(ConfigErrors) -> BridgeConfiguration {
        try read(try ConfigDocument(text: text, file: file))
    }

    static func read(_ document: ConfigDocument) throws(ConfigErrors) -> BridgeConfiguration {
        var c = BridgeConfiguration()
        let root = document.root!

        let gateway = root.table("gateway", required: true)
        if let gateway {
            if let id = gateway.string("id", required: true) {
                if isName(id) { c.gatewayID = id } else { gateway.reject("id", "\"\(id)\": letters, digits, '-', '_' and '.' (it names the device and the MQTT topics)") }
            }
            c.site = gateway.string("site")
            c.stateDirectory = gateway.string("state_dir") ?? c.stateDirectory
            c.logLevel = gateway.string("log_level", oneOf: ["trace", "debug", "info", "notice", "warning", "error", "critical"]) ?? c.logLevel
            gateway.finish()
        }

        if let legacy = root.table("legacy") {
            c.legacyListen = endpoint(legacy, "listen", defaultPort: 5060) ?? c.legacyListen
            if let transport = legacy.string("transport", oneOf: ["udp", "tcp"]) { c.legacyTransport = LegacyTransport(rawValue: transport)! }
            c.legacyServer = endpoint(legacy, "server", defaultPort: 5060)
            c.legacyCodecs = codecs(legacy, "codecs", known: knownLegacyCodecs) ?? c.legacyCodecs
            c.optionsIntervalSeconds = legacy.int("options_interval_s", in: 0...3600) ?? c.optionsIntervalSeconds
            if let hold = legacy.string("hold", oneOf: LegacyHold.allCases.map(\.rawValue)) { c.legacyHold = LegacyHold(rawValue: hold)! }
            if let allow = legacy.stringArray("allow") {
                if let bad = allow.first(where: { IPPrefix($0) == nil }) {
                    legacy.reject("allow", "\"\(bad)\" is not an IP address or prefix (192.168.10.0/24, 10.0.0.5, fd00::/8)")
                } else if allow.isEmpty || allow.count > 256 {
                    legacy.reject("allow", "1–256 addresses or prefixes; [\"0.0.0.0/0\", \"::/0\"] allows everyone")
                } else {
                    c.legacyAllow = allow
                }
            }
            legacy.finish()
        }

        let cloud = root.table("cloud", required: true)
        if let cloud {
            c.cloudServer = endpoint(cloud, "server", defaultPort: 5061, required: true)
            c.cloudServerHasPort = cloud.string("server").map { HostPort($0.replacingOccurrences(of: "sips:", with: "").replacingOccurrences(of: "sip:", with: "")) != nil } ?? true
            c.cloudAccess = CloudAccess.read(cloud)
            c.cloudCAFile = cloud.string("ca_file")
            if let url = cloud.string("claim_url") {
                if url.hasPrefix("https://"), let parsed = URL(string: url), parsed.host != nil, (1...65535).contains(parsed.port ?? 443) {
                    c.claimURL = url
                } else {
                    cloud.reject("claim_url", "an https:// URL with a port in 1–65535 (the value is not repeated: it may hold a secret)")
                }
            }
            c.claimCode = cloud.string("claim_code")
            if c.claimCode != nil, c.claimURL == nil { cloud.reject("claim_code", "a claiming code needs claim_url") }
            c.cloudCodecs = codecs(cloud, "codecs", known: knownCloudCodecs) ?? c.cloudCodecs
            if let suites = cloud.stringArray("srtp") {
                if suites.isEmpty || !suites.allSatisfy(knownSRTPSuites.contains) {
                    cloud.reject("srtp", "a non-empty list of \(knownSRTPSuites.map { "\"\($0)\"" }.joined(separator: ", ")) (the cloud leg is never plain RTP)")
                } else {
                    c.srtpSuites = suites
                }
            }
            c.keepaliveSeconds = cloud.int("keepalive_s", in: 1...3600) ?? c.keepaliveSeconds
            cloud.finish()
        }

        if let media = root.table("media") {
            // Product limit: SRTP media ports within 10000–50000.
            c.rtpPortMin = media.int("rtp_port_min", in: 10000...50000) ?? c.rtpPortMin
            c.rtpPortMax = media.int("rtp_port_max", in: 10000...50000) ?? c.rtpPortMax
            if c.rtpPortMax - c.rtpPortMin < 2 * 14 * 2 {
                media.reject("rtp_port_max", "leaves \(max(0, c.rtpPortMax - c.rtpPortMin + 1)) ports above rtp_port_min (\(c.rtpPortMin)); 14 channels need at least 56 (two legs, RTP and RTCP)")
            }
            c.jitterMaxMilliseconds = media.int("jitter_max_ms", in: 20...1000) ?? c.jitterMaxMilliseconds
            c.opusComplexity = media.int("opus_complexity", in: 0...10) ?? c.opusComplexity
            if let seconds = media.int("inactivity_timeout_s", in: 0...3600) {
                // Below 5 s a pause in a stream without RTCP (some stations send none) would end calls.
                if seconds != 0, seconds < 5 { media.reject("inactivity_timeout_s", "is \(seconds); 0 (off) or 5–3600 s") } else { c.mediaInactivitySeconds = seconds }
            }
            media.finish()
        }

        var planned: [ChannelPlan.Channel] = []
        for table in root.tables("channel", required: true) {
            guard let index = table.int("index", in: ChannelPlan.channelRange, required: true) else { table.finish(); continue }
            let number = table.string("number", required: true) ?? ""
            let cloudTarget = table.string("cloud_target", required: true) ?? ""
            if !cloudTarget.isEmpty, !isName(cloudTarget) { table.reject("cloud_target", "\"\(cloudTarget)\": a user or ring group name of the cloud directory") }
            let legacyTargets = table.stringArray("legacy_targets", required: true) ?? []
            if table.has("legacy_targets"), legacyTargets.isEmpty { table.reject("legacy_targets", "at least one legacy station to ring") }
            // The product limit: at most 32 devices ring for one call.
            if legacyTargets.count > Self.maxRingingTargets {
                table.reject("legacy_targets", "\(legacyTargets.count) stations: at most \(Self.maxRingingTargets) ring for one call")
            }
            for target in legacyTargets where !isLegacyTarget(target) {
                table.reject("legacy_targets", "\"\(target)\": a number (0-9, *, #) at the legacy server or a sip: URI")
            }
            if c.legacyServer == nil, let number = legacyTargets.first(where: isNumber) {
                table.reject("legacy_targets", "\"\(number)\" is a number at the legacy server, but [legacy] names no server (set server, or give the station's sip: URI)")
            }
            let meshTargets = table.stringArray("mesh_targets") ?? []
            for target in meshTargets where !isNumber(target) { table.reject("mesh_targets", "\"\(target)\": the number of a mesh station (0-9, *, #)") }
            if meshTargets.count > Self.maxRingingTargets {
                table.reject("mesh_targets", "\(meshTargets.count) stations: at most \(Self.maxRingingTargets) ring for one call")
            }
            let ring = table.string("ring", oneOf: ["parallel", "chain"]).flatMap(RingMode.init) ?? .parallel
            let ringSeconds = table.int("ring_s", in: 5...300) ?? 30
            // Product limit: calls of at most 10 minutes.
            let maxCall = table.int("max_call_s", in: 10...600) ?? 600
            let enabled = table.bool("enabled") ?? true
            let displayName = table.string("display_name")
            if let displayName, SIPNameAddress.safeDisplayName(displayName) != displayName || displayName.count > 64 {
                table.reject("display_name", "\"\(displayName)\": 1–64 characters, no quotes, backslashes or control characters")
            }
            let cloudAccount = table.string("cloud_account")
            if let cloudAccount {
                if !CloudAccess.isAccount(cloudAccount) {
                    table.reject("cloud_account", "\"\(cloudAccount)\": 1–64 letters, digits, '-', '_', '.' or '+'")
                } else if c.cloudAccess.isClaim {
                    table.reject("cloud_account", "a claimed gateway's channels register as <device>-ch<n>; cloud_account needs [cloud] auth = \"certificate\" or \"digest\"")
                } else if c.channels.contains(where: { $0.cloudAccount == cloudAccount }) {
                    table.reject("cloud_account", "\"\(cloudAccount)\" is already channel \(c.channels.first { $0.cloudAccount == cloudAccount }!.index)'s")
                }
            } else if !c.cloudAccess.isClaim, c.cloudAccess.registration == .channels, enabled {
                table.reject("index", "channel \(index) needs cloud_account: with [cloud] auth = \"\(c.cloudAccess.authentication.name)\" each channel registers as its own account (or set [cloud] registration = \"trunk\")")
            }
            table.finish()
            c.channels.append(Channel(
                index: index, number: number, cloudTarget: cloudTarget, legacyTargets: legacyTargets, meshTargets: meshTargets,
                ring: ring, ringSeconds: ringSeconds, maxCallSeconds: maxCall, enabled: enabled, displayName: displayName, cloudAccount: cloudAccount))
            planned.append(ChannelPlan.Channel(index: index, number: number, enabled: enabled))
            // The plan's rules (unique index, dialable and unique number), each at its key.
            do { _ = try ChannelPlan(planned) } catch {
                switch error {
                case .duplicateIndex, .indexOutOfRange: table.reject("index", error.description)
                case .badNumber, .duplicateNumber: table.reject("number", error.description)
                }
                planned.removeLast()
            }
        }

        if let mesh = root.table("mesh") {
            c.meshEnabled = mesh.bool("enabled") ?? c.meshEnabled
            c.meshInterfaces = mesh.stringArray("interfaces") ?? c.meshInterfaces
            if c.meshEnabled, c.meshInterfaces.isEmpty { mesh.reject(mesh.has("interfaces") ? "interfaces" : "enabled", "the mesh needs at least one interface") }
            // Mesh peers prove their site with the device certificate the reference core's CA
            // binds to it at claiming; an operator's certificate or a password proves no site.
            if c.meshEnabled, !c.cloudAccess.isClaim {
                mesh.reject("enabled", "the mesh needs a claimed gateway (its peers check the site in the device certificate); [cloud] auth is \"\(c.cloudAccess.authentication.name)\"")
            }
            c.fallbackAfterMilliseconds = mesh.int("fallback_after_ms", in: 100...60000) ?? c.fallbackAfterMilliseconds
            c.meshPort = mesh.int("port", in: 1...65535) ?? c.meshPort
            mesh.finish()
        }

        if let mqtt = root.table("mqtt") {
            c.mqtt = MQTTBrokerConfiguration.read(mqtt, defaultPrefix: c.mqtt.topicPrefix)
            c.homeAssistantDiscovery = mqtt.bool("ha_discovery") ?? c.homeAssistantDiscovery
            c.mqttIncludeDigits = mqtt.bool("include_digits") ?? c.mqttIncludeDigits
            c.mqttRetainCaller = mqtt.bool("retain_caller") ?? c.mqttRetainCaller
            mqtt.finish()
        }

        if let records = root.table("records") {
            c.retentionDays = records.int("retention_days", in: 1...180) ?? c.retentionDays
            records.finish()
        }
        root.finish()
        try document.validate()
        return c
    }

    // MARK: Value rules

    private static func endpoint(_ table: ConfigTable, _ key: String, defaultPort: Int, required: Bool = false) -> Endpoint? {
        guard var text = table.string(key, required: required) else { return nil }
        for scheme in ["sips:", "sip:"] where text.hasPrefix(scheme) { text.removeFirst(scheme.count) }
        guard let endpoint = HostPort(text, defaultPort: defaultPort), endpoint.port > 0 else {
            table.reject(key, "\"\(text)\": expected host, host:port or [IPv6]:port (no zone id)")
            return nil
        }
        return endpoint
    }

    private static func codecs(_ table: ConfigTable, _ key: String, known: [String]) -> [String]? {
        guard let list = table.stringArray(key) else { return nil }
        let unknown = list.filter { !known.contains($0) }
        guard list.isEmpty == false, unknown.isEmpty, Set(list).count == list.count else {
            table.reject(key, "a non-empty list without repeats, in order of preference, of \(known.map { "\"\($0)\"" }.joined(separator: ", "))")
            return nil
        }
        return list
    }

    static func isName(_ text: String) -> Bool {
        (1...64).contains(text.count) && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    static func isNumber(_ text: String) -> Bool {
        (1...32).contains(text.utf8.count) && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "#") }
    }

    static func isLegacyTarget(_ text: String) -> Bool {
        isNumber(text) || ((text.hasPrefix("sip:") || text.hasPrefix("sips:")) && text.contains("@") && !text.contains(" "))
    }
}
