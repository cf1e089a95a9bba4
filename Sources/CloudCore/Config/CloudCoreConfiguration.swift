import Foundation
public import TOMLConfig
public import MQTTStatus
import NIOCore

/// `cloud-core.toml`, read against its schema (docs/CONFIG.md; the commented example is
/// `etc/cloud-core.toml`). Every default is what a production core would want; a lab setup
/// turns on the plain UDP/TCP listeners explicitly.
public struct CloudCoreConfiguration: Sendable, Equatable {
    /// `host:port` (IPv6 as `[::1]:5061`); the port is required.
    public typealias HostPort = TOMLConfig.HostPort

    // [core]
    public var domain = "symphony.local"
    public var realm = "symphony"
    public var stateDirectory = "/var/lib/symphony-cloud-core"
    public var logLevel = "info"
    public var seedFile: String?
    // [sip]
    public var tlsListen: [HostPort] = [HostPort("0.0.0.0:5061")!]
    /// SIPS listeners that never ask for a client certificate: for clients that are not devices
    /// (issue 19: liblinphone stalls on a certificate request). Empty: none (the shipped
    /// cloud-core.toml and the demo open 5062).
    public var clientTLSListen: [HostPort] = []
    /// The host name or address put in Via, Record-Route and the certificate (what peers reach).
    public var advertise = "127.0.0.1"
    public var labUDP: HostPort?
    public var labTCP: HostPort?
    public var certificateFile: String?
    public var keyFile: String?
    /// MD5 only by default: Debian 12's baresip (libre 1.x) fails the whole registration on any
    /// challenge whose algorithm it does not know (SHA-256), whatever its position (docs/CLOUD-CORE.md).
    public var digestAlgorithms = ["MD5"]
    // [ca]
    public var caCertificateFile: String?
    public var caKeyFile: String?
    public var deviceCertificateDays = 825
    // [claiming]
    public var claimingListen: HostPort? = HostPort("0.0.0.0:8443")
    public var claimingCodeLifetimeSeconds = 7 * 86400
    public var claimingAttemptsPerMinute = 10
    // [tokens]
    public var tokenAudience = "symphony-cloud-core"
    public var tokenKeyFile: String?
    public var tokenLifetimeSeconds = 3600
    public var bearerChallenge = false
    // [calls]
    public var maxCallSeconds = 600
    public var ringSeconds = 30
    public var maxParallel = 32
    // [registrar]
    public var minExpires = 60
    public var maxExpires = 3600
    public var defaultExpires = 600
    // [records]
    public var retentionDays = 180
    // [media]
    /// Where the media of routed calls is anchored: "none" (end to end), "embedded" (the core's
    /// own relay) or "rtpengine".
    public var mediaAnchor = "none"
    /// rtpengine's ng control address (`anchor = "rtpengine"`).
    public var rtpengine: HostPort?
    /// The embedded relay: the IP its sockets are bound to (nil: `[sip] advertise`, which must
    /// then be an IP address), the IP written in SDP (nil: `mediaAddress`; needed when that is a
    /// wildcard or the core is behind a 1:1 NAT), and its ports.
    public var mediaAddress: String?
    public var mediaAdvertise: String?
    public var mediaPortMin = 40000
    public var mediaPortMax = 49999
    /// Media threads of the embedded relay (each carries its calls' packets alone: about 200
    /// calls each on the reference 2-core VM, docs/PERFORMANCE.md).
    public var mediaThreads = 1
    /// The embedded relay's bind and SDP addresses as they apply.
    public var mediaBindHost: String { mediaAddress ?? advertise }
    public var mediaSDPAddress: String { mediaAdvertise ?? mediaBindHost }
    public var purgeIntervalSeconds = 3600
    // [limits]
    public var unauthenticatedPerSecond = 20
    public var unauthenticatedBurst = 40
    /// Calls one principal (a user, a gateway) may have in progress or answered at once.
    public var callsPerPrincipal = 32
    /// Contacts one address of record may hold; a REGISTER adding one more gets 503.
    public var bindingsPerAOR = 10
    /// Calls in progress or answered in the whole core.
    public var maxCalls = 4096
    // [mqtt]: the core's own `status` and `info` topics, when a broker is named.
    public var mqtt = MQTTBrokerConfiguration(topicPrefix: "symphony-cloud-core")
    /// The name under the prefix; the domain by default.
    public var mqttID: String?

    public init() {}

    /// Files under the state directory unless the config names them.
    public var directoryFile: String { "\(stateDirectory)/directory.sqlite" }
    public var resolvedCACertificateFile: String { caCertificateFile ?? "\(stateDirectory)/ca.pem" }
    public var resolvedCAKeyFile: String { caKeyFile ?? "\(stateDirectory)/ca-key.pem" }
    public var resolvedCertificateFile: String { certificateFile ?? "\(stateDirectory)/server.pem" }
    public var resolvedKeyFile: String { keyFile ?? "\(stateDirectory)/server-key.pem" }
    public var resolvedTokenKeyFile: String { tokenKeyFile ?? "\(stateDirectory)/token-key.pem" }

