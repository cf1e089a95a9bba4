public import CloudUplink
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

/// The running gateway: the legacy trunk's SIP endpoint and user agent, the cloud side's (claimed
/// identity, mutual-TLS registration of the channels), the media relay, the channel router and the
/// call records, wired together from a `BridgeConfiguration`. `symphony-bridge run` is this under
/// swift-service-lifecycle; the end-to-end tests start it in-process.
public final class GatewayServer: Sendable {
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
    private let uplink = UplinkBox()
    /// The MQTT status topics, when `[mqtt] host` is set.
    public let status: GatewayStatusPublisher?

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

    /// Starts everything that needs no cloud at once (legacy listener, router, records), then
    /// claims the gateway if it has no identity yet, and registers its channels. A refused claim
    /// leaves the gateway up (legacy calls get 503, the log says why) without retrying the code.
    public static func start(
        _ config: BridgeConfiguration, group: any EventLoopGroup, logger: Logger = Logger(label: "symphony-bridge"),
        claimRetry: ReconnectBackoff = ReconnectBackoff(base: .seconds(2), ceiling: .seconds(300)), statsInterval: Duration = .seconds(60)
    ) async throws -> GatewayServer {
        do {
            try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw StartError.stateDirectory(config.stateDirectory, "\(error)")
        }
        let loop = group.next()
        var sipConfiguration = SIPEndpoint.Configuration()
        sipConfiguration.productName = "symphony-bridge/\(GatewayVersion.current)"
        let legacyEndpoint = try SIPEndpoint(eventLoop: loop, configuration: sipConfiguration, logger: component(logger, "sip-legacy"))
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
        legacyAgent.answerAfter = nil
        legacyAgent.ringOnIncoming = false
        // A bridged leg's answer depends on its media: the router answers mid-call offers.
        legacyAgent.ownerAnswersOffers = true
        let legacyUA = SIPUserAgent(endpoint: legacyEndpoint, configuration: legacyAgent, logger: component(logger, "legacy-ua"))
        var cloudAgent = legacyAgent
        // RFC 4028 on the cloud leg: a client that supports session timers refreshes the call
        // every 150 s, and one that stops is hung up (docs/GATEWAY.md).
        cloudAgent.sessionExpires = 300
        cloudAgent.domain = "localhost"  // replaced by the claimed domain in From; see `ChannelRouter.Settings.domain`
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
        let records = try GatewayCallRecords(path: config.stateDirectory + "/calls.sqlite")
        let identity = try? DeviceIdentity.load(from: config.stateDirectory)
        let policies = ChannelRouter.Settings.policies(config)
        var settings = ChannelRouter.Settings(
            channels: config.channels, device: identity?.device ?? config.gatewayID, domain: identity?.domain ?? "localhost",
            legacyPolicy: policies.legacy, cloudPolicy: policies.cloud)
        settings.legacyServer = config.legacyServer.map { SIPDestination(transport: config.legacyTransport == .tcp ? .tcp : .udp, host: $0.host, port: $0.port) }
        settings.legacyTransport = config.legacyTransport == .tcp ? .tcp : .udp
        settings.legacyMediaAddress = LocalMediaAddress.isWildcard(config.legacyListen.host) ? nil : config.legacyListen.host
        settings.codecOptions = AudioCodecOptions(opusComplexity: config.opusComplexity)
        settings.jitterBufferMax = .milliseconds(config.jitterMaxMilliseconds)
        settings.meshPolicy = ChannelRouter.Settings.meshPolicy(config)
        settings.fallbackAfter = .milliseconds(config.fallbackAfterMilliseconds)
        settings.mediaTimeout = config.mediaInactivitySeconds > 0 ? .seconds(config.mediaInactivitySeconds) : nil
        let router = ChannelRouter(
            legacy: legacyUA, cloud: cloudUA, mesh: meshUA, settings: settings, relay: relay, records: records, logger: component(logger, "router"))
        await router.start()

        var trunk: LegacyTrunk?
        if let server = settings.legacyServer, config.optionsIntervalSeconds > 0 {
            trunk = LegacyTrunk(endpoint: legacyEndpoint, server: server, interval: .seconds(config.optionsIntervalSeconds), user: config.gatewayID, logger: component(logger, "legacy-trunk"))
            await trunk?.start()
        }
        let status = Self.makeStatusPublisher(config, logger: component(logger, "mqtt"), statsInterval: statsInterval)
        let gateway = GatewayServer(
            configuration: config, router: router, legacyEndpoint: legacyEndpoint, cloudEndpoint: cloudEndpoint, meshEndpoint: meshEndpoint, relay: relay,
            records: records, trunk: trunk, legacyAddress: legacyAddress, status: status, logger: logger)
        if let status { await gateway.startStatus(status) }
        logger.notice("legacy trunk listening", metadata: ["address": "\(config.legacyTransport.rawValue):\(legacyAddress.ipAddress ?? "?"):\(legacyAddress.port ?? 0)", "channels": "\(config.channels.count)"])
        gateway.scheduleRetention(on: loop)
        Task { await gateway.connectCloud(identity: identity, retry: claimRetry) }
        return gateway
    }

