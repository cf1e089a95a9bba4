import CloudUplink
import DeviceTrust
import DurableState
import Foundation
import Logging
import Mesh
import NIOCore
import NetworkAddress
import SIPTransport
import ServiceLifecycle

/// One part of the running gateway as a swift-service-lifecycle service. Its `run` starts the
/// part, waits for the graceful shutdown and stops the part before it returns: a part that has
/// nothing left to do (a refused claim, no mesh interface) still waits, so that the group never
/// takes an early return for a failure and stops everything.
struct GatewayComponent: Service, CustomStringConvertible {
    let description: String
    let body: @Sendable () async -> Void

    func run() async { await body() }
}

extension GatewayServer {
    /// The parts, in the order they start; they stop in the reverse order.
    func components(identity: DeviceIdentity?, identityBroken: Bool, claimRetry: ReconnectBackoff) -> [GatewayComponent] {
        var parts = [
            GatewayComponent(description: "sip-transport") { await self.runTransport() },
            GatewayComponent(description: "call-records") { await self.runRecords() },
        ]
        if let status { parts.append(GatewayComponent(description: "status") { await self.runStatus(status) }) }
        if let trunk {
            parts.append(GatewayComponent(description: "legacy-trunk") {
                await trunk.start()
                try? await gracefulShutdown()
                await trunk.stop()
            })
        }
        parts.append(GatewayComponent(description: "cloud-uplink") { await self.runUplink(identity: identity, identityBroken: identityBroken, retry: claimRetry) })
        if meshEndpoint != nil { parts.append(GatewayComponent(description: "mesh") { await self.runMesh() }) }
        parts.append(GatewayComponent(description: "router") { await self.runRouter() })
        return parts
    }

    // MARK: The parts

    /// The sockets: open from `make` on; closed last, once the requests of the last moment (BYE,
    /// CANCEL, un-REGISTER) have their answers or 2 s have passed.
    private func runTransport() async {
        try? await gracefulShutdown()
        let endpoints = [legacyEndpoint, cloudEndpoint] + (meshEndpoint.map { [$0] } ?? [])
        await withDiscardingTaskGroup { group in
            for endpoint in endpoints { group.addTask { await endpoint.drain(within: .seconds(2)) } }
        }
        for endpoint in endpoints { await endpoint.shutdown() }
        relay.shutdown()
    }

    /// The call records' upkeep: a heartbeat every 15 s (the end time of calls a crash leaves
    /// open), the file tried again every minute while it cannot be opened, records past the
    /// retention deleted 5 s after the start and then every hour — on a `RetentionClock`, so that
    /// a wall clock stepped forward deletes nothing young. On the way down, waits until the
    /// records of the ended calls are on disk (or says how many are not).
    private func runRecords() async {
        let (records, logger, box) = (records, logger, uplink)
        let retentionClock = RetentionClock(wall: Date().timeIntervalSince1970, monotonic: MonotonicTime.seconds())
        await cancelWhenGracefulShutdown {
            var tick = 0
            try? await Task.sleep(for: .seconds(5))
            while !Task.isCancelled {
                records.heartbeat()
                if tick % 4 == 0 { records.reopen() }
                if tick % 240 == 0 {
                    let days = box.configuration.retentionDays
                    let (wall, monotonic) = (Date().timeIntervalSince1970, MonotonicTime.seconds())
                    if let step = retentionClock.step(wall: wall, monotonic: monotonic, tolerance: 60), step > 0 {
                        logger.warning("the wall clock moved \(Int(step)) s ahead of the time elapsed since the start: the retention purge keeps to the elapsed time until the next start")
                    }
                    do {
                        let removed = try await records.purge(retentionDays: days, now: Date(timeIntervalSince1970: retentionClock.now(wall: wall, monotonic: monotonic)))
                        if removed > 0 { logger.info("retention: \(removed) call records older than \(days) days deleted") }
                    } catch {
                        logger.error("retention job failed: \(error)")
                    }
                }
                tick += 1
                try? await Task.sleep(for: .seconds(15))
            }
        }
        await records.flush()
        records.heartbeat()
        let backlog = records.backlog
        if backlog.waiting > 0 { logger.error("\(backlog.waiting) call records not written at shutdown: \(backlog.error ?? "the file is not open")") }
    }

