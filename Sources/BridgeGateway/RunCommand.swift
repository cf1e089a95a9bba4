import ArgumentParser
import CrashContext
import Foundation
import Gateway
import Logging
import NIOPosix
import DaemonSupport
import NIOCore
import ServiceLifecycle
import TOMLConfig
import UnixSignals

/// `symphony-bridge run`: the gateway until SIGTERM or SIGINT.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the gateway until SIGTERM or SIGINT.")

    @Option(help: "The configuration file.")
    var config = "/etc/symphony-bridge/bridge.toml"

    func run() async throws {
        let configuration: BridgeConfiguration
        do {
            configuration = try BridgeConfiguration.load(file: config)
        } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(ConfigErrors.exitStatus)
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, level: level) }
        // A crash leaves one line naming what was being handled (docs/RELIABILITY.md).
        CrashContext.install(daemon: "symphony-bridge", journal: ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil)
        let logger = Logger(label: "symphony-bridge")
        let group = ServiceGroup(configuration: .init(
            services: [GatewayService(configuration: configuration, configFile: config, logger: logger)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// The gateway as a swift-service-lifecycle service: its parts run in their own group inside
/// this one (`GatewayServer.run`), so SIGTERM stops them in order — calls end with BYE, the
/// channels unregister, the status goes offline, the sockets close — before `run` returns.
struct GatewayService: Service {
    let configuration: BridgeConfiguration
    let configFile: String
    let logger: Logger

    func run() async throws {
        let server: GatewayServer
        let notifier = SystemdNotifier()
        do {
            server = try await GatewayServer.make(configuration, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            notifier.status("cannot start: \(error)")
            throw ExitCode(71)  // EX_OSERR
        }
        let listening = "legacy \(configuration.legacyTransport.rawValue):\(server.legacyAddress.ipAddress ?? "?"):\(server.legacyAddress.port ?? 0)"
        notifier.ready(status: "\(listening), \(configuration.channels.count) channel(s)")
        // The watchdog is fed while every SIP loop and the router answer (`LivenessWatchdog`).
        let watchdog = notifier.watchdogInterval.map { interval in
            let router = server.router
            var probes = [
                LivenessWatchdog.Probe("legacy SIP loop") { try? await server.legacyEndpoint.eventLoop.submit {}.get() },
                LivenessWatchdog.Probe("cloud SIP loop") { try? await server.cloudEndpoint.eventLoop.submit {}.get() },
                LivenessWatchdog.Probe("call router") { await router.alive() },
            ]
            if let mesh = server.meshEndpoint { probes.append(LivenessWatchdog.Probe("mesh SIP loop") { try? await mesh.eventLoop.submit {}.get() }) }
            let watchdog = LivenessWatchdog(probes: probes, interval: interval, logger: self.logger)
            return Task { await watchdog.run { notifier.watchdog() } }
        }
        let trim = MemoryTrim.periodically()
        defer {
            watchdog?.cancel()
            trim.cancel()
        }
        let (logger, configFile) = (logger, configFile)
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    await cancelWhenGracefulShutdown {
                        for await _ in await UnixSignalsSequence(trapping: .sighup) {
                            notifier.reloading()
                            switch await server.reload(file: configFile) {
                            case .applied(let what): notifier.notify("READY=1\nSTATUS=reloaded: \(what)")
                            case .refused(let why): notifier.notify("READY=1\nSTATUS=reload refused (old config running): \(why)")
                            }
                        }
                    }
                }
                group.addTask {
                    // `systemctl kill -s USR1 symphony-bridge`: renew the device certificate now.
                    await cancelWhenGracefulShutdown {
                        for await _ in await UnixSignalsSequence(trapping: .sigusr1) { server.renewCertificate() }
                    }
                }
                try await server.run()
            }
        } onGracefulShutdown: {
            logger.notice("shutting down")
            notifier.stopping()
        }
    }
}
