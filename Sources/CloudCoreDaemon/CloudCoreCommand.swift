import ArgumentParser
import CloudCore
import CrashContext
import Foundation
import Logging
import DaemonSupport
import NIOCore
import ServiceLifecycle
import TOMLConfig

/// `symphony-cloud-core`: the reference cloud core and its admin tools.
@main
struct CloudCoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "symphony-cloud-core",
        abstract: "The Symphony reference cloud core: SIPS registrar, call router, claiming and call history.",
        version: CloudCoreServer.version,
        subcommands: [RunCommand.self, CheckConfigCommand.self, AdminCommand.self])
}

/// Where the config lives unless `--config` says otherwise.
let defaultConfigFile = "/etc/symphony-bridge/cloud-core.toml"

/// Loads the config or exits 78 with every problem listed.
func loadConfiguration(_ file: String) throws -> CloudCoreConfiguration {
    do {
        var configuration = try CloudCoreConfiguration.load(file: file)
        // A config kept from 0.5 (edited, so dpkg left it) names the state directory the package
        // has since moved to the core's own (docs/PACKAGING.md "Two users").
        let (old, new) = ("/var/lib/symphony-bridge/cloud-core", "/var/lib/symphony-cloud-core")
        if configuration.stateDirectory == old, !FileManager.default.fileExists(atPath: old), FileManager.default.fileExists(atPath: new + "/directory.sqlite") {
            FileHandle.standardError.write(Data("\(file): state_dir \(old) has moved to \(new) (0.6: the core's own user and directory); using \(new) — change the config to say so\n".utf8))
            configuration.stateDirectory = new
        }
        return configuration
    } catch {
        FileHandle.standardError.write(Data((error.description + "\n").utf8))
        throw ExitCode(ConfigErrors.exitStatus)
    }
}

func makeLogger(level: String) -> Logger {
    let level = Logger.Level(rawValue: level) ?? .info
    LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, level: level) }
    return Logger(label: "symphony-cloud-core")
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the cloud core until SIGTERM or SIGINT.")

    @Option(help: "The configuration file.")
    var config = defaultConfigFile

    func run() async throws {
        let configuration = try loadConfiguration(config)
        let logger = makeLogger(level: configuration.logLevel)
        // A crash leaves one line naming what was being handled (docs/RELIABILITY.md).
        CrashContext.install(daemon: "symphony-cloud-core", journal: ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil)
        let group = ServiceGroup(configuration: .init(
            services: [CloudCoreService(configuration: configuration, logger: logger)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// The core as a swift-service-lifecycle service: `run` returns once a graceful shutdown has
/// ended the calls and closed the listeners.
struct CloudCoreService: Service {
    let configuration: CloudCoreConfiguration
    let logger: Logger

    func run() async throws {
        let notifier = SystemdNotifier()
        let server: CloudCoreServer
        do {
            server = try await CloudCoreServer.start(configuration, logger: logger)
        } catch {
            notifier.status("cannot start: \(error)")
            throw error
        }
        let sips = server.sipAddresses.map { "\($0.key.rawValue.lowercased()) \($0.value.ipAddress ?? "?"):\($0.value.port ?? 0)" }.sorted()
        notifier.ready(status: "SIP \(sips.joined(separator: ", ")); domain \(configuration.domain)")
        // Fed while the SIP loop answers (`LivenessWatchdog`): a hung loop stops the keepalives
        // and systemd restarts us.
        let watchdog = notifier.watchdogInterval.map { interval in
            let endpoint = server.endpoint
            let watchdog = LivenessWatchdog(
                probes: [LivenessWatchdog.Probe("SIP loop") { try? await endpoint.eventLoop.submit {}.get() }], interval: interval, logger: logger)
            return Task { await watchdog.run { notifier.watchdog() } }
        }
        let trim = MemoryTrim.periodically()
        try? await gracefulShutdown()
        notifier.stopping()
        trim.cancel()
        watchdog?.cancel()
        await server.shutdown()
    }
}

struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Check a configuration file: exit 0, or 78 with file:line:column for every problem.")

    @Argument(help: "The configuration file.")
    var file: String

    func run() throws {
        let configuration = try loadConfiguration(file)
        if let seed = configuration.seedFile {
            do { _ = try ConfigDocument(contentsOfFile: seed) } catch {
                FileHandle.standardError.write(Data((error.description + "\n").utf8))
                throw ExitCode(ConfigErrors.exitStatus)
            }
        }
        print("\(file): OK")
        if let warning = configuration.mqtt.plaintextWarning { print("warning: \(warning)") }
    }
}
