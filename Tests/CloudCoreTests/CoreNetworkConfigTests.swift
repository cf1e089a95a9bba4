import CloudCore
import Foundation
import PeerTestSupport
import TOMLConfig
import Testing

/// `cloud-core.toml`'s keys of issue 19: the clients' listener and the media anchor, each
/// mistake named where it is.
@Suite("cloud-core.toml: listeners and media anchor")
struct CoreNetworkConfigTests {
    static func errors(_ text: String) -> [String] {
        do {
            _ = try CloudCoreConfiguration.parse(text, file: "core.toml")
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    @Test func theKeysAreRead() throws {
        let c = try CloudCoreConfiguration.parse("""
            [sip]
            tls_listen = ["0.0.0.0:5061"]
            client_tls_listen = ["0.0.0.0:5063", "[::]:5063"]
            [media]
            anchor = "rtpengine"
            rtpengine = "127.0.0.1:2223"
            """, file: "core.toml")
        #expect(c.clientTLSListen.map(\.port) == [5063, 5063])
        #expect(c.mediaAnchor == "rtpengine" && c.rtpengine == HostPort(host: "127.0.0.1", port: 2223))
        let defaults = try CloudCoreConfiguration.parse("", file: "core.toml")
        #expect(defaults.clientTLSListen.isEmpty && defaults.mediaAnchor == "none" && defaults.rtpengine == nil)
        let embedded = try CloudCoreConfiguration.parse("""
            [sip]
            advertise = "203.0.113.5"
            [media]
            anchor = "embedded"
            rtp_port_min = 20000
            rtp_port_max = 29999
            threads = 2
            """, file: "core.toml")
        #expect(embedded.mediaBindHost == "203.0.113.5" && embedded.mediaSDPAddress == "203.0.113.5" && embedded.mediaPortMin == 20000 && embedded.mediaPortMax == 29999)
        #expect(embedded.mediaThreads == 2)
        let natted = try CloudCoreConfiguration.parse("[media]\nanchor = \"embedded\"\naddress = \"0.0.0.0\"\nadvertise = \"198.51.100.1\"\n", file: "core.toml")
        #expect(natted.mediaBindHost == "0.0.0.0" && natted.mediaSDPAddress == "198.51.100.1")
    }

    @Test(arguments: [
        ("[sip]\ntls_listen = [\"0.0.0.0:5061\"]\nclient_tls_listen = [\"0.0.0.0:5061\"]\n", "core.toml:3:21: sip.client_tls_listen: 0.0.0.0:5061 is also in tls_listen: devices and clients need a listener each"),
        ("[media]\nanchor = \"rtpengine\"\n", "core.toml:2:10: media.anchor: anchor = \"rtpengine\" needs rtpengine = \"host:port\" (its ng control address, e.g. \"127.0.0.1:2223\")"),
        ("[sip]\nadvertise = \"core.example.net\"\n[media]\nanchor = \"embedded\"\n", "core.toml:4:10: media.anchor: anchor = \"embedded\" needs address = \"IP\": [sip] advertise (\"core.example.net\") is a name"),
        ("[media]\nanchor = \"embedded\"\naddress = \"0.0.0.0\"\n", "core.toml:3:11: media.address: \"0.0.0.0\" binds every address: say which one peers send to with advertise = \"IP\""),
        ("[media]\nanchor = \"embedded\"\nadvertise = \"relay.example.net\"\n", "core.toml:3:13: media.advertise: \"relay.example.net\": an IP address (the relay's media go there, no name is looked up)"),
        ("[media]\nanchor = \"embedded\"\nrtp_port_min = 40000\nrtp_port_max = 40001\n", "core.toml:4:16: media.rtp_port_max: leaves 2 ports above rtp_port_min (40000); an anchored call needs 4 (two legs, RTP and RTCP)"),
        ("[media]\nanchor = \"none\"\naddress = \"10.0.0.1\"\n", "core.toml:3:11: media.address: is used with anchor = \"embedded\" only"),
        ("[media]\nrtpengine = \"127.0.0.1:2223\"\n", "core.toml:2:13: media.rtpengine: is used with anchor = \"rtpengine\" only"),
        ("[media]\nanchor = \"rtpengine\"\nrtpengine = \"rtp.example:2223\"\n", "core.toml:3:13: media.rtpengine: \"rtp.example:2223\": an IP address and port (the ng control socket)"),
        ("[media]\nanchor = \"turn\"\n", "core.toml:2:10: media.anchor: \"turn\" is not one of \"none\", \"embedded\", \"rtpengine\""),
    ])
    func eachMistakeIsNamed(_ text: String, _ expected: String) {
        let errors = Self.errors(text)
        #expect(errors.contains(expected), "expected \(expected) in \(errors)")
    }
}

/// A second release of the core's lock (a second `shutdown`) must not close a descriptor that
/// is someone else's by then: it closed a SwiftNIO socket under the full suite, which trapped.
@Suite("Core lock")
struct CoreLockTests {
    @Test func releasingTwiceClosesNothingElse() throws {
        let scratch = try ScratchDirectory()
        let lock = try #require(CoreLock(stateDirectory: scratch.path("")))
        lock.release()
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        lock.release()
        #expect(fcntl(fds[0], F_GETFD) != -1 && fcntl(fds[1], F_GETFD) != -1, "the pipe made after the first release is still open")
        #expect(CoreLock(stateDirectory: scratch.path("")) != nil, "and the lock is free")
    }
}
