import ArgumentParser
import Gateway

/// `symphony-bridge`: the gateway daemon and its tools.
@main
struct SymphonyBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "symphony-bridge",
        abstract: "Gateway between legacy SIP intercom servers and cloud call services.",
        version: BuildInfo.version,
        subcommands: [VersionCommand.self, CheckConfigCommand.self, RunCommand.self, StatusCommand.self, CallsCommand.self, DemoCommand.self, SIPCheckCommand.self, SIPAgentCommand.self, CrashCheckCommand.self]
    )
}

enum BuildInfo {
    static let version = GatewayVersion.current
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version.")

    func run() {
        print("symphony-bridge \(BuildInfo.version)")
    }
}
