import ArgumentParser
import Foundation
import Gateway
import TOMLConfig

/// `symphony-bridge check-config FILE`: exit 0, or 78 (EX_CONFIG) with every problem as
/// `file:line:column: key: what is wrong`.
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Check a bridge.toml: exit 0, or 78 with file:line:column for every problem.")

    @Argument(help: "The configuration file.")
    var file: String

    func run() throws {
        do {
            let configuration = try BridgeConfiguration.load(file: file)
            print("\(file): OK (gateway \(configuration.gatewayID), \(configuration.channels.count) channel(s))")
            if let warning = configuration.mqtt.plaintextWarning { print("warning: \(warning)") }
        } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(ConfigErrors.exitStatus)
        }
    }
}
