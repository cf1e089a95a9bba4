import Testing
@testable import TOMLConfig

private let sample = """
    # Symphony Bridge
    [gateway]
    id = "gw-1"   # the gateway's id
    site = 'site "north"'

    [media]
    rtp_port_min = 10000
    rtp_port_max = 9000
    jiter_max_ms = 120

    [legacy]
    codecs = ["G722",
              "PCMA"]
    note = \"\"\"
    multi-line [not a table]
    key = "not a key"
    \"\"\"
    transport = "sctp"

    [[channel]]
    index = 1
    number = "101"

    [[channel]]
    index = "two"
    "cloud target" = "group:lobby"
    limits = { ring_s = 30, max_call_s = 600 }
    """

@Suite("TOML configuration with positions")
struct TOMLConfigTests {
    @Test("The position index finds keys, values and headers across comments, strings, multi-line values and arrays of tables")
    func positions() {
        let index = TOMLPositionIndex(text: sample)
        #expect(index.table("gateway") == .init(line: 2, column: 1))
        #expect(index.key("gateway.id") == .init(line: 3, column: 1))
        #expect(index.value("gateway.id") == .init(line: 3, column: 6))
        #expect(index.key("gateway.site") == .init(line: 4, column: 1))
        #expect(index.key("media.jiter_max_ms") == .init(line: 9, column: 1))
        #expect(index.key("legacy.transport") == .init(line: 18, column: 1))
        #expect(index.key("legacy.key") == nil, "inside a multi-line string")
        #expect(index.table("channel[0]") == .init(line: 20, column: 1))
        #expect(index.key("channel[1].index") == .init(line: 25, column: 1))
        #expect(index.key("channel[1].cloud target") == .init(line: 26, column: 1))
        #expect(index.value("channel[1].limits") == .init(line: 27, column: 10))
    }

    @Test("Every problem is reported with file:line:column and the key path; unknown keys get a did-you-mean")
    func errors() throws {
        let document = try ConfigDocument(text: sample, file: "/etc/symphony-bridge/bridge.toml")
        let root = document.root!
        let gateway = root.table("gateway", required: true)
        #expect(gateway?.string("id", required: true) == "gw-1")
        #expect(gateway?.string("site") == "site \"north\"")
        _ = gateway?.string("state_dir", required: true)
        gateway?.finish()
        let media = root.table("media")
        let low = media?.int("rtp_port_min", in: 1024...65535)
        let high = media?.int("rtp_port_max", in: 1024...65535)
        if let low, let high, low >= high { media?.reject("rtp_port_max", "must be above rtp_port_min (\(low))") }
        _ = media?.int("jitter_max_ms", in: 0...1000)
        media?.finish()
        let legacy = root.table("legacy")
        #expect(legacy?.stringArray("codecs") == ["G722", "PCMA"])
        #expect(legacy?.string("note")?.contains("key = \"not a key\"") == true)
        _ = legacy?.string("transport", oneOf: ["udp", "tcp"])
        legacy?.finish()
        let channels = root.tables("channel")
        #expect(channels.count == 2)
        #expect(channels[0].int("index", in: 1...14) == 1)
        _ = channels[1].int("index", in: 1...14)
        _ = channels[1].string("cloud_target")
        for channel in channels {
            _ = channel.string("number")
            _ = channel.int("index", in: 1...14)
            channel.finish()
        }
        root.finish()

        let file = "/etc/symphony-bridge/bridge.toml"
        do {
            try document.validate()
            Issue.record("a bad file validated")
        } catch {
            #expect(error.errors.map(\.description) == [
                "\(file):2:1: gateway.state_dir: missing (a string)",
                "\(file):8:16: media.rtp_port_max: must be above rtp_port_min (10000)",
                "\(file):9:1: media.jiter_max_ms: unknown key (did you mean \"jitter_max_ms\"?)",
                "\(file):18:13: legacy.transport: \"sctp\" is not one of \"udp\", \"tcp\"",
                "\(file):25:9: channel[1].index: expected an integer, found string",
                "\(file):26:1: channel[1].cloud target: unknown key (did you mean \"cloud_target\"?)",
                "\(file):27:1: channel[1].limits: unknown key",
            ])
            #expect(ConfigErrors.exitStatus == 78)
        }
    }

    @Test("A syntax error is refused at once with TOMLKit's position")
    func syntax() {
        #expect(throws: ConfigErrors.self) { try ConfigDocument(text: "[media]\nrtp_port_min = = 3\n", file: "x.toml") }
        do {
            _ = try ConfigDocument(text: "[media]\nrtp_port_min = = 3\n", file: "x.toml")
        } catch {
            #expect(error.errors.first?.line == 2)
            #expect(error.errors.first?.description.hasPrefix("x.toml:2:") == true)
        }
    }

    @Test("Did-you-mean only suggests near keys")
    func suggestions() {
        #expect(ConfigTable.closest(to: "keepalive", in: ["keepalive_s", "server"]) == "keepalive_s")
        #expect(ConfigTable.closest(to: "zzz", in: ["keepalive_s", "server"]) == nil)
        #expect(ConfigTable.editDistance("kitten", "sitting") == 3)
    }
}
