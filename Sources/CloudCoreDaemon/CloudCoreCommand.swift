import ArgumentParser

@main
struct CloudCoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "symphony-cloud-core",
        abstract: "The Symphony reference cloud core: SIPS registrar and call router.")
}
