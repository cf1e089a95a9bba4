public import CloudUplink
import DeviceTrust
import DurableState
import Foundation
public import LegacyLinks
public import Logging
public import Media
public import Mesh
public import NIOCore
import NetworkAddress
public import SIPTransport
import SIPUserAgent
import MQTTStatus
public import ServiceLifecycle

/// The running gateway: the legacy trunk's SIP endpoint and user agent, the cloud side's (claimed
/// identity, mutual-TLS registration of the channels), the media relay, the channel router and the
/// call records, wired together from a `BridgeConfiguration`.
///
/// Its parts run as swift-service-lifecycle services in one `ServiceGroup` (`components`), in
/// this order: SIP transport and media, call records, status, legacy trunk supervision, cloud
/// uplink, mesh, router. A graceful shutdown stops them in reverse: the router ends every call
/// (BYE, CANCEL, 503 to new ones) and the mesh says goodbye, the uplink unregisters, the trunk
/// stops probing, the status topics publish the idle channels and go offline, the records reach
/// the disk, and the endpoints close once the last requests have their answers (docs/ARCHITECTURE.md).
/// `symphony-bridge run` runs the gateway (`run`) in its own group; tests `start` and `stop` it.
public final class GatewayServer: Service, Sendable {
    /// The configuration in force (the one started with, or the last good reload).
    public var configuration: BridgeConfiguration { uplink.configuration }
    public let router: ChannelRouter
    public let legacyEndpoint: SIPEndpoint
    public let cloudEndpoint: SIPEndpoint
    /// The mesh's SIPS endpoint (listeners on each interface's link-local address); nil without `[mesh]`.
    public let meshEndpoint: SIPEndpoint?
    /// mDNS/DNS-SD on the mesh interfaces, once the gateway has its device certificate.
    public var discovery: MeshDiscoveryService? { uplink.discovery }
    public let relay: MediaRelay
    public let records: GatewayCallRecords
    public let trunk: LegacyTrunk?
    /// Where the legacy side listens (the bound port, also when the config says port 0).
    public let legacyAddress: SocketAddress
    let logger: Logger
    let uplink = UplinkBox()
    /// A reload brought a new claim code (the uplink waits for one after a refusal).
    let claimCodeChanges: AsyncStream<Void>
    let claimCodeChanged: AsyncStream<Void>.Continuation
    /// The device identity, once claimed (the mesh waits for it).
    let identities: AsyncStream<DeviceIdentity>
    let identityKnown: AsyncStream<DeviceIdentity>.Continuation
    /// The MQTT status topics, when `[mqtt] host` is set.
    public let status: GatewayStatusPublisher?
    let upkeep: IdentityUpkeep
    /// For RFC 3263 lookups of a `[cloud] server` named without a port.
    let resolver: DNSStubResolver
    /// Without claiming: the credentials `[cloud]` names, as read at start (a new file needs a
    /// restart, as the log says when one is unusable).
    let configuredCredentials: Result<ConfiguredCredentials, CredentialsError>?

    public enum StartError: Error, CustomStringConvertible {
        case stateDirectory(String, String)
        case legacyListen(String, String)

        public var description: String {
            switch self {
            case .stateDirectory(let path, let reason): "state directory \(path): \(reason)"
            case .legacyListen(let address, let reason): "cannot listen for the legacy trunk on \(address): \(reason)"
            }
        }
    }

    /// Starts the gateway in the background (tests; the daemon uses `make` and `run`) and returns
    /// once its legacy listener is bound. `stop` shuts it down gracefully.
    public static func start(
        _ config: BridgeConfiguration, group: any EventLoopGroup, logger: Logger = Logger(label: "symphony-bridge"),
        claimRetry: ReconnectBackoff = ReconnectBackoff(base: .seconds(2), ceiling: .seconds(300)), statsInterval: Duration = .seconds(60),
        upkeep: IdentityUpkeep = IdentityUpkeep(), resolver: DNSStubResolver = .system()
    ) async throws -> GatewayServer {
        let gateway = try await make(config, group: group, logger: logger, claimRetry: claimRetry, statsInterval: statsInterval, upkeep: upkeep, resolver: resolver)
        gateway.uplink.running = Task { try? await gateway.run() }
        return gateway
    }