    public static func load(file: String) throws(ConfigErrors) -> CloudCoreConfiguration {
        try read(try ConfigDocument(contentsOfFile: file))
    }

    public static func parse(_ text: String, file: String) throws(ConfigErrors) -> CloudCoreConfiguration {
        try read(try ConfigDocument(text: text, file: file))
    }

    static func read(_ document: ConfigDocument) throws(ConfigErrors) -> CloudCoreConfiguration {
        var c = CloudCoreConfiguration()
        let root = document.root!
        func hostPort(_ table: ConfigTable, _ key: String) -> HostPort? {
            guard let text = table.string(key) else { return nil }
            guard let value = HostPort(text) else {
                table.reject(key, "expected \"host:port\" (IPv6 as \"[::1]:5061\"), found \"\(text)\"")
                return nil
            }
            return value
        }
        if let core = root.table("core") {
            c.domain = core.string("domain") ?? c.domain
            c.realm = core.string("realm") ?? c.realm
            c.stateDirectory = core.string("state_dir") ?? c.stateDirectory
            c.logLevel = core.string("log_level", oneOf: ["trace", "debug", "info", "notice", "warning", "error", "critical"]) ?? c.logLevel
            c.seedFile = core.string("seed_file")
            core.finish()
        }
        if let sip = root.table("sip") {
            if let list = sip.stringArray("tls_listen") {
                var parsed: [HostPort] = []
                for text in list {
                    if let value = HostPort(text) { parsed.append(value) } else { sip.reject("tls_listen", "expected \"host:port\" entries, found \"\(text)\"") }
                }
                c.tlsListen = parsed
            }
            if let list = sip.stringArray("client_tls_listen") {
                var parsed: [HostPort] = []
                for text in list {
                    if let value = HostPort(text) { parsed.append(value) } else { sip.reject("client_tls_listen", "expected \"host:port\" entries, found \"\(text)\"") }
                }
                if let shared = parsed.first(where: { c.tlsListen.contains($0) && $0.port != 0 }) {
                    sip.reject("client_tls_listen", "\(shared) is also in tls_listen: devices and clients need a listener each")
                }
                c.clientTLSListen = parsed
            }
            c.advertise = sip.string("advertise") ?? c.advertise
            c.labUDP = hostPort(sip, "lab_udp_listen")
            c.labTCP = hostPort(sip, "lab_tcp_listen")
            c.certificateFile = sip.string("certificate_file")
            c.keyFile = sip.string("key_file")
            if (c.certificateFile == nil) != (c.keyFile == nil) {
                sip.reject(c.certificateFile == nil ? "key_file" : "certificate_file", "certificate_file and key_file go together")
            }
            if let algorithms = sip.stringArray("digest_algorithms") {
                let known = ["SHA-256", "MD5"]
                if algorithms.isEmpty || !algorithms.allSatisfy(known.contains) {
                    sip.reject("digest_algorithms", "a non-empty list of \"SHA-256\" and \"MD5\"")
                } else {
                    c.digestAlgorithms = algorithms
                }
            }
            if c.tlsListen.isEmpty, c.clientTLSListen.isEmpty, c.labUDP == nil, c.labTCP == nil { sip.reject("tls_listen", "no listener: name at least one address") }
            sip.finish()
        }
        if let ca = root.table("ca") {
            c.caCertificateFile = ca.string("certificate_file")
            c.caKeyFile = ca.string("key_file")
            c.deviceCertificateDays = ca.int("device_certificate_days", in: 1...3650) ?? c.deviceCertificateDays
            ca.finish()
        }
        if let claiming = root.table("claiming") {
            if let text = claiming.string("listen") {
                if text.isEmpty { c.claimingListen = nil } else if let value = HostPort(text) { c.claimingListen = value } else {
                    claiming.reject("listen", "expected \"host:port\" or \"\" (no claiming endpoint), found \"\(text)\"")
                }
            }
            c.claimingCodeLifetimeSeconds = claiming.int("code_lifetime_s", in: 60...(90 * 86400)) ?? c.claimingCodeLifetimeSeconds
            c.claimingAttemptsPerMinute = claiming.int("attempts_per_minute", in: 1...600) ?? c.claimingAttemptsPerMinute
            claiming.finish()
        }
        if let tokens = root.table("tokens") {
            c.tokenAudience = tokens.string("audience") ?? c.tokenAudience
            c.tokenKeyFile = tokens.string("key_file")
            c.tokenLifetimeSeconds = tokens.int("lifetime_s", in: 60...(30 * 86400)) ?? c.tokenLifetimeSeconds
            c.bearerChallenge = tokens.bool("bearer_challenge") ?? c.bearerChallenge
            tokens.finish()
        }
        if let calls = root.table("calls") {
            c.maxCallSeconds = calls.int("max_call_s", in: 1...600) ?? c.maxCallSeconds
            c.ringSeconds = calls.int("ring_s", in: 5...300) ?? c.ringSeconds
            c.maxParallel = calls.int("max_parallel", in: 1...32) ?? c.maxParallel
            calls.finish()
        }
        if let registrar = root.table("registrar") {
            c.minExpires = registrar.int("min_expires_s", in: 1...86400) ?? c.minExpires
            c.maxExpires = registrar.int("max_expires_s", in: 1...86400) ?? c.maxExpires
            c.defaultExpires = registrar.int("default_expires_s", in: 1...86400) ?? c.defaultExpires
            if c.minExpires > c.maxExpires { registrar.reject("min_expires_s", "must not be above max_expires_s (\(c.maxExpires))") }
            if !(c.minExpires...max(c.minExpires, c.maxExpires)).contains(c.defaultExpires) {
                registrar.reject("default_expires_s", "must lie between min_expires_s and max_expires_s")
            }
            registrar.finish()
        }
        if let media = root.table("media") {
            c.mediaAnchor = media.string("anchor", oneOf: ["none", "embedded", "rtpengine"]) ?? c.mediaAnchor
            let isIP = { (text: String) in (try? SocketAddress(ipAddress: text, port: 0)) != nil }
            let isWildcard = { (text: String) in text == "0.0.0.0" || text == "::" }
            for key in ["address", "advertise"] {
                guard let text = media.string(key) else { continue }
                if !isIP(text) { media.reject(key, "\"\(text)\": an IP address (the relay's media go there, no name is looked up)") } else if key == "address" {
                    c.mediaAddress = text
                } else if isWildcard(text) {
                    media.reject(key, "\"\(text)\" is no address a peer can send to")
                } else {
                    c.mediaAdvertise = text
                }
            }
            c.mediaThreads = media.int("threads", in: 1...64) ?? c.mediaThreads
            c.mediaPortMin = media.int("rtp_port_min", in: 10000...50000) ?? c.mediaPortMin
            c.mediaPortMax = media.int("rtp_port_max", in: 10000...50000) ?? c.mediaPortMax
            if c.mediaPortMax - c.mediaPortMin < 3 {
                media.reject("rtp_port_max", "leaves \(max(0, c.mediaPortMax - c.mediaPortMin + 1)) ports above rtp_port_min (\(c.mediaPortMin)); an anchored call needs 4 (two legs, RTP and RTCP)")
            }
            if c.mediaAnchor == "embedded" {
                if c.mediaAddress == nil, !isIP(c.advertise) {
                    media.reject("anchor", "anchor = \"embedded\" needs address = \"IP\": [sip] advertise (\"\(c.advertise)\") is a name")
                } else if c.mediaAdvertise == nil, isWildcard(c.mediaBindHost) {
                    media.reject("address", "\"\(c.mediaBindHost)\" binds every address: say which one peers send to with advertise = \"IP\"")
                }
            } else {
                for key in ["address", "advertise", "rtp_port_min", "rtp_port_max", "threads"] where media.has(key) {
                    media.reject(key, "is used with anchor = \"embedded\" only")
                }
            }
            c.rtpengine = hostPort(media, "rtpengine")
            if let ng = c.rtpengine, !ng.host.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" }) {
                media.reject("rtpengine", "\"\(ng)\": an IP address and port (the ng control socket)")
                c.rtpengine = nil
            }
            if c.mediaAnchor == "rtpengine", c.rtpengine == nil { media.reject("anchor", "anchor = \"rtpengine\" needs rtpengine = \"host:port\" (its ng control address, e.g. \"127.0.0.1:2223\")") }
            if c.mediaAnchor != "rtpengine", media.has("rtpengine") { media.reject("rtpengine", "is used with anchor = \"rtpengine\" only") }
            media.finish()
        }
        if let records = root.table("records") {
            c.retentionDays = records.int("retention_days", in: 1...180) ?? c.retentionDays
            c.purgeIntervalSeconds = records.int("purge_interval_s", in: 1...86400) ?? c.purgeIntervalSeconds
            records.finish()
        }
        if let limits = root.table("limits") {
            c.unauthenticatedPerSecond = limits.int("unauthenticated_per_s", in: 1...100_000) ?? c.unauthenticatedPerSecond
            c.unauthenticatedBurst = limits.int("unauthenticated_burst", in: 1...100_000) ?? c.unauthenticatedBurst
            c.callsPerPrincipal = limits.int("calls_per_principal", in: 1...10_000) ?? c.callsPerPrincipal
            c.bindingsPerAOR = limits.int("bindings_per_aor", in: 1...1000) ?? c.bindingsPerAOR
            c.maxCalls = limits.int("max_calls", in: 1...1_000_000) ?? c.maxCalls
            limits.finish()
        }
        if let mqtt = root.table("mqtt") {
            c.mqtt = MQTTBrokerConfiguration.read(mqtt, defaultPrefix: c.mqtt.topicPrefix)
            if let id = mqtt.string("id") {
                if MQTTBrokerConfiguration.isTopicLevels(id), !id.contains("/") { c.mqttID = id } else { mqtt.reject("id", "\"\(id)\": one topic level") }
            }
            mqtt.finish()
        }
        root.finish()
        try document.validate()
        return c
    }
}
