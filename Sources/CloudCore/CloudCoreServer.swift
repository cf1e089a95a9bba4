public import Foundation
public import Logging
import Media
public import NIOCore
public import NIOPosix
import NIOSSL
import NIOConcurrencyHelpers
import Crypto
import SIP
public import SIPTransport
import X509
import DeviceTrust
import DurableState

/// The whole cloud core assembled from its configuration: directory, CA and certificates,
/// token key, the SIP endpoint with its listeners, the proxy, the claiming endpoint and the
/// retention job. `symphony-cloud-core run` and the tests start it the same way.
public final class CloudCoreServer: Sendable {
    public let configuration: CloudCoreConfiguration
    /// For `info`, User-Agent and `--version`.
    public static let version = "0.8.0"
    public let directory: Directory
    public let authority: DeviceCertificateAuthority
    public let endpoint: SIPEndpoint
    public let proxy: CloudCoreProxy
    public let claiming: ClaimingHTTPServer?
    public let tokenSigner: ClientTokenSigner
    /// The bound addresses (port 0 in the config picks a free one).
    public let sipAddresses: [SIPTransportProtocol: SocketAddress]
    /// The bound `client_tls_listen` addresses (no certificate request).
    public let clientTLSAddresses: [SocketAddress]
    /// The retention purge and the heartbeat.
    let periodic: [RepeatedTask]
    let lock: CoreLock?
    let status: CoreStatusPublisher?
    let logger: Logger

