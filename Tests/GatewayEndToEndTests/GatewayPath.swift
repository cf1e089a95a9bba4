import CloudCore
import CloudUplink
import Foundation
import Gateway
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PeerTestSupport
import SIPTransport

/// The whole call path of one test on loopback: a real cloud core (TLS, claiming, a directory
/// with users alice, bob and carol — digest passwords `<name>-pw` — ring group `desk`, gateway
/// device gw1 with 14 channels) and a real gateway that claims itself with a fresh code and
/// registers its channels. Channel n has the legacy number `10n` (`101` … `114`).
final class GatewayPath: @unchecked Sendable {
    let scratch: ScratchDirectory
    private(set) var core: CloudCoreServer
    private(set) var coreConfiguration: CloudCoreConfiguration
    let gateway: GatewayServer
    let logs: LogCapture

    var legacyPort: Int { gateway.legacyAddress.port ?? 0 }
    var coreTLSPort: Int { core.sipAddresses[.tls]?.port ?? 0 }
    var coreCAFile: String { coreConfiguration.resolvedCACertificateFile }

    static func number(_ channel: Int) -> String { String(100 + channel) }

    /// - Parameters:
    ///   - channels: the channels (defaults: channel 1 → alice, ringing `legacyTargets`).
    ///   - configure: changes to the gateway's config after the defaults.
    ///   - claimCode: replaces the good claiming code (a wrong one, for the refusal test).
    static func start(
        legacyTargets: [String] = [], channels: [BridgeConfiguration.Channel]? = nil,
        configure: (inout BridgeConfiguration) -> Void = { _ in }, claimCode: String? = nil, waitForRegistration: Bool = true,
        users: [String] = [], statsInterval: Duration = .seconds(60),
        coreConfigure: (inout CloudCoreConfiguration) -> Void = { _ in }, upkeep: GatewayServer.IdentityUpkeep = GatewayServer.IdentityUpkeep(),
        logLevel: Logger.Level? = nil, coreClock: @escaping @Sendable () -> Date = { Date() }, resolver: DNSStubResolver = .system()
    ) async throws -> GatewayPath {
        let scratch = try ScratchDirectory()
        var c = CloudCoreConfiguration()
        c.stateDirectory = scratch.path("core")
        c.tlsListen = [.init("127.0.0.1:0")!]
        c.claimingListen = .init("127.0.0.1:0")
        c.digestAlgorithms = ["MD5"]
        coreConfigure(&c)
        let directory = try Directory(path: c.directoryFile, realm: c.realm)
        try directory.createCompany("acme")
        try directory.createProject("hq", company: "acme")
        try directory.createSite("lobby", company: "acme", project: "hq", timeZone: "Europe/Berlin")
        for name in ["alice", "bob", "carol"] + users {
            _ = try directory.createUser(name, site: "lobby", password: "\(name)-pw", displayName: name == "alice" ? "Alice Example" : nil)
        }
        _ = try directory.createDevice("gw1", site: "lobby", channels: 14)
        _ = try directory.createRingGroup("desk", site: "lobby", members: ["alice", "bob"], ringSeconds: 30)
        let core = try await CloudCoreServer.start(c, logger: Self.quietLogger("core"), clock: coreClock)
        c.tlsListen = [.init("127.0.0.1:\(core.sipAddresses[.tls]!.port!)")!]  // the same port after a restart
        c.claimingListen = .init("127.0.0.1:\(core.claiming!.localAddress!.port!)")

        var g = BridgeConfiguration()
        g.gatewayID = "gw1"
        g.stateDirectory = scratch.path("gateway")
        g.legacyListen = .init(host: "127.0.0.1", port: 0)
        g.cloudServer = .init(host: "127.0.0.1", port: core.sipAddresses[.tls]!.port!)
        g.cloudCAFile = c.resolvedCACertificateFile
        g.claimURL = "https://127.0.0.1:\(core.claiming!.localAddress!.port!)/v1/claim"
        g.claimCode = try claimCode ?? core.directory.createClaimingCode(device: "gw1", lifetime: 600)
        g.keepaliveSeconds = 5
        g.optionsIntervalSeconds = 0
        g.channels = channels ?? [channel(1, to: "alice", ringing: legacyTargets)]
        configure(&g)
        let logs = LogCapture(level: logLevel)
        let gateway = try await GatewayServer.start(
            g, group: MultiThreadedEventLoopGroup.singleton, logger: logs.logger,
            claimRetry: ReconnectBackoff(base: .milliseconds(200), ceiling: .seconds(1)), statsInterval: statsInterval, upkeep: upkeep, resolver: resolver)
        let path = GatewayPath(scratch: scratch, core: core, coreConfiguration: c, gateway: gateway, logs: logs)
        if waitForRegistration {
            for channel in g.channels where channel.enabled {
                try await path.eventually("gw1-ch\(channel.index) registered at the core", timeout: .seconds(20)) {
                    await !path.core.proxy.contacts(of: "gw1-ch\(channel.index)").isEmpty
                }
            }
        }
        return path
    }

    static func channel(_ index: Int, to target: String, ringing legacyTargets: [String], maxCallSeconds: Int = 600, ringSeconds: Int = 30) -> BridgeConfiguration.Channel {
        BridgeConfiguration.Channel(
            index: index, number: number(index), cloudTarget: target, legacyTargets: legacyTargets.isEmpty ? ["sip:nobody@127.0.0.1:9"] : legacyTargets,
            meshTargets: [], ring: .parallel, ringSeconds: ringSeconds, maxCallSeconds: maxCallSeconds, enabled: true)
    }