    /// Builds the gateway and binds what can fail at once (the state directory, the legacy
    /// listener, the media ports, the records), so that `run` starts on solid ground. `run` then
    /// claims the gateway if it has no identity yet and registers its channels; a refused claim
    /// leaves the gateway up (legacy calls get 503, the log says why) until a reload brings a new code.
    public static func make(
        _ config: BridgeConfiguration, group: any EventLoopGroup, logger: Logger = Logger(label: "symphony-bridge"),
        claimRetry: ReconnectBackoff = ReconnectBackoff(base: .seconds(2), ceiling: .seconds(300)), statsInterval: Duration = .seconds(60),
        upkeep: IdentityUpkeep = IdentityUpkeep(), resolver: DNSStubResolver = .system()
    ) async throws -> GatewayServer {
        do {
            try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw StartError.stateDirectory(config.stateDirectory, "\(error)")
        }
        let loop = group.next()
        var sipConfiguration = SIPEndpoint.Configuration()
        sipConfiguration.productName = "symphony-bridge/\(GatewayVersion.current)"
        var legacyConfiguration = sipConfiguration
        legacyConfiguration.requestSources = Self.legacySources(config, logger: logger)
        // One intercom server speaks for all 14 channels' stations: room for its bursts, not for
        // a flood's 70,000 transactions (docs/GATEWAY.md "Who may call the legacy side").
        legacyConfiguration.transactionLimits = .init(maxTransactions: 2048, maxPerSource: 256)
        let legacyEndpoint = try SIPEndpoint(eventLoop: loop, configuration: legacyConfiguration, logger: component(logger, "sip-legacy"))
        let cloudEndpoint = try SIPEndpoint(eventLoop: loop, configuration: sipConfiguration, logger: component(logger, "sip-cloud"))
        let legacyAddress: SocketAddress
        do {
            let address = try SocketAddress(ipAddress: config.legacyListen.host, port: config.legacyListen.port)
            legacyAddress = try await legacyEndpoint.listen(config.legacyTransport == .tcp ? .tcp : .udp, on: address)
        } catch {
            throw StartError.legacyListen("\(config.legacyListen)", "\(error)")
        }

        var legacyAgent = SIPUserAgent.Configuration()
        legacyAgent.user = config.gatewayID
        legacyAgent.domain = config.legacyServer?.host ?? legacyAddress.ipAddress ?? "localhost"
        // Each leg's answers (ringing, the answer, mid-call offers, REFER) are the router's.
        legacyAgent.role = .backToBackLeg
        let legacyUA = SIPUserAgent(endpoint: legacyEndpoint, configuration: legacyAgent, logger: component(logger, "legacy-ua"))
        var cloudAgent = legacyAgent
        // RFC 4028 on the cloud leg: a client that supports session timers refreshes the call
        // every 150 s, and one that stops is hung up (docs/GATEWAY.md).
        cloudAgent.sessionExpires = 300
        cloudAgent.domain = "localhost"  // replaced by the claimed domain in From; see `ChannelRouter.Settings.domain`
        // A cloud without claiming: INVITEs answer a challenge as the channel's account (or the
        // configured user), and go by the outbound proxy.
        // Read once here, for the INVITEs and for the registration (`registerWithConfiguredCredentials`).
        let credentials = config.cloudAccess.authentication == .claim ? nil : Self.configuredCredentials(config)
        if case .success(let loaded)? = credentials { cloudAgent.callerCredentials = loaded.digest }
        cloudAgent.preloadedRoute = Self.outboundRoute(config)
        let cloudUA = SIPUserAgent(endpoint: cloudEndpoint, configuration: cloudAgent, logger: component(logger, "cloud-ua"))
        await legacyUA.attach()
        await cloudUA.attach()
        var meshEndpoint: SIPEndpoint?
        var meshUA: SIPUserAgent?
        if config.meshEnabled {
            let endpoint = try SIPEndpoint(eventLoop: loop, configuration: sipConfiguration, logger: component(logger, "sip-mesh"))
            var meshAgent = legacyAgent
            meshAgent.domain = "symphony-\(config.gatewayID).local"
            meshUA = SIPUserAgent(endpoint: endpoint, configuration: meshAgent, logger: component(logger, "mesh-ua"))
            await meshUA?.attach()
            meshEndpoint = endpoint
        }

        let relay = try MediaRelay(threads: 1, portRange: config.rtpPortMin...config.rtpPortMax)
        // Not essential for calling: a broken file is moved aside, one that cannot be opened leaves
        // the records queued in memory (docs/RELIABILITY.md "Durable state").
        let records = GatewayCallRecords(path: config.stateDirectory + "/calls.sqlite", logger: component(logger, "call-records"))
        // A broken identity file is named, and the gateway runs as an unclaimed one (legacy
        // calls answered; cloud and mesh wait for a fix): nothing essential waits on it.
        let identity: DeviceIdentity?, brokenIdentity: DeviceIdentity.BrokenFile?
        do {
            (identity, brokenIdentity) = config.cloudAccess.isClaim ? (try DeviceIdentity.load(from: config.stateDirectory), nil) : (nil, nil)
        } catch {
            (identity, brokenIdentity) = (nil, error)
            logger.error("\(error). The gateway runs unclaimed: legacy calls are answered, the cloud and the mesh wait. Restore the file, or remove \(config.stateDirectory)/device.json and claim again with a new claim_code (then reload).")
        }
        let settings = ChannelRouter.Settings(
            config, device: identity?.device ?? config.gatewayID, domain: identity?.domain ?? (config.cloudAccess.isClaim ? "localhost" : Self.configuredDomain(config)))
        let router = ChannelRouter(
            legacy: legacyUA, cloud: cloudUA, mesh: meshUA, settings: settings, relay: relay, records: records, logger: component(logger, "router"))

        var trunk: LegacyTrunk?
        if let server = settings.legacyServer, config.optionsIntervalSeconds > 0 {
            trunk = LegacyTrunk(endpoint: legacyEndpoint, server: server, interval: .seconds(config.optionsIntervalSeconds), user: config.gatewayID, logger: component(logger, "legacy-trunk"))
        }
        let status = Self.makeStatusPublisher(config, logger: component(logger, "mqtt"), statsInterval: statsInterval)
        let gateway = GatewayServer(
            configuration: config, router: router, legacyEndpoint: legacyEndpoint, cloudEndpoint: cloudEndpoint, meshEndpoint: meshEndpoint, relay: relay,
            records: records, trunk: trunk, legacyAddress: legacyAddress, status: status, logger: logger, identity: identity,
            identityBroken: brokenIdentity != nil, claimRetry: claimRetry, upkeep: upkeep, resolver: resolver, credentials: credentials)
        if let brokenIdentity { await status?.problem("identity", brokenIdentity.description) }
        if let status {
            // The status reads the records' state when it runs: of two changes in quick succession, the last word is the current one.
            records.observe { [records] in Task { await status.records(records) } }
            await status.records(records)
            if let clock = ClockCheck.problem(now: Date()) {
                logger.error("\(clock)")
                await status.problem("clock", clock)
            }
        } else if let clock = ClockCheck.problem(now: Date()) {
            logger.error("\(clock)")
        }
        logger.notice("legacy trunk listening", metadata: ["address": "\(config.legacyTransport.rawValue):\(legacyAddress.ipAddress ?? "?"):\(legacyAddress.port ?? 0)", "channels": "\(config.channels.count)"])
        return gateway
    }

