import Foundation
import Gateway
import TOMLConfig
import Testing

/// `bridge.toml`: the shipped example is valid, and each kind of mistake is named with
/// file:line:column, the key path and what is expected.
@Suite("bridge.toml")
struct BridgeConfigurationTests {
    static let example = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")

    @Test func theShippedExampleIsValid() throws {
        let c = try BridgeConfiguration.load(file: "/" + Self.example + "/etc/bridge.toml")
        #expect(c.gatewayID == "gw1" && c.channels.count == 2)
        #expect(c.cloudServer == .init(host: "cloud.example.net", port: 5061))
        #expect(c.channels[0].legacyTargets == ["101", "102"] && c.channels[0].ring == .parallel)
        #expect(c.channels[1].maxCallSeconds == 600 && c.channels[1].ringSeconds == 30)
        #expect(c.rtpPortMin == 10000 && c.rtpPortMax == 50000)
    }

    static let minimal = """
        [gateway]
        id = "gw1"

        [cloud]
        server = "127.0.0.1:5061"

        [[channel]]
        index = 1
        number = "801"
        cloud_target = "alice"
        legacy_targets = ["sip:101@192.0.2.5"]
        """

    @Test func aMinimalFileTakesTheDefaults() throws {
        let c = try BridgeConfiguration.parse(Self.minimal, file: "bridge.toml")
        #expect(c.legacyListen.port == 5060 && c.legacyTransport == .udp)
        #expect(c.cloudCodecs == ["opus", "G722", "PCMA", "PCMU"] && c.srtpSuites.first == "AES_CM_128_HMAC_SHA1_80")
        #expect(c.retentionDays == 180 && c.mqtt.host == nil && !c.meshEnabled)
        #expect(c.mediaInactivitySeconds == 30)
        let off = try BridgeConfiguration.parse("[media]\ninactivity_timeout_s = 0\n" + Self.minimal, file: "bridge.toml")
        #expect(off.mediaInactivitySeconds == 0)
        #expect(c.legacyHold == .relay)
        let absorb = try BridgeConfiguration.parse("[legacy]\nhold = \"absorb\"\n" + Self.minimal, file: "bridge.toml")
        #expect(absorb.legacyHold == .absorb)
        #expect(c.legacyAllow == nil)
    }

    /// Who may send the legacy side requests: `allow` when set, else the legacy server and the
    /// hosts of the `sip:` legacy targets (issue 16).
    @Test func theLegacySourcesAreTheServerAndTheStationsUnlessAllowSaysOtherwise() throws {
        let text = """
            [legacy]
            server = "192.0.2.5:5060"
            [cloud]
            server = "sips:cloud.example.net"
            [[channel]]
            index = 1
            number = "801"
            cloud_target = "alice"
            legacy_targets = ["sip:door@192.0.2.20", "sip:lift@[2001:db8::7]:5070", "102"]
            """
        let c = try BridgeConfiguration.parse("[gateway]\nid = \"gw1\"\n" + text, file: "bridge.toml")
        #expect(GatewayServer.legacySources(c).map(\.description) == ["192.0.2.20", "192.0.2.5", "2001:db8::7"])
        let open = try BridgeConfiguration.parse("[gateway]\nid = \"gw1\"\n" + text.replacingOccurrences(of: "[legacy]\n", with: "[legacy]\nallow = [\"10.0.0.0/8\", \"::/0\"]\n"), file: "bridge.toml")
        #expect(GatewayServer.legacySources(open).map(\.description) == ["10.0.0.0/8", "::/0"])
    }