    private init(
        configuration: BridgeConfiguration, router: ChannelRouter, legacyEndpoint: SIPEndpoint, cloudEndpoint: SIPEndpoint, meshEndpoint: SIPEndpoint?, relay: MediaRelay,
        records: GatewayCallRecords, trunk: LegacyTrunk?, legacyAddress: SocketAddress, status: GatewayStatusPublisher?, logger: Logger
    ) {
        self.status = status
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
    }

    /// The uplink's registration, once the gateway has an identity.
    public var registration: CloudRegistration? { uplink.registration }

    /// Claims (when needed), then registers the channels and keeps the router's cloud flow current.
    private func connectCloud(identity stored: DeviceIdentity?, retry: ReconnectBackoff) async {
        var identity = stored
        var backoff = retry
        if identity == nil, configuration.meshEnabled {
            logger.notice("the mesh starts once the gateway is claimed: mesh calls need its device certificate")
        }
        while identity == nil {
            switch await claim() {
            case .success(let claimed):
                identity = claimed
            case .failure(let error):
                if case .unreachable = error {} else {
                    uplink.claimRefused = true
                    logger.error("claiming refused: \(error). The gateway stays up without the cloud; put a new claim_code in the config and restart or reload.")
                    uplink.set(status: "claim refused: \(error)")
                    await status?.claim(claimed: false, error: "claim refused: \(error)")
                    return
                }
                var generator = SystemRandomNumberGenerator()
                let delay = backoff.nextDelay(using: &generator)
                logger.warning("claiming failed: \(error); retrying in \(delay)")
                uplink.set(status: "claim failed: \(error)")
                await status?.claim(claimed: false, error: "claim failed: \(error)")
                try? await Task.sleep(for: delay)
                if uplink.stopped { return }
            }
        }
        guard let identity else { return }
        if identity.device != configuration.gatewayID {
            logger.notice("the cloud knows this gateway as \"\(identity.device)\" (config id \"\(configuration.gatewayID)\"); its channels register as \(identity.device)-ch<n>")
        }
        uplink.device = identity.device
        await router.setIdentity(device: identity.device, domain: identity.domain)
        await status?.claim(claimed: true, error: nil)
        do {
            try await cloudEndpoint.useTLS(SIPTLSSettings(
                certificateFile: identity.certificateFile, keyFile: identity.keyFile, caFile: configuration.cloudCAFile ?? identity.caFile))
        } catch {
            logger.error("the device identity in \(configuration.stateDirectory) cannot be loaded: \(error)")
            uplink.set(status: "identity unusable: \(error)")
            await status?.claim(claimed: true, error: "identity unusable: \(error)")
            return
        }
        if configuration.meshEnabled { Task { await self.startMesh(identity) } }
        guard let server = configuration.cloudServer else { return }
        var settings = CloudRegistration.Settings(
            server: SIPDestination(transport: .tls, host: server.host, port: server.port), domain: identity.domain,
            addressesOfRecord: configuration.channels.filter(\.enabled).map { "\(identity.device)-ch\($0.index)" },
            instance: Self.instanceID(in: configuration.stateDirectory))
        settings.keepAlive = .seconds(configuration.keepaliveSeconds)
        // A gateway on a LAN comes back soon after an outage: at most 15 s between attempts.
        settings.backoff = ReconnectBackoff(base: .seconds(1), ceiling: .seconds(15))
        let registration = CloudRegistration(endpoint: cloudEndpoint, settings: settings, logger: component(logger, "cloud-uplink"))
        guard uplink.install(registration) else { return }
        let router = self.router
        Task {
            for await change in registration.statusChanges {
                if case .registered(let flow) = change { await router.setCloudFlow(flow) } else { await router.setCloudFlow(nil) }
                await self.status?.uplink(change)
            }
        }
        Task {
            for await health in registration.healthChanges {
                await router.setCloudHealth(health)
                await self.status?.health(health)
                // Know the site as it is now: the mesh may carry the next call.
                if health == .down { await self.discovery?.refresh() }
            }
        }
        await registration.start()
    }