    private init(
        configuration: BridgeConfiguration, router: ChannelRouter, legacyEndpoint: SIPEndpoint, cloudEndpoint: SIPEndpoint, meshEndpoint: SIPEndpoint?, relay: MediaRelay,
        records: GatewayCallRecords, trunk: LegacyTrunk?, legacyAddress: SocketAddress, status: GatewayStatusPublisher?, logger: Logger,
        identity: DeviceIdentity?, identityBroken: Bool, claimRetry: ReconnectBackoff, upkeep: IdentityUpkeep, resolver: DNSStubResolver,
        credentials: Result<ConfiguredCredentials, CredentialsError>?
    ) {
        self.configuredCredentials = credentials
        self.status = status
        self.upkeep = upkeep
        self.resolver = resolver
        self.uplink.configuration = configuration
        self.router = router
        self.legacyEndpoint = legacyEndpoint
        self.cloudEndpoint = cloudEndpoint
        self.meshEndpoint = meshEndpoint
        self.relay = relay
        self.records = records
        self.trunk = trunk
        self.legacyAddress = legacyAddress
        self.logger = logger
        (claimCodeChanges, claimCodeChanged) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (identities, identityKnown) = AsyncStream.makeStream(of: DeviceIdentity.self, bufferingPolicy: .bufferingNewest(1))
        var group = ServiceGroupConfiguration(
            services: components(identity: identity, identityBroken: identityBroken, claimRetry: claimRetry).map { .init(service: $0) }, logger: component(logger, "lifecycle"))
        // A part that hangs on its way down does not keep the daemon from stopping.
        group.maximumGracefulShutdownDuration = .seconds(15)
        uplink.group = ServiceGroup(configuration: group)
    }