    /// Each mistake, the text it is made in, and the message expected (as a suffix of one line).
    @Test(arguments: [
        ("[gateway]\nid = \"gw1\"\nsite = \"x\"\nlog_levle = \"info\"\n", "bridge.toml:4:1: gateway.log_levle: unknown key (did you mean \"log_level\"?)"),
        ("[gateway]\nid = \"gw 1\"\n", "bridge.toml:2:6: gateway.id: \"gw 1\": letters, digits, '-', '_' and '.' (it names the device and the MQTT topics)"),
        ("[media]\nrtp_port_min = 5000\n", "bridge.toml:2:16: media.rtp_port_min: 5000 is out of range (expected 10000...50000)"),
        ("[media]\nrtp_port_min = 20000\nrtp_port_max = 20010\n", "bridge.toml:3:16: media.rtp_port_max: leaves 11 ports above rtp_port_min (20000); 14 channels need at least 56 (two legs, RTP and RTCP)"),
        ("[legacy]\ntransport = \"tls\"\n", "bridge.toml:2:13: legacy.transport: \"tls\" is not one of \"udp\", \"tcp\""),
        ("[legacy]\nhold = \"music\"\n", "bridge.toml:2:8: legacy.hold: \"music\" is not one of \"relay\", \"absorb\""),
        ("[legacy]\nallow = [\"pbx.local\"]\n", "bridge.toml:2:9: legacy.allow: \"pbx.local\" is not an IP address or prefix (192.168.10.0/24, 10.0.0.5, fd00::/8)"),
        ("[legacy]\nallow = []\n", "bridge.toml:2:9: legacy.allow: 1–256 addresses or prefixes; [\"0.0.0.0/0\", \"::/0\"] allows everyone"),
        ("[legacy]\ncodecs = [\"G722\", \"G729\"]\n", "bridge.toml:2:10: legacy.codecs: a non-empty list without repeats, in order of preference, of \"G722\", \"PCMA\", \"PCMU\""),
        ("[legacy]\nserver = \"[fe80::1%eth0]:5060\"\n", "bridge.toml:2:10: legacy.server: \"[fe80::1%eth0]:5060\": expected host, host:port or [IPv6]:port (no zone id)"),
        ("[[channel]]\nindex = 2\nnumber = \"802\"\ncloud_target = \"bob\"\nlegacy_targets = [\"sip:door@192.0.2.5\"]\ndisplay_name = \"Lobby \\\"door\\\"\"\n",
         "bridge.toml:6:16: channel[0].display_name: \"Lobby \"door\"\": 1–64 characters, no quotes, backslashes or control characters"),
        ("[media]\ninactivity_timeout_s = 3\n", "bridge.toml:2:24: media.inactivity_timeout_s: is 3; 0 (off) or 5–3600 s"),
        ("[records]\nretention_days = 365\n", "bridge.toml:2:18: records.retention_days: 365 is out of range (expected 1...180)"),
        ("[mqtt]\ntopic_prefix = \"site/#\"\n", "bridge.toml:2:16: mqtt.topic_prefix: \"site/#\": a topic without wildcards (#, +) or a trailing /"),
        ("[mesh]\nenabled = true\n", "bridge.toml:2:11: mesh.enabled: the mesh needs at least one interface"),
        ("[cloud2]\nx = 1\n", "bridge.toml:1:1: cloud2: unknown key (did you mean \"cloud\"?)"),
        ("[[channel]]\nindex = 2\nnumber = \"802\"\ncloud_target = \"bob\"\nlegacy_targets = [\"102\"]\n",
         "bridge.toml:5:18: channel[0].legacy_targets: \"102\" is a number at the legacy server, but [legacy] names no server (set server, or give the station's sip: URI)"),
        ("[[channel]]\nindex = 2\nnumber = \"802\"\ncloud_target = \"bob\"\nlegacy_targets = [\"sip:s0@192.0.2.5\", \"sip:s1@192.0.2.5\", \"sip:s2@192.0.2.5\", \"sip:s3@192.0.2.5\", \"sip:s4@192.0.2.5\", \"sip:s5@192.0.2.5\", \"sip:s6@192.0.2.5\", \"sip:s7@192.0.2.5\", \"sip:s8@192.0.2.5\", \"sip:s9@192.0.2.5\", \"sip:s10@192.0.2.5\", \"sip:s11@192.0.2.5\", \"sip:s12@192.0.2.5\", \"sip:s13@192.0.2.5\", \"sip:s14@192.0.2.5\", \"sip:s15@192.0.2.5\", \"sip:s16@192.0.2.5\", \"sip:s17@192.0.2.5\", \"sip:s18@192.0.2.5\", \"sip:s19@192.0.2.5\", \"sip:s20@192.0.2.5\", \"sip:s21@192.0.2.5\", \"sip:s22@192.0.2.5\", \"sip:s23@192.0.2.5\", \"sip:s24@192.0.2.5\", \"sip:s25@192.0.2.5\", \"sip:s26@192.0.2.5\", \"sip:s27@192.0.2.5\", \"sip:s28@192.0.2.5\", \"sip:s29@192.0.2.5\", \"sip:s30@192.0.2.5\", \"sip:s31@192.0.2.5\", \"sip:s32@192.0.2.5\"]\n",
         "bridge.toml:5:18: channel[0].legacy_targets: 33 stations: at most 32 ring for one call"),
    ])
    func eachMistakeIsNamedWhereItIs(_ extra: String, _ expected: String) {
        let text = extra + "\n" + Self.minimal.replacingOccurrences(of: extra.hasPrefix("[gateway]") ? "[gateway]\nid = \"gw1\"\n" : "\u{0}", with: "")
        #expect {
            try BridgeConfiguration.parse(text, file: "bridge.toml")
        } throws: { error in
            guard let errors = error as? ConfigErrors, errors.errors.contains(where: { $0.description == expected }) else {
                Issue.record("expected \(expected), got \(error)")
                return false
            }
            return true
        }
    }

    @Test("A claim URL whose port does not fit 16 bits is refused by check-config (it trapped the gateway at every start)")
    func claimURLPortOutOfRange() {
        for url in ["https://192.0.2.10:84430/v1/claim", "https://192.0.2.10:0/v1/claim"] {
            let text = Self.minimal.replacingOccurrences(of: "server = \"127.0.0.1:5061\"", with: "server = \"127.0.0.1:5061\"\nclaim_url = \"\(url)\"")
            #expect {
                try BridgeConfiguration.parse(text, file: "bridge.toml")
            } throws: { error in
                (error as? ConfigErrors)?.errors.contains { $0.description.contains("cloud.claim_url") && $0.description.contains("port in 1–65535") } == true
            }
        }
        let good = Self.minimal.replacingOccurrences(of: "server = \"127.0.0.1:5061\"", with: "server = \"127.0.0.1:5061\"\nclaim_url = \"https://192.0.2.10:8443/v1/claim\"")
        #expect((try? BridgeConfiguration.parse(good, file: "bridge.toml"))?.claimURL == "https://192.0.2.10:8443/v1/claim")
    }

    @Test("MQTT without TLS to a broker off this machine is warned about; privacy keys default to off")
    func plaintextMQTTIsWarnedAbout() throws {
        func config(_ mqtt: String) throws -> BridgeConfiguration {
            try BridgeConfiguration.parse(Self.minimal + "\n[mqtt]\n" + mqtt, file: "bridge.toml")
        }
        let remote = try config("host = \"192.0.2.7\"\nusername = \"gw\"\n")
        #expect(remote.mqtt.plaintextWarning?.contains("MQTT to 192.0.2.7:1883 is not encrypted: the broker password") == true)
        #expect(try config("host = \"127.0.0.1\"\n").mqtt.plaintextWarning == nil)
        #expect(try config("host = \"localhost\"\n").mqtt.plaintextWarning == nil)
        #expect(try config("host = \"broker.example\"\ntls = true\n").mqtt.plaintextWarning == nil)
        #expect(!remote.mqttIncludeDigits && !remote.mqttRetainCaller)
        let optIn = try config("host = \"127.0.0.1\"\ninclude_digits = true\nretain_caller = true\n")
        #expect(optIn.mqttIncludeDigits && optIn.mqttRetainCaller)
    }

    @Test func channelMistakesPointAtTheChannel() {
        let text = Self.minimal + """

            [[channel]]
            index = 1
            number = "801"
            cloud_target = "bob"
            legacy_targets = []
            max_call_s = 900
            ring = "sequential"
            """
        #expect {
            try BridgeConfiguration.parse(text, file: "bridge.toml")
        } throws: { error in
            let lines = "\(error)".split(separator: "\n").map(String.init)
            let expected = [
                "bridge.toml:13:9: channel[1].index: channel 1 is defined twice",
                "bridge.toml:16:18: channel[1].legacy_targets: at least one legacy station to ring",
                "bridge.toml:17:14: channel[1].max_call_s: 900 is out of range (expected 10...600)",
                "bridge.toml:18:8: channel[1].ring: \"sequential\" is not one of \"parallel\", \"chain\"",
            ]
            for line in expected where !lines.contains(line) { Issue.record("missing \(line) in \(lines)") }
            return true
        }
    }

    @Test func missingSectionsAreNamed() {
        #expect {
            try BridgeConfiguration.parse("[gateway]\nid = \"gw1\"\n", file: "bridge.toml")
        } throws: { error in
            "\(error)".contains("cloud: missing") && "\(error)".contains("channel: missing")
        }
    }
}
