import Foundation
@testable import Gateway
import CloudUplink
import SIP
import TOMLConfig
import Testing

/// `[cloud] auth`, `registration`, `account`, `domain`, `outbound_proxy` and `[[channel]]
/// cloud_account` (issue 19): each mode takes its own keys, and the channels' names at the cloud
/// map both ways (`CloudAccounts`).
@Suite("Cloud access: modes and accounts")
struct CloudAccessTests {
    static func config(cloud: String, channels: String? = nil, extra: String = "") throws(ConfigErrors) -> BridgeConfiguration {
        let text = """
            [gateway]
            id = "gw1"
            [cloud]
            server = "sips:sip.example.net:5061"
            \(cloud)
            \(channels ?? """
            [[channel]]
            index = 1
            number = "801"
            cloud_target = "concierge"
            legacy_targets = ["sip:101@192.0.2.5"]
            cloud_account = "door-lobby"
            [[channel]]
            index = 2
            number = "802"
            cloud_target = "alice"
            legacy_targets = ["sip:102@192.0.2.5"]
            cloud_account = "door-garage"
            """)
            \(extra)
            """
        return try BridgeConfiguration.parse(text, file: "bridge.toml")
    }

    static func errors(cloud: String, channels: String? = nil, extra: String = "") -> [String] {
        do {
            _ = try config(cloud: cloud, channels: channels, extra: extra)
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    @Test func digestWithAnAccountPerChannel() throws {
        let c = try Self.config(cloud: "auth = \"digest\"\npassword_file = \"/etc/symphony-bridge/cloud-password\"\noutbound_proxy = \"sips:edge.example.net\"\ndomain = \"example.net\"")
        #expect(c.cloudAccess.authentication == .digest(username: nil, passwordFile: "/etc/symphony-bridge/cloud-password"))
        #expect(c.cloudAccess.registration == .channels && c.cloudAccess.domain == "example.net")
        #expect(c.cloudAccess.outboundProxy == HostPort(host: "edge.example.net", port: 5061) && !c.cloudAccess.outboundProxyHasPort)
        // A proxy named without a port is found by RFC 3263 (and named so in the Route).
        #expect(GatewayServer.outboundRoute(c) == "<sips:edge.example.net;lr>")
        #expect(GatewayServer.locator(c, resolver: DNSStubResolver(nameServers: [])) != nil)
        let pinned = try Self.config(cloud: "auth = \"digest\"\npassword_file = \"/p\"\noutbound_proxy = \"edge.example.net:5071\"")
        #expect(GatewayServer.outboundRoute(pinned) == "<sips:edge.example.net:5071;lr>")
        #expect(GatewayServer.locator(pinned, resolver: DNSStubResolver(nameServers: [])) == nil)
        #expect(c.channels.map(\.cloudAccount) == ["door-lobby", "door-garage"])
        let accounts = CloudAccounts(registration: c.cloudAccess.registration, device: "gw1", trunkAccount: c.cloudAccess.trunkAccount)
        #expect(accounts.addressesOfRecord(c.channels) == ["door-lobby", "door-garage"])
        #expect(accounts.caller(for: c.channels[1]) == "door-garage")
    }

    @Test func certificateWithATrunk() throws {
        let c = try Self.config(
            cloud: "auth = \"certificate\"\ncertificate_file = \"/etc/ssl/gw1.pem\"\nkey_file = \"/etc/ssl/gw1-key.pem\"\nregistration = \"trunk\"\naccount = \"gw1-trunk\"",
            channels: "[[channel]]\nindex = 3\nnumber = \"803\"\ncloud_target = \"concierge\"\nlegacy_targets = [\"sip:103@192.0.2.5\"]\n")
        #expect(c.cloudAccess.authentication == .certificate(certificateFile: "/etc/ssl/gw1.pem", keyFile: "/etc/ssl/gw1-key.pem"))
        #expect(c.cloudAccess.registration == .trunk && c.cloudAccess.trunkAccount == "gw1-trunk")
        // A digest trunk's account defaults to its user.
        let digest = try Self.config(cloud: "auth = \"digest\"\nusername = \"pbx-7\"\npassword_file = \"/p\"\nregistration = \"trunk\"")
        #expect(digest.cloudAccess.trunkAccount == "pbx-7")
    }

    /// Each mode's keys are refused in the others, with the mode they need; so are the other mistakes.
    @Test(arguments: [
        ("claim_url = \"https://x.example:8443/v1/claim\"\nauth = \"digest\"\npassword_file = \"/p\"", "cloud.claim_url: belongs to auth = \"claim\", but auth is \"digest\""),
        ("auth = \"certificate\"\ncertificate_file = \"/c\"\nkey_file = \"/k\"\npassword_file = \"/p\"", "cloud.password_file: belongs to auth = \"digest\", but auth is \"certificate\""),
        ("username = \"gw1\"", "cloud.username: belongs to auth = \"digest\", but auth is \"claim\""),
        ("auth = \"certificate\"\ncertificate_file = \"/c\"", "cloud.auth: auth = \"certificate\" needs certificate_file and key_file (PEM, from your PKI)"),
        ("auth = \"digest\"", "cloud.auth: auth = \"digest\" needs password_file (a file holding the password, mode 0600)"),
        ("auth = \"token\"", "cloud.auth: \"token\" is not one of \"claim\", \"certificate\", \"digest\""),
        ("registration = \"trunk\"", "cloud.registration: a claimed gateway registers its channels as <device>-ch<n>; \"trunk\" needs auth = \"certificate\" or \"digest\""),
        ("auth = \"certificate\"\ncertificate_file = \"/c\"\nkey_file = \"/k\"\nregistration = \"trunk\"", "cloud.registration: a trunk needs its account: set account (or username, with auth = \"digest\")"),
        ("auth = \"digest\"\npassword_file = \"/p\"\naccount = \"x\"", "cloud.account: the trunk's account: set registration = \"trunk\" (per-channel accounts are [[channel]] cloud_account)"),
        ("auth = \"digest\"\npassword_file = \"/p\"\ndomain = \"example.net:5060\"", "cloud.domain: \"example.net:5060\": a host name or IP address, without port"),
        ("domain = \"example.net\"", "cloud.domain: a claimed gateway takes the cloud's domain from the claim"),
        ("auth = \"digest\"\npassword_file = \"/p\"\noutbound_proxy = \"sips:[fe80::1%eth0]\"", "cloud.outbound_proxy: \"[fe80::1%eth0]\": expected sips:host, host:port or [IPv6]:port (no zone id)"),
        ("auth = \"digest\"\nusername = \"gw 1\"\npassword_file = \"/p\"", "cloud.username: \"gw 1\": 1–64 letters, digits, '-', '_', '.' or '+'"),
    ])
    func eachModeTakesItsOwnKeys(_ cloud: String, _ expected: String) {
        let errors = Self.errors(cloud: cloud, channels: "[[channel]]\nindex = 1\nnumber = \"801\"\ncloud_target = \"a\"\nlegacy_targets = [\"sip:1@192.0.2.5\"]\ncloud_account = \"a1\"")
        #expect(errors.contains { $0.hasSuffix(expected) }, "expected …\(expected) in \(errors)")
    }

    @Test func channelAccountRules() {
        // A claimed gateway's channels have the reference core's names.
        let claimed = Self.errors(cloud: "")
        #expect(claimed.contains { $0.contains("channel[0].cloud_account: a claimed gateway's channels register as <device>-ch<n>") }, "\(claimed)")
        // Without claiming, each enabled channel needs its account (unless a trunk registers).
        let missing = Self.errors(cloud: "auth = \"digest\"\npassword_file = \"/p\"", channels: "[[channel]]\nindex = 4\nnumber = \"804\"\ncloud_target = \"a\"\nlegacy_targets = [\"sip:1@192.0.2.5\"]")
        #expect(missing.contains { $0.contains("channel[0].index: channel 4 needs cloud_account") }, "\(missing)")
        let twice = Self.errors(cloud: "auth = \"digest\"\npassword_file = \"/p\"", channels: """
            [[channel]]
            index = 1
            number = "801"
            cloud_target = "a"
            legacy_targets = ["sip:1@192.0.2.5"]
            cloud_account = "door"
            [[channel]]
            index = 2
            number = "802"
            cloud_target = "a"
            legacy_targets = ["sip:1@192.0.2.5"]
            cloud_account = "door"
            """)
        #expect(twice.contains { $0.contains("channel[1].cloud_account: \"door\" is already channel 1's") }, "\(twice)")
        // The mesh proves a site with the claimed certificate only.
        let mesh = Self.errors(cloud: "auth = \"digest\"\npassword_file = \"/p\"", extra: "[mesh]\nenabled = true\ninterfaces = [\"eth0\"]")
        #expect(mesh.contains { $0.contains("mesh.enabled: the mesh needs a claimed gateway") }, "\(mesh)")
    }

    /// Which channel a cloud call is for: the Request-URI's user (the registrar put our Contact
    /// there), else the To user; a trunk knows its channels by number too.
    @Test func cloudCallsFindTheirChannel() {
        let channels = [
            BridgeConfiguration.Channel(index: 1, number: "801", cloudTarget: "a", legacyTargets: ["101"], cloudAccount: "door-lobby"),
            BridgeConfiguration.Channel(index: 2, number: "802", cloudTarget: "b", legacyTargets: ["102"]),
        ]
        let perChannel = CloudAccounts(device: "gw1")
        #expect(perChannel.channel(requestUser: "door-lobby", toUser: nil, in: channels)?.index == 1)
        #expect(perChannel.channel(requestUser: "gw1-ch2", toUser: nil, in: channels)?.index == 2)
        #expect(perChannel.channel(requestUser: "x", toUser: "gw1-ch2", in: channels)?.index == 2)
        #expect(perChannel.channel(requestUser: "802", toUser: nil, in: channels) == nil, "numbers name channels only on a trunk")
        #expect(perChannel.channel(requestUser: "gw1-ch9", toUser: "", in: channels) == nil)
        let trunk = CloudAccounts(registration: .trunk, device: "gw1", trunkAccount: "pbx-7")
        #expect(trunk.addressesOfRecord(channels) == ["pbx-7"])
        #expect(trunk.caller(for: channels[0]) == "pbx-7")
        #expect(trunk.channel(requestUser: "pbx-7", toUser: "802", in: channels)?.index == 2)
        #expect(trunk.channel(requestUser: "801", toUser: nil, in: channels)?.index == 1)
        #expect(trunk.channel(requestUser: "pbx-7", toUser: "pbx-7", in: channels) == nil)
        // Disabled channels do not register.
        var disabled = channels
        disabled[1].enabled = false
        #expect(perChannel.addressesOfRecord(disabled) == ["door-lobby"])
    }

    /// Admission on a trunk: the To user picks the channel when the Request-URI is our Contact.
    @Test func admissionOnATrunkReadsTheToUser() {
        let channels = [BridgeConfiguration.Channel(index: 5, number: "805", cloudTarget: "a", legacyTargets: ["105"])]
        var known = CallAdmission.Circumstances(channels: channels, accounts: CloudAccounts(registration: .trunk, device: "gw1", trunkAccount: "pbx-7"))
        known.cloudRegistered = true
        let uri = AnyURI.sip(SIPURI(secure: true, user: "pbx-7", host: "192.0.2.9"))
        guard case .route(let route) = CallAdmission.decide(requestURI: uri, toUser: "805", caller: "sips:alice@example.net", origin: .cloud, known) else {
            Issue.record("the trunk call was not routed")
            return
        }
        #expect(route.channel.index == 5 && route.direction == .cloudToLegacy)
        guard case .refuse(let status, _, _) = CallAdmission.decide(requestURI: uri, toUser: "999", caller: "x", origin: .cloud, known) else {
            Issue.record("an unknown number was routed")
            return
        }
        #expect(status == 404)
    }
}