    /// The mesh: mutual TLS with the device certificate and the site CA (from the claim, so it
    /// works offline), a SIPS listener on each interface's link-local address, and discovery
    /// there. An interface without a usable link-local address yet (down, or still in duplicate
    /// address detection) is tried again every 2 seconds.
    private func startMesh(_ identity: DeviceIdentity) async {
        guard let meshEndpoint else { return }
        do {
            var tls = try SIPTLSSettings(
                certificateFile: identity.certificateFile, keyFile: identity.keyFile, caFile: identity.caFile, clientCertificates: .required)
            // Peers are at link-local addresses: the certificate's device name is checked instead.
            tls.verifiesServerName = false
            try await meshEndpoint.useTLS(tls)
        } catch {
            logger.error("mesh: the device identity cannot be used for TLS: \(error); no mesh")
            return
        }
        let config = configuration
        let node = MeshNode(
            device: identity.device, site: config.site ?? "default", numbers: config.channels.filter(\.enabled).map(\.number), port: config.meshPort)
        let discovery = MeshDiscoveryService(node: node, eventLoop: meshEndpoint.eventLoop, logger: component(logger, "mesh-discovery"))
        guard uplink.install(discovery) else { return }
        let (router, status) = (self.router, self.status)
        Task {
            for await peers in discovery.peerChanges {
                await router.setMesh(peers: peers)
                await status?.mesh(peers: peers)
            }
        }
        var pending = config.meshInterfaces
        var addresses: [String: String] = [:]
        var lastProblem: [String: String] = [:]
        var listening: Set<String> = []
        func problem(_ interface: String, _ text: String) {
            // Said once per new reason, not every 2 s.
            guard lastProblem[interface] != text else { return }
            lastProblem[interface] = text
            logger.warning("mesh on \(interface) not up yet: \(text); trying again every 2 s")
        }
        while !pending.isEmpty, !uplink.stopped {
            for interface in pending {
                guard let address = NetworkInterface.linkLocalAddresses(of: interface).first,
                    let linkLocal = try? LinkLocalAddress(address, interface: interface)
                else {
                    problem(interface, NetworkInterface.index(of: interface) == nil ? "no such interface" : "no IPv6 link-local address")
                    continue
                }
                do {
                    if !listening.contains(interface) {
                        let listen = try SocketAddress(ipAddressWithZone: linkLocal.scopedText, port: config.meshPort)
                        try await meshEndpoint.listen(.tls, on: listen)
                        listening.insert(interface)
                    }
                    try await discovery.add(interface: interface, address: linkLocal)
                    addresses[interface] = address
                    pending.removeAll { $0 == interface }
                    await router.setMesh(addresses: addresses)
                    logger.notice("mesh on \(interface): sips:[\(address)]:\(config.meshPort) as \(identity.device)")
                } catch {
                    problem(interface, "\(error)")
                }
            }
            if !pending.isEmpty { try? await Task.sleep(for: .seconds(2)) }
        }
    }