    /// The MQTT status topics, fed by the router (until its last `channelIdle`), the trunk and
    /// the statistics; `offline` and a clean disconnect at the end.
    private func runStatus(_ status: GatewayStatusPublisher) async {
        let (router, trunk, legacyEndpoint) = (router, trunk, legacyEndpoint)
        // (Started here, before the first publish of any other part: see MQTTConnection.start.)
        status.connection.start()
        await withDiscardingTaskGroup { group in
            group.addTask {
                await cancelWhenGracefulShutdown {
                    await status.run {
                        let media = await router.mediaStatistics()
                        let legacy = await legacyEndpoint.statistics
                        return GatewayStatistics(
                            activeCalls: await router.busyChannelIndices.count, expected: media.expected, lost: media.lost,
                            jitterMilliseconds: media.jitterMilliseconds, refusedCalls: await router.refusedCalls,
                            refusedRequests: legacy.transactionsRefused + legacy.sourcesRefused)
                    }
                }
            }
            group.addTask {
                // The router finishes its events when it has ended the calls at shutdown.
                for await event in router.events {
                    await status.routerEvent(event)
                    switch event {
                    case .channelBusy, .channelIdle: await status.mesh(activeCalls: await router.meshCallCount)
                    default: break
                    }
                }
            }
            if let trunk {
                group.addTask {
                    await cancelWhenGracefulShutdown {
                        for await state in trunk.stateChanges { await status.trunk(state, roundTrip: await trunk.supervision.lastRoundTrip) }
                    }
                }
            }
        }
        try? await gracefulShutdown()
        await status.stop()
    }

    /// Claims (when needed) — or takes the configured certificate or password — then registers
    /// the channels and keeps the router's cloud flow and health current; unregisters at the end.
    private func runUplink(identity stored: DeviceIdentity?, identityBroken: Bool, retry: ReconnectBackoff) async {
        await cancelWhenGracefulShutdown {
            let registration: CloudRegistration
            var claimed: DeviceIdentity?
            if self.configuration.cloudAccess.isClaim {
                guard let identity = await self.claimIdentity(stored, broken: identityBroken, retry: retry), let made = await self.register(identity) else { return }
                (registration, claimed) = (made, identity)
            } else {
                guard let made = await self.registerWithConfiguredCredentials() else { return }
                registration = made
            }
            let (router, status, box) = (self.router, self.status, self.uplink)
            await withDiscardingTaskGroup { group in
                group.addTask {
                    for await change in registration.statusChanges {
                        if case .registered(let flow) = change { await router.setCloudFlow(flow) } else { await router.setCloudFlow(nil) }
                        await status?.uplink(change)
                    }
                }
                if let claimed { group.addTask { await self.runIdentityUpkeep(claimed, registration: registration) } }
                group.addTask {
                    // The clock against the cloud's (docs/RELIABILITY.md "Time"); cleared, the release-date check stays.
                    for await problem in registration.clockChanges { await status?.problem("clock", problem ?? ClockCheck.problem(now: Date())) }
                }
                group.addTask {
                    for await health in registration.healthChanges {
                        await router.setCloudHealth(health)
                        await status?.health(health)
                        // Know the site as it is now: the mesh may carry the next call.
                        if health == .down { await box.discovery?.refresh() }
                    }
                }
                await registration.start()
            }
        }
        try? await gracefulShutdown()
        await uplink.registration?.stop()
    }

    /// The identity stored or claimed now; retried with backoff while the claiming server is
    /// unreachable, and after a refusal only once a reload brings a new code. Nil when cancelled.
    private func claimIdentity(_ stored: DeviceIdentity?, broken: Bool, retry: ReconnectBackoff) async -> DeviceIdentity? {
        if let stored { return stored }
        if broken {
            // Not claimed again on its own (the old code is spent; a new key would be refused):
            // a reload with a new claim_code, once the files are dealt with, claims again.
            uplink.claimRefused = true
            await status?.claim(claimed: false, error: "identity files broken; see the log")
            for await _ in claimCodeChanges { break }
            uplink.claimRefused = false
            await status?.problem("identity", nil)
        }
        if configuration.meshEnabled {
            logger.notice("the mesh starts once the gateway is claimed: mesh calls need its device certificate")
        }
        var backoff = retry
        while !Task.isCancelled {
            switch await claim() {
            case .success(let claimed):
                return claimed
            case .failure(let error):
                if case .unreachable = error {
                    var generator = SystemRandomNumberGenerator()
                    let delay = backoff.nextDelay(using: &generator)
                    logger.warning("claiming failed: \(error); retrying in \(delay)")
                    await status?.claim(claimed: false, error: "claim failed: \(error)")
                    try? await Task.sleep(for: delay)
                    continue
                }
                uplink.claimRefused = true
                logger.error("claiming refused: \(error). The gateway stays up without the cloud; put a new claim_code in the config and restart or reload.")
                await status?.claim(claimed: false, error: "claim refused: \(error)")
                for await _ in claimCodeChanges { break }
                uplink.claimRefused = false
                backoff = retry
            }
        }
        return nil
    }