    /// Runs the gateway's parts until a graceful shutdown (SIGTERM under `symphony-bridge run`,
    /// `stop` in tests) has stopped them all.
    public func run() async throws {
        try await uplink.group?.run()
    }

    /// Stops a gateway begun with `start`: everything ends gracefully, then this returns.
    public func stop() async {
        await uplink.group?.triggerGracefulShutdown()
        await uplink.running?.value
    }

    /// The uplink's registration, once the gateway has an identity.
    public var registration: CloudRegistration? { uplink.registration }

    func claim() async -> Result<DeviceIdentity, ClaimingError> {
        guard let url = configuration.claimURL, let code = configuration.claimCode else {
            return .failure(.notClaimed)
        }
        do {
            // The next key: the same one again after an attempt whose answer was lost, so that the
            // cloud recognises the retry and answers with the same certificate.
            let key = try DeviceIdentity.nextKey(in: configuration.stateDirectory)
            let csr = try DeviceIdentity.request(for: key, hint: configuration.gatewayID)
            let answer = try await ClaimingClient.claim(url: url, code: code, csrPEM: csr, caFile: configuration.cloudCAFile)
            let identity = try DeviceIdentity.store(key: key, answer: answer, in: configuration.stateDirectory)
            logger.notice("claimed as \(identity.device) at \(identity.domain); identity stored in \(configuration.stateDirectory)")
            return .success(identity)
        } catch let error as ClaimingError {
            return .failure(error)
        } catch {
            return .failure(.unreachable("\(error)"))
        }
    }

    /// The RFC 5626 instance id: made once, kept in the state directory.
    static func instanceID(in stateDirectory: String) -> String {
        let path = stateDirectory + "/instance-id"
        if let text = try? String(contentsOfFile: path, encoding: .utf8), UUID(uuidString: text.trimmingCharacters(in: .whitespacesAndNewlines)) != nil {
            return text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        }
        let id = UUID().uuidString.lowercased()
        _ = FileManager.default.createFile(atPath: path, contents: Data((id + "\n").utf8), attributes: [.posixPermissions: 0o600])
        return id
    }