    init(scratch: ScratchDirectory, core: CloudCoreServer, coreConfiguration: CloudCoreConfiguration, gateway: GatewayServer, logs: LogCapture) {
        self.scratch = scratch
        self.core = core
        self.coreConfiguration = coreConfiguration
        self.gateway = gateway
        self.logs = logs
    }

    static func quietLogger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = ProcessInfo.processInfo.environment["E2E_LOG"] != nil ? .debug : .warning
        return logger
    }

    /// Stops the core and starts it again on the same ports and state.
    func restartCore() async throws {
        await core.shutdown()
        core = try await CloudCoreServer.start(coreConfiguration, logger: Self.quietLogger("core"))
    }

    /// The core dies as under kill -9 — its connections close, no BYE goes out, nothing is
    /// flushed — and a new one starts on the same state directory.
    func crashAndRestartCore() async throws {
        await core.endpoint.shutdown()
        await core.claiming?.shutdown()
        core = try await CloudCoreServer.start(coreConfiguration, logger: Self.quietLogger("core"))
    }

    func stop() async {
        await gateway.stop()
        await core.shutdown()
    }

    /// A softphone of the cloud directory: TLS to the core with digest, SDES-SRTP mandatory.
    func cloudClient(_ user: String, codec: String = "opus/48000/2", tone: String, answer: Bool = true) throws -> Baresip {
        try Baresip(
            user, in: scratch, modules: ["opus.so", "g722.so", "srtp.so"],
            account: "<sip:\(user)@\(coreConfiguration.domain);transport=tls>;auth_pass=\(user)-pw;outbound=\"sip:127.0.0.1:\(coreTLSPort);transport=tls\";regint=300;mediaenc=srtp-mand;audio_codecs=\(codec);answermode=\(answer ? "auto" : "manual")",
            tone: tone, caFile: coreCAFile, rtpPorts: 32000...32999)
    }

    /// A cloud client that plays a `frequency` tone (a WAV made to suit its codec: 48 kHz stereo
    /// for Opus, 16 kHz mono for G.722) and runs for `seconds`. Without `command` it is left registered:
    /// this waits until the core has its binding.
    func startCloudClient(
        _ user: String, frequency: Int, seconds: Int, codec: String = "opus/48000/2", answer: Bool = true, command: String? = nil
    ) async throws -> Baresip {
        let tone = scratch.path("\(user)-\(frequency).wav")
        let opus = codec.hasPrefix("opus")
        try await Baresip.tone(tone, frequency: frequency, seconds: seconds, rate: opus ? 48000 : 16000, channels: opus ? 2 : 1)
        let client = try cloudClient(user, codec: codec, tone: tone, answer: answer)
        try client.start(seconds: seconds, command: command)
        if command == nil {
            try await eventually("\(user) registered") { await !self.core.proxy.contacts(of: user).isEmpty }
        }
        return client
    }

    /// baresip's command to dial channel `index`'s number at the gateway.
    func dial(channel index: Int, transport: String? = nil) -> String {
        "/dial sip:\(Self.number(index))@127.0.0.1:\(legacyPort)" + (transport.map { ";transport=\($0)" } ?? "")
    }

    /// A legacy intercom station: plain SIP over UDP on loopback, G.722 only, no registration.
    static func legacyStation(_ name: String, in scratch: ScratchDirectory, tone: String, codec: String = "G722/16000/1", answer: Bool = true) throws -> Baresip {
        try Baresip(
            name, in: scratch, modules: ["g722.so", "g711.so"],
            account: "<sip:\(name)@127.0.0.1>;regint=0;audio_codecs=\(codec);answermode=\(answer ? "auto" : "manual")",
            tone: tone, rtpPorts: 33000...33999)
    }

    func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: @escaping @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw PeerError("timed out waiting for \(what); gateway log:\n\(logs.text.suffix(4000))")
    }

    /// The gateway's call records, once at least `count` are written.
    /// The records of ended calls, once at least `count` are written (a call's record is
    /// written at its start too, without an end).
    func records(atLeast count: Int, timeout: Duration = .seconds(10)) async throws -> [GatewayCallRecord] {
        let records = gateway.records
        try await eventually("\(count) gateway call record(s)", timeout: timeout) { ((try? records.all().filter { $0.endedAt != nil }.count) ?? 0) >= count }
        return try records.all().filter { $0.endedAt != nil }
    }
}

/// Keeps every log line of the gateway (tests look for the clear ones), and prints them with
/// E2E_LOG set.
final class LogCapture: @unchecked Sendable {
    private let lines = NIOLockedValueBox<[String]>([])
    private let echo = ProcessInfo.processInfo.environment["E2E_LOG"] != nil
    /// The level asked for (a test that checks what no level may log), else info (debug with E2E_LOG).
    private let level: Logger.Level?

    init(level: Logger.Level? = nil) {
        self.level = level
    }

    var logger: Logger {
        var logger = Logger(label: "symphony-bridge") { _ in Handler(capture: self) }
        logger.logLevel = level ?? (echo ? .debug : .info)
        return logger
    }

    var text: String { lines.withLockedValue { $0.joined(separator: "\n") } }

    func contains(_ fragment: String) -> Bool { lines.withLockedValue { $0.contains { $0.contains(fragment) } } }

    func count(_ fragment: String) -> Int { lines.withLockedValue { $0.filter { $0.contains(fragment) }.count } }

    fileprivate func append(_ line: String) {
        lines.withLockedValue { $0.append(line) }
        if echo { FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            let meta = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            capture.append("\(event.level) \(event.message) \(meta)")
        }
    }
}
