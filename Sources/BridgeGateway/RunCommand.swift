import ArgumentParser
import Foundation
import Gateway
import Logging
import NIOPosix
import ServiceLifecycle
import TOMLConfig

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
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: configuration.logLevel) ?? .info
            return handler
        }
        let logger = Logger(label: "symphony-bridge")
        let group = ServiceGroup(configuration: .init(
            services: [GatewayService(configuration: configuration, logger: logger)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// The gateway as a swift-service-lifecycle service: a graceful shutdown ends the calls with
/// BYE, unregisters the channels and closes the sockets before `run` returns.
struct GatewayService: Service {
    let configuration: BridgeConfiguration
    let logger: Logger

    func run() async throws {
        let server: GatewayServer
        do {
            server = try await GatewayServer.start(configuration, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(71)  // EX_OSERR
        }
        try? await gracefulShutdown()
        logger.notice("shutting down")
        await server.stop()
    }
}