    public static func start(
        _ configuration: CloudCoreConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }, serverCertificateCheck: Duration = .seconds(3600)
    ) async throws -> CloudCoreServer {
        let c = configuration
        try FileManager.default.createDirectory(atPath: c.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // Held while the core runs (`admin restore` waits for it); another core on the same state is a mistake worth a line.
        let lock = CoreLock(stateDirectory: c.stateDirectory)
        if lock == nil {
            logger.warning(CoreLock.openError == 0
                ? "another process holds \(c.stateDirectory)/core.lock: is a second core running on this state directory?"
                : "cannot open \(c.stateDirectory)/core.lock (\(String(cString: strerror(CoreLock.openError)))): running without it, `admin restore` cannot tell that the core runs")
        }
        let directory: Directory
        do {
            directory = try Directory(path: c.directoryFile, realm: c.realm)
        } catch {
            lock?.release()
            throw error
        }
        if let problem = ClockCheck.problem(now: clock()) { logger.error("\(problem)") }
        // Calls a crash left open are closed as interrupted; a disk that refuses the write does not stop the start.
        do {
            let closed = try directory.closeInterruptedCalls(now: clock())
            if closed > 0 { logger.warning("call records left open by the last run closed as interrupted", metadata: ["calls": "\(closed)"]) }
        } catch {
            logger.error("call records left open by the last run not closed", metadata: ["error": "\(SQLiteFile.describe(error))"])
        }
        if let seed = c.seedFile {
            let summary = try DirectorySeed.load(file: seed, into: directory)
            logger.info(summary.loaded ? "directory seeded" : "directory not empty; seed skipped", metadata: ["file": "\(seed)", "entries": "\(summary.entries)"])
        }
        let authority = try DeviceCertificateAuthority.loadOrCreate(certificateFile: c.resolvedCACertificateFile, keyFile: c.resolvedCAKeyFile)
        let (certificatePEM, keyPEM) = try Self.serverIdentity(c, authority: authority, now: clock())
        let tokenKey = try Self.tokenKey(c.resolvedTokenKeyFile)

        let eventLoop = group.next()
        var endpointConfiguration = SIPEndpoint.Configuration()
        endpointConfiguration.productName = "symphony-cloud-core"
        // Every gateway and client holds one TLS flow: room for thousands, a NAT's worth per address
        // (fitted to the process's file limit; the unit sets LimitNOFILE=16384).
        endpointConfiguration.connectionLimits = ConnectionAdmission.Limits(maxConnections: 8192, maxPerAddress: 256)
        endpointConfiguration.tls = try Self.sipTLS(certificatePEM: certificatePEM, keyPEM: keyPEM, authority: authority)
        endpointConfiguration.advertisedHost = c.advertise
        let endpoint = try SIPEndpoint(eventLoop: eventLoop, configuration: endpointConfiguration, logger: logger)
        var addresses: [SIPTransportProtocol: SocketAddress] = [:]
        for listen in c.tlsListen {
            let bound = try await endpoint.listen(.tls, on: try SocketAddress(ipAddress: listen.host, port: listen.port))
            addresses[.tls] = addresses[.tls] ?? bound
        }
        var clientAddresses: [SocketAddress] = []
        for listen in c.clientTLSListen {
            clientAddresses.append(try await endpoint.listen(.tls, on: try SocketAddress(ipAddress: listen.host, port: listen.port), askForCertificate: false))
        }
        if let udp = c.labUDP { addresses[.udp] = try await endpoint.listen(.udp, on: try SocketAddress(ipAddress: udp.host, port: udp.port)) }
        if let tcp = c.labTCP { addresses[.tcp] = try await endpoint.listen(.tcp, on: try SocketAddress(ipAddress: tcp.host, port: tcp.port)) }

        var settings = CloudCoreProxy.Settings()
        settings.realm = c.realm
        settings.domain = c.domain
        settings.maxCallDuration = .seconds(c.maxCallSeconds)
        settings.ringSeconds = c.ringSeconds
        settings.maxBranches = c.maxParallel
        settings.minExpires = UInt32(c.minExpires)
        settings.maxExpires = UInt32(c.maxExpires)
        settings.defaultExpires = UInt32(c.defaultExpires)
        settings.unauthenticatedRate = Double(c.unauthenticatedPerSecond)
        settings.unauthenticatedBurst = Double(c.unauthenticatedBurst)
        settings.digestAlgorithms = c.digestAlgorithms.compactMap { DigestAlgorithm(parameter: $0) }
        settings.bearerChallenge = c.bearerChallenge
        settings.tokens = ClientTokenVerifier(key: tokenKey.publicKey, audience: c.tokenAudience)
        settings.callsPerPrincipal = c.callsPerPrincipal
        settings.bindingsPerAOR = c.bindingsPerAOR
        settings.maxCalls = c.maxCalls
        settings.routeSignature = RouteSignature(deriving: tokenKey.rawRepresentation)
        if c.mediaAnchor == "rtpengine", let ng = c.rtpengine {
            settings.anchor = try await RTPEngineControl.connect(to: try SocketAddress(ipAddress: ng.host, port: ng.port), group: group)
            logger.notice("media anchored at rtpengine", metadata: ["ng": "\(ng)"])
        } else if c.mediaAnchor == "embedded" {
            let relay = try MediaRelay(threads: c.mediaThreads, portRange: c.mediaPortMin...c.mediaPortMax, randomPorts: true)
            settings.anchor = EmbeddedMediaAnchor(
                relay: relay, bindHost: c.mediaBindHost, sdpAddress: c.mediaSDPAddress, maxCalls: c.maxCalls,
                maxAge: .seconds(c.maxCallSeconds + c.ringSeconds + 60), logger: logger)
            logger.notice("media anchored at the core", metadata: ["address": "\(c.mediaSDPAddress)", "ports": "\(c.mediaPortMin)-\(c.mediaPortMax)"])
        }
        let proxy = CloudCoreProxy(endpoint: endpoint, directory: directory, settings: settings, logger: logger, clock: { clock().timeIntervalSince1970 })
        try await proxy.start()

        var claiming: ClaimingHTTPServer?
        if let listen = c.claimingListen {
            let sipPort = addresses[.tls]?.port ?? 5061
            let service = ClaimingService(
                directory: directory, authority: authority, validDays: c.deviceCertificateDays,
                sipServer: "sips:\(c.advertise.contains(":") ? "[\(c.advertise)]" : c.advertise):\(sipPort)", domain: c.domain,
                attemptsPerMinute: c.claimingAttemptsPerMinute, logger: logger, clock: clock)
            claiming = try await ClaimingHTTPServer.start(
                service: service, tls: try Self.claimingTLS(certificatePEM: certificatePEM, keyPEM: keyPEM, authority: authority),
                address: try SocketAddress(ipAddress: listen.host, port: listen.port), group: group, logger: logger)
            service.setService("https://\(c.advertise.contains(":") ? "[\(c.advertise)]" : c.advertise):\(claiming?.localAddress?.port ?? listen.port)")
        }
        let retentionDays = c.retentionDays
        // First run soon after start (a core that restarts often still purges), then every interval;
        // on a `RetentionClock`, so that a wall clock stepped forward purges nothing young.
        let retentionClock = RetentionClock(wall: clock().timeIntervalSince1970, monotonic: MonotonicTime.seconds())
        let firstPurge = TimeAmount.seconds(Int64(min(5, c.purgeIntervalSeconds)))
        let retention = eventLoop.scheduleRepeatedTask(initialDelay: firstPurge, delay: .seconds(Int64(c.purgeIntervalSeconds))) { _ in
            let (wall, monotonic) = (clock().timeIntervalSince1970, MonotonicTime.seconds())
            if let step = retentionClock.step(wall: wall, monotonic: monotonic, tolerance: 60), step > 0 {
                logger.warning("the wall clock moved ahead of the time elapsed since the start: the retention purge keeps to the elapsed time until the next start",
                               metadata: ["step_s": "\(Int(step))"])
            }
            let cutoff = Date(timeIntervalSince1970: retentionClock.now(wall: wall, monotonic: monotonic) - Double(retentionDays) * 86400)
            directory.database.asyncWriteWithoutTransaction { db in
                do {
                    let removed = try Directory.purgeCallRecords(startedBefore: cutoff, in: db)
                    if removed > 0 { logger.info("call records purged", metadata: ["rows": "\(removed)", "retention_days": "\(retentionDays)"]) }
                } catch {
                    logger.error("call record purge failed", metadata: ["error": "\(error)"])
                }
            }
        }
        // When the core was last alive: the end time of calls a crash leaves open.
        let heartbeat = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(15), delay: .seconds(15)) { _ in directory.heartbeat(now: clock()) }
        logger.notice("cloud core ready", metadata: [
"sip": "\(addresses.map { "\($0.key.rawValue.lowercased()) \($0.value.displayText)" }.sorted().joined(separator: ", "))",
            "clients": "\(clientAddresses.isEmpty ? "no listener of their own" : clientAddresses.map { "tls \($0.displayText)" }.joined(separator: ", "))",
            "claiming": "\(claiming?.localAddress?.displayText ?? "off")",
        ])
        let server = CloudCoreServer(
            configuration: c, directory: directory, authority: authority, endpoint: endpoint, proxy: proxy, claiming: claiming,
            tokenSigner: ClientTokenSigner(key: tokenKey), sipAddresses: addresses, clientTLSAddresses: clientAddresses, periodic: [retention, heartbeat], lock: lock,
            status: CoreStatusPublisher.make(c, version: Self.version, logger: logger), logger: logger)
        if let status = server.status { proxy.observeRecordBacklog { status.records($0) } }
        server.certificateUpkeep.withLockedValue { $0 = server.keepServerCertificate(every: serverCertificateCheck, clock: clock) }
        return server
    }

    /// The server certificate's renewal while running.
    let certificateUpkeep = NIOLockedValueBox<Task<Void, Never>?>(nil)
    /// Set by the first `shutdown`.
    private let stopping = NIOLockedValueBox(false)

    init(
        configuration: CloudCoreConfiguration, directory: Directory, authority: DeviceCertificateAuthority, endpoint: SIPEndpoint,
        proxy: CloudCoreProxy, claiming: ClaimingHTTPServer?, tokenSigner: ClientTokenSigner, sipAddresses: [SIPTransportProtocol: SocketAddress],
        clientTLSAddresses: [SocketAddress] = [], periodic: [RepeatedTask], lock: CoreLock?, status: CoreStatusPublisher?, logger: Logger
    ) {
        self.lock = lock
        self.status = status
        self.configuration = configuration
        self.directory = directory
        self.authority = authority
        self.endpoint = endpoint
        self.proxy = proxy
        self.claiming = claiming
        self.tokenSigner = tokenSigner
        self.sipAddresses = sipAddresses
        self.clientTLSAddresses = clientTLSAddresses
        self.periodic = periodic
        self.logger = logger
    }

    /// Ends calls with BYE, writes registrations back, closes every listener.
    public func shutdown() async {
        // Once: a second call (a test's cleanup after its own stop, a signal during the first)
        // finds nothing left to stop.
        guard stopping.withLockedValue({ stopping in
            defer { stopping = true }
            return !stopping
        }) else { return }
        for task in periodic { task.cancel() }
        certificateUpkeep.withLockedValue { $0?.cancel() }
        status?.stop()
        await proxy.stop()
        await proxy.settings.anchor?.close()
        await proxy.flushRecords()
        directory.heartbeat(now: Date())
        await claiming?.shutdown()
        // Give the BYEs and the registration write-back a moment on the wire and the disk.
        try? await Task.sleep(for: .milliseconds(200))
        await endpoint.shutdown()
        lock?.release()
        logger.notice("cloud core stopped")
    }

    /// The SIPS server identity: the configured files, or a certificate our CA issues for the
    /// advertised name (kept in the state directory and reused while it names that host, belongs
    /// to its key and has more than a third of its life — and at least 30 days — left).
    static func serverIdentity(_ c: CloudCoreConfiguration, authority: DeviceCertificateAuthority, now: Date = Date()) throws -> (certificate: String, key: String) {
        let certificateFile = c.resolvedCertificateFile, keyFile = c.resolvedKeyFile
        if let certificate = try? String(contentsOfFile: certificateFile, encoding: .utf8), let key = try? String(contentsOfFile: keyFile, encoding: .utf8) {
            if c.certificateFile != nil { return (certificate, key) }
            // Our own: reuse it if it still names the advertised host and is not due for renewal.
            if let parsed = try? Certificate(pemEncoded: certificate), let privateKey = try? P256.Signing.PrivateKey(pemRepresentation: key),
                parsed.publicKey == Certificate.PublicKey(privateKey.publicKey), !Self.renewalDue(parsed, now: now),
                Self.serverNames(c).allSatisfy({ Self.names(parsed, $0) })
            {
                return (certificate, key)
            }
        } else if c.certificateFile != nil {
            throw DirectoryError("cannot read \(certificateFile) or \(keyFile)")
        }
        let key = P256.Signing.PrivateKey()
        let names = Self.serverNames(c)
        let certificate = try authority.issueServer(
            commonName: c.advertise, publicKey: .init(key.publicKey),
            dnsNames: names.filter { !Self.isIPAddress($0) } + ["localhost"], ipAddresses: names.filter(Self.isIPAddress) + ["127.0.0.1", "::1"],
            validDays: 825, now: now)
        let certificatePEM = try certificate.serializeAsPEM().pemString + "\n"
        // Key first, then the certificate: a cut in between leaves a pair that does not match,
        // which the next start replaces (above) rather than serving.
        try AtomicFile.write(key.pemRepresentation, to: keyFile)
        try AtomicFile.write(certificatePEM, to: certificateFile, mode: 0o644)
        return (certificatePEM, key.pemRepresentation)
    }

    /// What the core's own server certificate names besides localhost: the advertised name or
    /// address, and the SIP domain — the name clients dial (`sips:alice@<domain>`), which they
    /// check as a DNS name (issue 19) — when it is a name.
    static func serverNames(_ c: CloudCoreConfiguration) -> [String] {
        var names = [c.advertise]
        if !isIPAddress(c.domain), c.domain != c.advertise, c.domain != "localhost" { names.append(c.domain) }
        return names.filter { $0 != "localhost" && $0 != "127.0.0.1" && $0 != "::1" }
    }

    static func isIPAddress(_ text: String) -> Bool { (try? SocketAddress(ipAddress: text, port: 0)) != nil }

    /// Whether `certificate` names `host` (a DNS name, or an IP address compared as bytes).
    static func names(_ certificate: Certificate, _ host: String) -> Bool {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return false }
        let literal = IPAddressBytes(host)
        return names.contains { name in
            switch name {
            case .dnsName(let dns): return dns.lowercased() == host.lowercased()
            case .ipAddress(let bytes): return literal.map { Array(bytes.bytes) == $0 } ?? false
            default: return false
            }
        }
    }

    /// Renewal is due with a third of the life, or 30 days, left — whichever comes first.
    static func renewalDue(_ certificate: Certificate, now: Date) -> Bool {
        let life = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
        let left = certificate.notValidAfter.timeIntervalSince(now)
        return left < max(life / 3, 30 * 86400)
    }

    static func sipTLS(certificatePEM: String, keyPEM: String, authority: DeviceCertificateAuthority) throws -> SIPTLSSettings {
        SIPTLSSettings(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)),
            privateKey: try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem),
            trustRoots: .certificates(try NIOSSLCertificate.fromPEMBytes(Array(authority.pem.utf8))),
            clientCertificates: .optional)
    }

    static func claimingTLS(certificatePEM: String, keyPEM: String, authority: DeviceCertificateAuthority) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)))
        tls.minimumTLSVersion = .tlsv12
        // Devices renew and fetch revocations with their certificate; a claim has none yet.
        tls.certificateVerification = .optionalVerification
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(authority.pem.utf8)))
        return try NIOSSLContext(configuration: tls)
    }

    /// Renews the core's own server certificate while it runs (issue 17): looked at every
    /// `every`; a new one serves every connection from then on (SIPS and claiming).
    func keepServerCertificate(every: Duration, clock: @escaping @Sendable () -> Date) -> Task<Void, Never> {
        let (c, authority, endpoint, claiming, logger) = (configuration, authority, endpoint, claiming, logger)
        return Task {
            var current = try? String(contentsOfFile: c.resolvedCertificateFile, encoding: .utf8)
            while !Task.isCancelled {
                try? await Task.sleep(for: every)
                guard !Task.isCancelled, c.certificateFile == nil else { continue }
                do {
                    let (certificate, key) = try Self.serverIdentity(c, authority: authority, now: clock())
                    guard certificate != current else { continue }
                    try await endpoint.useTLS(try Self.sipTLS(certificatePEM: certificate, keyPEM: key, authority: authority))
                    claiming?.useTLS(try Self.claimingTLS(certificatePEM: certificate, keyPEM: key, authority: authority))
                    current = certificate
                    logger.notice("server certificate renewed", metadata: ["file": "\(c.resolvedCertificateFile)"])
                } catch {
                    logger.error("server certificate renewal failed: \(error); the current one stays in use")
                }
            }
        }
    }

    static func tokenKey(_ file: String) throws -> P256.Signing.PrivateKey {
        if let text = try? String(contentsOfFile: file, encoding: .utf8) {
            return try P256.Signing.PrivateKey(pemRepresentation: text)
        }
        let key = P256.Signing.PrivateKey()
        try AtomicFile.write(key.pemRepresentation, to: file)
        return key
    }
}