    /// Loads the identity into TLS, hands it to the mesh, and makes the channels' registration
    /// (started by the caller); nil when the identity is unusable or there is no cloud server.
    private func register(_ identity: DeviceIdentity) async -> CloudRegistration? {
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
            await status?.claim(claimed: true, error: "identity unusable: \(error)")
            return nil
        }
        // Who may take part in the mesh, before the mesh starts: our site, the last revocation list.
        await router.setMeshTrust(Self.meshTrust(identity, Self.storedRevocations(in: configuration.stateDirectory)))
        identityKnown.yield(identity)
        guard let server = configuration.cloudServer else { return nil }
        var settings = CloudRegistration.Settings(
            server: SIPDestination(transport: .tls, host: server.host, port: server.port), domain: identity.domain,
            addressesOfRecord: CloudAccounts(device: identity.device).addressesOfRecord(configuration.channels),
            instance: Self.instanceID(in: configuration.stateDirectory))
        settings.keepAlive = .seconds(configuration.keepaliveSeconds)
        settings.locate = Self.locator(configuration, resolver: resolver)
        // A gateway on a LAN comes back soon after an outage: at most 15 s between attempts.
        settings.backoff = ReconnectBackoff(base: .seconds(1), ceiling: .seconds(15))
        let registration = CloudRegistration(endpoint: cloudEndpoint, settings: settings, logger: component(logger, "cloud-uplink"))
        uplink.registration = registration
        return registration
    }

    /// The mesh: mutual TLS with the device certificate and the site CA (from the claim, so it
    /// works offline), a SIPS listener on each interface's link-local address, and discovery
    /// there. Goodbyes on every interface at the end.
    private func runMesh() async {
        await cancelWhenGracefulShutdown {
            // The mesh needs a certificate that names our site (`MeshTrust`): one of before site
            // binding is renewed first.
            var claimed: DeviceIdentity?
            for await identity in self.identities where identity.binding != nil {
                claimed = identity
                break
            }
            guard let identity = claimed, let discovery = await self.makeDiscovery(identity) else { return }
            let (router, status) = (self.router, self.status)
            await withDiscardingTaskGroup { group in
                group.addTask {
                    for await peers in discovery.peerChanges {
                        await router.setMesh(peers: peers)
                        await status?.mesh(peers: peers)
                    }
                }
                await self.bringUpMeshInterfaces(discovery, as: identity)
            }
        }
        try? await gracefulShutdown()
        await uplink.discovery?.stop()
    }

    private func makeDiscovery(_ identity: DeviceIdentity) async -> MeshDiscoveryService? {
        guard let meshEndpoint else { return nil }
        do {
            try await meshEndpoint.useTLS(try Self.meshTLS(identity))
        } catch {
            logger.error("mesh: the device identity cannot be used for TLS: \(error); no mesh")
            return nil
        }
        let config = configuration
        // The site is the one our certificate names (peers check it there): `company/site`.
        if let site = config.site, let binding = identity.binding, site != binding.site {
            logger.notice("[gateway] site is \"\(site)\", but the device certificate names site \"\(binding.site)\" of \(binding.company): the mesh uses the certificate's")
        }
        let node = MeshNode(
            device: identity.device, site: identity.binding?.siteKey ?? config.site ?? "default", numbers: config.channels.filter(\.enabled).map(\.number), port: config.meshPort)
        let discovery = MeshDiscoveryService(node: node, eventLoop: meshEndpoint.eventLoop, logger: component(logger, "mesh-discovery"))
        uplink.discovery = discovery
        return discovery
    }

    /// Listens and announces on each mesh interface; one without a usable link-local address yet
    /// (down, or still in duplicate address detection) is tried again every 2 seconds.
    private func bringUpMeshInterfaces(_ discovery: MeshDiscoveryService, as identity: DeviceIdentity) async {
        guard let meshEndpoint else { return }
        let config = configuration
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
        while !pending.isEmpty, !Task.isCancelled {
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

    /// The router takes calls until the shutdown, then ends them all (new ones get 503).
    private func runRouter() async {
        let router = router
        await withDiscardingTaskGroup { group in
            group.addTask { await router.run() }
            try? await gracefulShutdown()
            await router.shutdown()
            group.cancelAll()
        }
    }
}
