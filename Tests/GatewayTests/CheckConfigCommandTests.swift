import Foundation
import PeerTestSupport
import Testing

/// `check-config` of both daemons as an integrator runs it: the built binaries on the shipped
/// examples (exit 0) and on a broken file (exit 78, file:line:column on standard error).
@Suite("check-config commands")
struct CheckConfigCommandTests {
    static let etc = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/") + "/etc/"

    @Test(arguments: [("symphony-bridge", "bridge.toml"), ("symphony-cloud-core", "cloud-core.toml")])
    func theShippedExamplePasses(_ executable: String, _ file: String) async throws {
        let peer = try PeerProcess(try builtExecutable(executable), ["check-config", Self.etc + file])
        #expect(try await peer.wait(timeout: .seconds(20)) == 0, "\(peer.text)")
        #expect(peer.text.contains("OK"))
    }

    @Test(arguments: [
        ("symphony-bridge", "[gateway]\nid = \"gw1\"\n[cloud]\nserver = \"x:5061\"\nkeepalive = 5\n", "bad.toml:5:1: cloud.keepalive: unknown key (did you mean \"keepalive_s\"?)"),
        ("symphony-cloud-core", "[calls]\nmax_call_s = 601\n", "bad.toml:2:14: calls.max_call_s: 601 is out of range (expected 1...600)"),
        ("symphony-cloud-core", "[records]\nretention_days = 181\n", "bad.toml:2:18: records.retention_days: 181 is out of range (expected 1...180)"),
    ])
    func aBrokenFileExits78WithThePosition(_ executable: String, _ text: String, _ expected: String) async throws {
        let scratch = try ScratchDirectory()
        try scratch.write("bad.toml", text)
        let peer = try PeerProcess(try builtExecutable(executable), ["check-config", "bad.toml"], directory: scratch.url)
        #expect(try await peer.wait(timeout: .seconds(20)) == 78)
        #expect(peer.text.contains(expected), "\(peer.text)")
    }
}
