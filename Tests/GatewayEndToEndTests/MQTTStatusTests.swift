import CloudCore
import Foundation
import Gateway
import Logging
import PeerTestSupport
import Testing

/// The MQTT status topics against a real mosquitto broker started by the test: the retained
/// topics after start, a channel's state through a call with its events, the last will after
/// `kill -9`, the republish after a broker restart, and a clean offline on SIGTERM.
@Suite("MQTT status", .serialized)
struct MQTTStatusTests {
    static func json(_ text: String?) -> [String: Any] {
        guard let text, let data = text.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        return object
    }

    /// `optIn`: `[mqtt] include_digits` and `retain_caller` set; without them (the default) no
    /// door digit reaches MQTT or the log and the retained channel topic names nobody.
    @Test(arguments: [false, true])
    func retainedTopicsAfterStartAndAChannelThroughACall(optIn: Bool) async throws {
        let scratch = try ScratchDirectory()
        let broker = try Mosquitto(in: scratch)
        try await broker.start()
        let path = try await GatewayPath.start(
            channels: [GatewayPath.channel(1, to: "alice", ringing: []), GatewayPath.channel(3, to: "bob", ringing: [])],
            configure: { config in
                config.mqtt.host = "127.0.0.1"
                config.mqtt.port = broker.port
                config.mqtt.topicPrefix = "site-a"
                config.mqttIncludeDigits = optIn
                config.mqttRetainCaller = optIn
            }, statsInterval: .seconds(2))
        let prefix = "site-a/gw1"
        try await path.eventually("status online") { Self.json(try await broker.retained("\(prefix)/status")["\(prefix)/status"])["state"] as? String == "online" }
        let retained = try await broker.retained("\(prefix)/#")
        #expect(Self.json(retained["\(prefix)/info"])["version"] as? String == GatewayVersion.current)
        #expect(Self.json(retained["\(prefix)/info"])["channels"] as? Int == 2)
        #expect(Self.json(retained["\(prefix)/cloud"])["registered"] as? Bool == true)
        #expect(Self.json(retained["\(prefix)/mesh"])["state"] as? String == "disabled")
        #expect(Self.json(retained["\(prefix)/channel/1"])["state"] as? String == "idle")
        #expect(Self.json(retained["\(prefix)/channel/3"])["state"] as? String == "idle")
        #expect(retained["\(prefix)/channel/2"] == nil, "an unconfigured channel has no retained topic: \(retained)")
        for topic in ["status", "info", "cloud", "legacy", "channel/1"] {
            #expect(Self.json(retained["\(prefix)/\(topic)"])["ts"] is Int, "\(topic) carries ts")
        }
        // `symphony-bridge status` reads the same topics: a table, and JSON for scripts.
        let options = ["status", "--broker", "127.0.0.1:\(broker.port)", "--prefix", "site-a", "--id", "gw1"]
        let table = try await runCommand(try builtExecutable("symphony-bridge"), options)
        #expect(table.contains("symphony-bridge gw1: online") && table.contains("cloud    registered"), "\(table)")
        #expect(table.split(separator: "\n").contains { $0.hasPrefix("  1        idle") } && table.contains("  3        idle"), "\(table)")
        let document = Self.json(try await runCommand(try builtExecutable("symphony-bridge"), options + ["--json"]))
        #expect((document["status"] as? [String: Any])?["state"] as? String == "online")
        #expect(((document["channels"] as? [String: Any])?["3"] as? [String: Any])?["state"] as? String == "idle", "\(document)")
        let nobody = try PeerProcess(try builtExecutable("symphony-bridge"), ["status", "--broker", "127.0.0.1:\(broker.port)", "--prefix", "site-a", "--id", "gw-none", "--wait-ms", "500"])
        #expect(try await nobody.wait(timeout: .seconds(10)) == 69, "no status for an unknown gateway: \(nobody.text)")

        // A call through channel 1: ringing → connected (with codec) → idle, with its events.
        let events = try broker.startSubscriber("\(prefix)/event", seconds: 25)
        let stats = try broker.startSubscriber("\(prefix)/stats")
        let doorTone = path.scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 800, seconds: 10, rate: 16000, channels: 1)
        let alice = try await path.startCloudClient("alice", frequency: 1000, seconds: 20)
        let door = try GatewayPath.legacyStation("door", in: path.scratch, tone: doorTone)
        try door.start(seconds: 20, command: path.dial(channel: 1))
        try await path.eventually("channel 1 connected on MQTT") {
            let channel = Self.json(try await broker.retained("\(prefix)/channel/1")["\(prefix)/channel/1"])
            return channel["state"] as? String == "connected" && channel["codec"] as? String == "g722/opus" && channel["peer"] as? String == (optIn ? "alice" : nil)
        }
        try await alice.command("sndcode", "1")
        try await Task.sleep(for: .seconds(2.5))  // a stats period with the call up
        try await door.command("hangup")
        try await path.eventually("channel 1 idle again") {
            Self.json(try await broker.retained("\(prefix)/channel/1")["\(prefix)/channel/1"])["state"] as? String == "idle"
        }
        try await Task.sleep(for: .milliseconds(500))
        events.stop()
        stats.stop()
        // stats: not retained, periodic; one taken during the call shows it and its media.
        let during = stats.text.split(separator: "\n").map { Self.json(String($0.split(separator: " ", maxSplits: 1).last ?? "")) }.filter { $0["active"] as? Int == 1 }
        #expect(!during.isEmpty, "a stats message during the call: \(stats.text)")
        #expect((during.last?["calls"] as? Int ?? 0) >= 1 && during.last?["packet_loss"] is Double && during.last?["jitter_ms"] is Double, "\(during)")
        let published = events.text
        #expect(published.contains("\"type\":\"call_start\""), "\(published)")
        #expect(published.contains("\"type\":\"door_open\""), "\(published)")
        #expect(published.contains("\"digit\":\"1\"") == optIn, "the digit only when include_digits asks: \(published)")
        // The log says a digit was relayed, never which (nor the INFO body that carried it).
        #expect(path.logs.contains("door-opener digit"), "\(path.logs.text.suffix(2000))")
        #expect(!path.logs.text.contains("digit 1") && !path.logs.text.contains("Signal=1"), "\(path.logs.text.suffix(2000))")
        #expect(published.contains("\"type\":\"call_end\"") && published.contains("\"outcome\":\"answered\""), "\(published)")
        alice.stop()
        door.stop()
        await path.stop()
        let after = Self.json(try await broker.retained("\(prefix)/status")["\(prefix)/status"])
        #expect(after["state"] as? String == "offline", "a clean stop says offline")
        broker.stop()
    }

    /// A gateway with one channel, a cloud that is not there (port 1) and the test's broker.
    /// A gateway whose cloud is nowhere (127.0.0.1:1), with `channels` (number 100 + index) and
    /// `extra` TOML after `[mqtt]`.
    static func cloudlessConfig(id: String, state: String, legacyPort: Int, brokerPort: Int, channels: [Int] = [1], extra: String = "") -> String {
        var text = """
            [gateway]
            id = "\(id)"
            state_dir = "\(state)"
            [legacy]
            listen = "127.0.0.1:\(legacyPort)"
            [cloud]
            server = "127.0.0.1:1"
            [mqtt]
            host = "127.0.0.1"
            port = \(brokerPort)
            \(extra)

            """
        for index in channels {
            text += "[[channel]]\nindex = \(index)\nnumber = \"\(100 + index)\"\ncloud_target = \"alice\"\nlegacy_targets = [\"sip:door@127.0.0.1:9\"]\n"
        }
        return text
    }

    /// The gateway as its own process: `kill -9` leaves the last will; a broker restart is
    /// followed by a reconnect and every retained topic again; SIGTERM goes offline cleanly.
    @Test func lastWillBrokerRestartAndCleanShutdown() async throws {
        let scratch = try ScratchDirectory()
        let broker = try Mosquitto(in: scratch)
        try await broker.start()
        let config = scratch.path("bridge.toml")
        func write(_ legacyPort: Int) throws {
            try Self.cloudlessConfig(id: "gw9", state: scratch.path("state"), legacyPort: legacyPort, brokerPort: broker.port)
                .write(toFile: config, atomically: true, encoding: .utf8)
        }
        try write(try freePort(udp: true))
        let prefix = "symphony-bridge/gw9"
        var gateway = try PeerProcess(try builtExecutable("symphony-bridge"), ["run", "--config", config])
        // Unclaimed and without a cloud, the gateway is up but degraded.
        try await Self.eventuallyState(broker, prefix, "degraded", gateway)
        #expect(Self.json(try await broker.retained("\(prefix)/cloud")["\(prefix)/cloud"])["claimed"] as? Bool == false)

        gateway.stop()  // SIGKILL: no goodbye, the broker publishes the will
        try await Self.eventuallyState(broker, prefix, "offline", nil)

        try write(try freePort(udp: true))
        gateway = try PeerProcess(try builtExecutable("symphony-bridge"), ["run", "--config", config])
        try await Self.eventuallyState(broker, prefix, "degraded", gateway)
        broker.stop()
        try await Task.sleep(for: .seconds(1))
        try await broker.start()  // no persistence: every retained message is gone
        try await Self.eventuallyState(broker, prefix, "degraded", gateway, timeout: .seconds(40))
        let retained = try await broker.retained("\(prefix)/#")
        #expect(retained["\(prefix)/info"] != nil && retained["\(prefix)/channel/1"] != nil && retained["\(prefix)/legacy"] != nil, "\(retained)")

        kill(gateway.process.processIdentifier, SIGTERM)
        let status = try await gateway.wait(timeout: .seconds(15))
        #expect(status == 0, "SIGTERM ends the gateway cleanly:\n\(gateway.text.suffix(1500))")
        let after = Self.json(try await broker.retained("\(prefix)/status")["\(prefix)/status"])
        #expect(after["state"] as? String == "offline" && after["ts"] is Int, "offline published by the gateway itself (with ts), not the will: \(after)")
        broker.stop()
    }

    /// Issue 18: the gateway process started on a `calls.sqlite` that is not a database starts
    /// (legacy calls answered), names both files in the log and on `status`, and
    /// `symphony-bridge status` and `calls` show it.
    @Test func aBrokenCallRecordsFileIsMovedAsideAndNamedOnTheStatusTopic() async throws {
        let scratch = try ScratchDirectory()
        let broker = try Mosquitto(in: scratch)
        try await broker.start()
        let state = scratch.path("state")
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        try String(repeating: "\u{0}garbage", count: 4096).write(toFile: state + "/calls.sqlite", atomically: true, encoding: .utf8)
        let config = scratch.path("bridge.toml")
        let legacyPort = try freePort(udp: true)
        try Self.cloudlessConfig(id: "gw8", state: state, legacyPort: legacyPort, brokerPort: broker.port).write(toFile: config, atomically: true, encoding: .utf8)
        let binary = try builtExecutable("symphony-bridge")
        let gateway = try PeerProcess(binary, ["run", "--config", config])
        try await gateway.waitForOutput("legacy trunk listening", timeout: .seconds(20))
        #expect(gateway.text.contains("call records \(state)/calls.sqlite was broken") && gateway.text.contains("moved aside to \(state)/calls.sqlite.corrupt-"), "\(gateway.text.suffix(2000))")
        let prefix = "symphony-bridge/gw8"
        var status: [String: Any] = [:]
        for _ in 0..<50 {
            status = Self.json(try await broker.retained("\(prefix)/status")["\(prefix)/status"])
            if (status["problems"] as? [String])?.contains(where: { $0.contains("calls.sqlite") }) == true { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect((status["problems"] as? [String])?.contains { $0.contains("moved aside") } == true, "\(status)")
        let table = try await runCommand(binary, ["status", "--broker", "127.0.0.1:\(broker.port)", "--prefix", "symphony-bridge", "--id", "gw8"])
        #expect(table.contains("PROBLEM  call records \(state)/calls.sqlite was broken"), "\(table)")
        // The gateway answers on the legacy side.
        let options = "OPTIONS sip:101@127.0.0.1:\(legacyPort) SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-calls1;rport\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:101@127.0.0.1>\r\nCall-ID: calls-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        let socket = try UDPSocket()
        socket.send(text: options, to: legacyPort)
        let answer = try await socket.receiveText(timeout: .seconds(3))
        #expect(answer?.hasPrefix("SIP/2.0 200") == true, "the gateway answers: \(answer ?? "nothing")")
        let aside = try FileManager.default.contentsOfDirectory(atPath: state).filter { $0.hasPrefix("calls.sqlite.corrupt-") }
        #expect(aside.count == 1)
        let listed = try await runCommand(binary, ["calls", "--file", state + "/calls.sqlite"])
        #expect(listed.contains("0 call(s)"), "the new file is a records file: \(listed)")
        gateway.stop()
        broker.stop()
    }

    @Test func aTLSBrokerWithPasswordsAndHomeAssistantDiscovery() async throws {
        let scratch = try ScratchDirectory()
        let certificates = try await TestCertificates.make(in: scratch, name: "broker")
        let broker = try Mosquitto(in: scratch, credentials: ("gateway", "s3cret-broker-pw"), tls: certificates)
        try await broker.start()
        let passwordFile = scratch.path("mqtt-password")
        try "s3cret-broker-pw\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let path = try await GatewayPath.start(channels: [GatewayPath.channel(2, to: "alice", ringing: [])]) { config in
            config.mqtt.host = "127.0.0.1"
            config.mqtt.port = broker.port
            config.mqtt.tls = true
            config.mqtt.caFile = certificates.caFile
            config.mqtt.username = "gateway"
            config.mqtt.passwordFile = passwordFile
            config.homeAssistantDiscovery = true
        }
        try await Self.eventuallyState(broker, "symphony-bridge/gw1", "online", nil)
        let discovery = "homeassistant/sensor/symphony_gw1_ch2/config"
        let entity = Self.json(try await broker.retained(discovery)[discovery])
        #expect(entity["state_topic"] as? String == "symphony-bridge/gw1/channel/2" && entity["value_template"] as? String == "{{ value_json.state }}", "\(entity)")
        #expect(((entity["device"] as? [String: Any])?["identifiers"] as? [String]) == ["symphony_gw1"])
        let cloud = "homeassistant/binary_sensor/symphony_gw1_cloud/config"
        #expect(Self.json(try await broker.retained(cloud)[cloud])["device_class"] as? String == "connectivity")
        #expect(try await broker.retained("homeassistant/sensor/symphony_gw1_ch1/config").isEmpty, "no entity for an unconfigured channel")
        // Home Assistant restarts (its retained configs wiped here) and says it is online: discovery again.
        try await broker.publish(discovery, "", retain: true)
        #expect(try await broker.retained(discovery).isEmpty)
        try await broker.publish("homeassistant/status", "online")
        try await path.eventually("discovery re-sent") { !(try await broker.retained(discovery)).isEmpty }
        #expect(!path.logs.contains("s3cret-broker-pw"), "no secret in the logs")
        await path.stop()
        broker.stop()
    }

    @Test func theCloudCorePublishesItsStatusAndInfo() async throws {
        let scratch = try ScratchDirectory()
        let broker = try Mosquitto(in: scratch)
        try await broker.start()
        var c = CloudCoreConfiguration()
        c.stateDirectory = scratch.path("core")
        c.tlsListen = [.init("127.0.0.1:0")!]
        c.claimingListen = nil
        c.mqtt.host = "127.0.0.1"
        c.mqtt.port = broker.port
        c.mqttID = "core1"
        var logger = Logger(label: "core")
        logger.logLevel = .warning
        let core = try await CloudCoreServer.start(c, logger: logger)
        try await Self.eventuallyState(broker, "symphony-cloud-core/core1", "online", nil)
        let info = Self.json(try await broker.retained("symphony-cloud-core/core1/info")["symphony-cloud-core/core1/info"])
        #expect(info["domain"] as? String == "symphony.local" && info["version"] as? String == CloudCoreServer.version && info["ts"] is Int, "\(info)")
        await core.shutdown()
        try await Self.eventuallyState(broker, "symphony-cloud-core/core1", "offline", nil)
        broker.stop()
    }

    static func eventuallyState(
        _ broker: Mosquitto, _ prefix: String, _ state: String, _ gateway: PeerProcess?, timeout: Duration = .seconds(15)
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        var last: String?
        while ContinuousClock.now < deadline {
            last = try await broker.retained("\(prefix)/status")["\(prefix)/status"]
            if json(last)["state"] as? String == state { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw PeerError(
            "status never became \(state) (last: \(last ?? "none"), broker on \(broker.port): \(broker.process?.text.suffix(1500) ?? "not running")); gateway output:\n\(gateway?.text.suffix(3000) ?? "")")
    }
}