    private func claim() async -> Result<DeviceIdentity, ClaimingError> {
        guard let url = configuration.claimURL, let code = configuration.claimCode else {
            return .failure(.notClaimed)
        }
        do {
            let (key, csr) = try DeviceIdentity.makeKeyAndRequest(hint: configuration.gatewayID)
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

    /// Deletes call records past the retention once at start and then every hour.
    private func scheduleRetention(on loop: any EventLoop) {
        let (records, logger, box) = (records, logger, uplink)
        uplink.retention = loop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .hours(1)) { _ in
            let days = box.configuration.retentionDays
            do {
                let removed = try records.purge(retentionDays: days, now: Date())
                if removed > 0 { logger.info("retention: \(removed) call records older than \(days) days deleted") }
            } catch {
                logger.error("retention job failed: \(error)")
            }
        }
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

    func apply(_ new: BridgeConfiguration) async -> ReloadResult {
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
        let policies = ChannelRouter.Settings.policies(new)
        await router.update(
            channels: new.channels, legacyPolicy: policies.legacy, cloudPolicy: policies.cloud, meshPolicy: ChannelRouter.Settings.meshPolicy(new),
            codecOptions: AudioCodecOptions(opusComplexity: new.opusComplexity), jitterBufferMax: .milliseconds(new.jitterMaxMilliseconds),
            mediaTimeout: new.mediaInactivitySeconds > 0 ? .seconds(new.mediaInactivitySeconds) : nil)
        if let device = uplink.device, let registration = uplink.registration {
            await registration.update(addressesOfRecord: new.channels.filter(\.enabled).map { "\(device)-ch\($0.index)" })
        }
        await status?.update(configuration: new)
        if let discovery = uplink.discovery, let device = uplink.device {
            await discovery.update(node: MeshNode(
                device: device, site: new.site ?? "default", numbers: new.channels.filter(\.enabled).map(\.number), port: new.meshPort))
        }
        if claimChanged, uplink.claimRefused, uplink.registration == nil {
            uplink.claimRefused = false
            Task { await self.connectCloud(identity: nil, retry: ReconnectBackoff(base: .seconds(2), ceiling: .seconds(300))) }
        }
        return .applied("\(new.channels.count) channel(s), config \(new.digest)")
    }

    /// Ends calls (BYE/CANCEL), unregisters, stops supervision and closes sockets.
    public func stop() async {
        uplink.stop()
        await router.shutdown()
        if let registration = uplink.registration { await registration.stop() }
        await trunk?.stop()
        // Let the BYEs and REGISTERs leave before the sockets close.
        try? await Task.sleep(for: .milliseconds(300))
        await uplink.discovery?.stop()
        await legacyEndpoint.shutdown()
        await cloudEndpoint.shutdown()
        await meshEndpoint?.shutdown()
        relay.shutdown()
        await status?.stop()
    }

    /// The MQTT connection and its publisher, from `[mqtt]`; nil without a host, or (logged)
    /// when the password file cannot be read — the gateway runs without status topics then.
    static func makeStatusPublisher(_ config: BridgeConfiguration, logger: Logger, statsInterval: Duration) -> GatewayStatusPublisher? {
        do {
            guard let settings = try config.mqtt.connectionSettings(
                clientID: "symphony-bridge-\(config.gatewayID)", will: GatewayStatusPublisher.lastWill(for: config))
            else { return nil }
            return GatewayStatusPublisher(connection: try MQTTConnection(settings), configuration: config, logger: logger, statsInterval: statsInterval)
        } catch {
            logger.error("\(error); running without MQTT status")
            return nil
        }
    }

    /// Feeds the status topics from the router and the trunk, and connects to the broker.
    private func startStatus(_ status: GatewayStatusPublisher) async {
        let router = self.router
        await status.run { [router] in
            let media = await router.mediaStatistics()
            return GatewayStatistics(
                activeCalls: await router.busyChannelIndices.count, expected: media.expected, lost: media.lost, jitterMilliseconds: media.jitterMilliseconds)
        }
        Task {
            for await event in router.events {
                await status.routerEvent(event)
                switch event {
                case .channelBusy, .channelIdle: await status.mesh(activeCalls: await router.meshCallCount)
                default: break
                }
            }
        }
        if let trunk {
            Task {
                for await state in trunk.stateChanges { await status.trunk(state, roundTrip: await trunk.supervision.lastRoundTrip) }
            }
        }
        status.connection.start()
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
    public static let current = "0.5.0"
}

/// The mutable bits of the running gateway, behind a lock.
final class UplinkBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _configuration = BridgeConfiguration()
    private var _device: String?
    private var _claimRefused = false

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
    private var _registration: CloudRegistration?
    private var _status: String?
    private var _stopped = false
    private var _retention: RepeatedTask?

    var registration: CloudRegistration? { lock.withLock { _registration } }
    var stopped: Bool { lock.withLock { _stopped } }
    var retention: RepeatedTask? {
        get { lock.withLock { _retention } }
        set { lock.withLock { _retention = newValue } }
    }

    private var _discovery: MeshDiscoveryService?
    var discovery: MeshDiscoveryService? { lock.withLock { _discovery } }

    func install(_ discovery: MeshDiscoveryService) -> Bool {
        lock.withLock {
            guard !_stopped else { return false }
            _discovery = discovery
            return true
        }
    }

    func install(_ registration: CloudRegistration) -> Bool {
        lock.withLock {
            guard !_stopped else { return false }
            _registration = registration
            return true
        }
    }

    func set(status: String) { lock.withLock { _status = status } }

    func stop() {
        lock.withLock {
            _stopped = true
            _retention?.cancel()
        }
    }
}