    /// What a reload did, for the log, the `event` topic and systemd's STATUS.
    public enum ReloadResult: Sendable, Equatable {
        case applied(String)
        case refused(String)
    }

    /// SIGHUP: reads `file` again and applies it all or nothing. A file with errors is refused
    /// (the old config stays); so is one that changes what only a restart can change (listen
    /// addresses, the cloud server, the state directory, MQTT, …), naming those keys. Otherwise
    /// the channel plan, codecs, SRTP suites, jitter buffer, Opus complexity and retention take
    /// effect for new calls, the channels' registrations follow, and the status topics too.
    /// A gateway whose claim was refused retries claiming with a changed `claim_code`.
    public func reload(file: String) async -> ReloadResult {
        let result: ReloadResult
        do {
            let new = try BridgeConfiguration.load(file: file)
            result = await apply(new)
        } catch {
            result = .refused(error.description.replacingOccurrences(of: "\n", with: "; "))
        }
        switch result {
        case .applied(let what):
            logger.notice("reload: \(what)")
            await status?.event(["type": .string("reload_ok"), "detail": .string(what)])
        case .refused(let why):
            logger.error("reload refused, the running config stays: \(why)")
            await status?.event(["type": .string("reload_failed"), "reason": .string(why)])
        }
        return result
    }

    /// Applies a configuration already loaded, as `reload` does after reading its file.
    public func apply(_ new: BridgeConfiguration) async -> ReloadResult {
        let old = configuration
        var restartOnly: [String] = []
        func check<T: Equatable>(_ key: String, _ a: T, _ b: T) { if a != b { restartOnly.append(key) } }
        check("gateway.id", old.gatewayID, new.gatewayID)
        check("gateway.site", old.site, new.site)
        check("gateway.state_dir", old.stateDirectory, new.stateDirectory)
        check("gateway.log_level", old.logLevel, new.logLevel)
        check("legacy.listen", old.legacyListen, new.legacyListen)
        check("legacy.transport", old.legacyTransport, new.legacyTransport)
        check("legacy.server", old.legacyServer, new.legacyServer)
        check("legacy.options_interval_s", old.optionsIntervalSeconds, new.optionsIntervalSeconds)
        check("cloud.server", old.cloudServer, new.cloudServer)
        check("cloud.ca_file", old.cloudCAFile, new.cloudCAFile)
        check("cloud.keepalive_s", old.keepaliveSeconds, new.keepaliveSeconds)
        check("cloud.auth/registration/account/domain/outbound_proxy", old.cloudAccess, new.cloudAccess)
        check("media.rtp_port_min", old.rtpPortMin, new.rtpPortMin)
        check("media.rtp_port_max", old.rtpPortMax, new.rtpPortMax)
        check("mesh.enabled", old.meshEnabled, new.meshEnabled)
        check("mesh.interfaces", old.meshInterfaces, new.meshInterfaces)
        check("mesh.fallback_after_ms", old.fallbackAfterMilliseconds, new.fallbackAfterMilliseconds)
        check("mesh.port", old.meshPort, new.meshPort)
        check("mqtt", old.mqtt, new.mqtt)
        check("mqtt.ha_discovery", old.homeAssistantDiscovery, new.homeAssistantDiscovery)
        let claimChanged = old.claimCode != new.claimCode || old.claimURL != new.claimURL
        if claimChanged, uplink.device != nil { restartOnly.append("cloud.claim_code/claim_url (already claimed)") }
        guard restartOnly.isEmpty else {
            return .refused("\(restartOnly.joined(separator: ", ")) can only change with a restart")
        }
        guard new != old else { return .applied("no change") }
        uplink.configuration = new
        await legacyEndpoint.setRequestSources(Self.legacySources(new, logger: logger))
        await router.update(ChannelRouter.Settings(new, device: "", domain: ""))
        if let device = uplink.device, let registration = uplink.registration {
            let accounts = CloudAccounts(registration: new.cloudAccess.registration, device: device, trunkAccount: new.cloudAccess.trunkAccount)
            await registration.update(addressesOfRecord: accounts.addressesOfRecord(new.channels))
        }
        await status?.update(configuration: new)
        if let discovery = uplink.discovery, let device = uplink.device {
            await discovery.update(node: MeshNode(
                device: device, site: new.site ?? "default", numbers: new.channels.filter(\.enabled).map(\.number), port: new.meshPort))
        }
        // The uplink waits for a new code after a refusal (`claimIdentity`).
        if claimChanged, uplink.claimRefused, uplink.registration == nil { claimCodeChanged.yield() }
        return .applied("\(new.channels.count) channel(s), config \(new.digest)")
    }

    /// The MQTT connection and its publisher, from `[mqtt]`; nil without a host, or (logged)
    /// when the password file cannot be read — the gateway runs without status topics then.
    static func makeStatusPublisher(_ config: BridgeConfiguration, logger: Logger, statsInterval: Duration) -> GatewayStatusPublisher? {
        do {
            guard let settings = try config.mqtt.connectionSettings(
                clientID: "symphony-bridge-\(config.gatewayID)", will: GatewayStatusPublisher.lastWill(for: config))
            else { return nil }
            if let warning = config.mqtt.plaintextWarning { logger.warning("\(warning)") }
            return GatewayStatusPublisher(connection: try MQTTConnection(settings), configuration: config, logger: logger, statsInterval: statsInterval)
        } catch {
            logger.error("\(error); running without MQTT status")
            return nil
        }
    }

}

/// One logger for the whole gateway (one handler, one level), each part named in its metadata.
func component(_ logger: Logger, _ name: String) -> Logger {
    var logger = logger
    logger[metadataKey: "component"] = "\(name)"
    return logger
}

/// The gateway's version, for User-Agent, `version` and MQTT `info`.
public enum GatewayVersion {
    public static let current = "0.8.0"
}

/// The mutable bits of the running gateway, behind a lock.
final class UplinkBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _configuration = BridgeConfiguration()
    private var _device: String?
    private var _claimRefused = false
    private var _renewalAsked = false
    private var _registration: CloudRegistration?
    private var _discovery: MeshDiscoveryService?
    private var _group: ServiceGroup?
    private var _running: Task<Void, Never>?

    var configuration: BridgeConfiguration {
        get { lock.withLock { _configuration } }
        set { lock.withLock { _configuration = newValue } }
    }
    /// The device name the cloud gave at claiming, once claimed.
    var device: String? {
        get { lock.withLock { _device } }
        set { lock.withLock { _device = newValue } }
    }
    var claimRefused: Bool {
        get { lock.withLock { _claimRefused } }
        set { lock.withLock { _claimRefused = newValue } }
    }
    /// A certificate renewal was asked for (SIGUSR1) and not yet begun.
    var renewalAsked: Bool {
        get { lock.withLock { _renewalAsked } }
        set { lock.withLock { _renewalAsked = newValue } }
    }
    var registration: CloudRegistration? {
        get { lock.withLock { _registration } }
        set { lock.withLock { _registration = newValue } }
    }
    var discovery: MeshDiscoveryService? {
        get { lock.withLock { _discovery } }
        set { lock.withLock { _discovery = newValue } }
    }
    /// The gateway's parts as services (set once, at the end of `GatewayServer.init`).
    var group: ServiceGroup? {
        get { lock.withLock { _group } }
        set { lock.withLock { _group = newValue } }
    }
    /// `GatewayServer.start`'s background run (tests).
    var running: Task<Void, Never>? {
        get { lock.withLock { _running } }
        set { lock.withLock { _running = newValue } }
    }
}
