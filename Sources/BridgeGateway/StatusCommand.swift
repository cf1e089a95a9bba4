import BoundedJSON
import ArgumentParser
import Foundation
import Gateway
import MQTTStatus
import TOMLConfig

/// `symphony-bridge status`: the gateway's state as its retained MQTT topics tell it — a
/// readable table, or `--json` for scripts. Exit 0 with a status, 69 (EX_UNAVAILABLE) when the
/// broker cannot be reached or holds no status for the gateway.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the gateway's state and channels from its retained MQTT topics.")

    @Option(help: "The configuration file (for the broker, the topic prefix and the gateway id).")
    var config = "/etc/symphony-bridge/bridge.toml"
    @Option(help: "The broker as host:port (instead of the config's [mqtt]).") var broker: String?
    @Option(help: "The topic prefix (instead of the config's).") var prefix: String?
    @Option(help: "The gateway id (instead of the config's).") var id: String?
    @Option(help: "How long to wait for the retained topics, in milliseconds.") var waitMs = 1500
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        var host = "127.0.0.1", port = 1883, topicPrefix = "symphony-bridge", gateway = "", username: String?, passwordFile: String?
        var tls = false
        if broker == nil || prefix == nil || id == nil {
            do {
                let c = try BridgeConfiguration.load(file: config)
                host = c.mqtt.host ?? host
                port = c.mqtt.port
                topicPrefix = c.mqtt.topicPrefix
                gateway = c.gatewayID
                username = c.mqtt.username
                passwordFile = c.mqtt.passwordFile
                tls = c.mqtt.tls
            } catch {
                FileHandle.standardError.write(Data((error.description + "\n").utf8))
                throw ExitCode(ConfigErrors.exitStatus)
            }
        }
        if let broker {
            guard let parsed = HostPort(broker, defaultPort: 1883) else { throw ValidationError("--broker is host:port") }
            (host, port) = (parsed.host, parsed.port)
        }
        topicPrefix = prefix ?? topicPrefix
        gateway = id ?? gateway
        var settings = MQTTConnection.Settings(host: host, port: port, clientID: "symphony-bridge-status-\(getpid())")
        settings.username = username
        settings.password = passwordFile.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }?.trimmingCharacters(in: .whitespacesAndNewlines)
        settings.tls = tls
        let connection = try MQTTConnection(settings)
        let base = "\(topicPrefix)/\(gateway)/"
        connection.start()
        var topics: [String: String] = [:]
        let deadline = ContinuousClock.now + .milliseconds(waitMs)
        var lastArrival = ContinuousClock.now
        let collector = Task {
            var seen: [String: String] = [:]
            for await event in connection.events {
                switch event {
                case .connected: connection.subscribe(base + "#", qos: 1)
                case .message(let topic, let payload, let retained) where retained:
                    seen[String(topic.dropFirst(base.count))] = String(decoding: payload, as: UTF8.self)
                default: continue
                }
                await Self.publish(seen)
            }
        }
        // Retained messages arrive right after the subscription; stop once they have settled.
        var previous = 0
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            let current = await Self.latest.count
            if current != previous { previous = current; lastArrival = .now }
            if current > 0, ContinuousClock.now - lastArrival > .milliseconds(300) { break }
        }
        topics = await Self.latest.topics
        connection.stop()
        collector.cancel()
        guard let status = topics["status"] else {
            FileHandle.standardError.write(Data("no status for \(base.dropLast()) at \(host):\(port) (broker unreachable, or the gateway never published)\n".utf8))
            throw ExitCode(69)
        }
        if json {
            say(Self.jsonDocument(topics))
        } else {
            say(Self.table(gateway: gateway, status: status, topics: topics))
        }
    }

    // The collected topics, shared between the collector task and the waiting loop.
    actor Store {
        var topics: [String: String] = [:]
        var count: Int { topics.count }
        func set(_ new: [String: String]) { topics = new }
    }
    static let latest = Store()
    static func publish(_ seen: [String: String]) async { await latest.set(seen) }

    static func object(_ text: String?) -> [String: Any] {
        guard let text, let data = text.data(using: .utf8), let object = try? BoundedJSON.object(from: data) as? [String: Any] else { return [:] }
        return object
    }

    static func jsonDocument(_ topics: [String: String]) -> String {
        var document: [String: Any] = [:]
        var channels: [String: Any] = [:]
        for (topic, payload) in topics {
            if topic.hasPrefix("channel/") { channels[String(topic.dropFirst("channel/".count))] = object(payload) } else { document[topic] = object(payload) }
        }
        document["channels"] = channels
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .prettyPrinted])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    static func time(_ milliseconds: Any?) -> String {
        guard let ms = milliseconds as? Int else { return "-" }
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    static func table(gateway: String, status: String, topics: [String: String]) -> String {
        let s = object(status), info = object(topics["info"]), cloud = object(topics["cloud"]), legacy = object(topics["legacy"]), mesh = object(topics["mesh"])
        var lines = ["symphony-bridge \(gateway): \(s["state"] as? String ?? "?") (as of \(time(s["ts"])))"]
        lines.append("  version \(info["version"] as? String ?? "?"), \(info["channels"] as? Int ?? 0) channel(s), config \(info["config_hash"] as? String ?? "-"), started \(time(info["started_at"]))")
        if info["certificate_expires_at"] != nil { lines.append("  device certificate valid until \(time(info["certificate_expires_at"]))") }
        for problem in s["problems"] as? [String] ?? [] { lines.append("  PROBLEM  \(problem)") }
        let registered = (cloud["registered"] as? Bool) == true
        var cloudLine = "  cloud    \(registered ? "registered" : "not registered"), flow \(cloud["flow"] as? String ?? "?")\(cloud["health"].map { ", health \($0)" } ?? ""), claimed \((cloud["claimed"] as? Bool) == true ? "yes" : "no")"
        if let error = cloud["last_error"] as? String, !registered { cloudLine += " — \(error)" }
        lines.append(cloudLine)
        lines.append("  legacy   trunk \(legacy["trunk"] as? String ?? "?")\(legacy["rtt_ms"].map { ", rtt \($0) ms" } ?? "")")
        var meshLine = "  mesh     \(mesh["state"] as? String ?? "?")"
        if let peers = mesh["peers"] as? [[String: Any]], !peers.isEmpty {
            let names = peers.map { peer in "\(peer["device"] as? String ?? "?") (\((peer["numbers"] as? [String] ?? []).joined(separator: ",")))" }
            meshLine += ", peers: " + names.joined(separator: ", ")
        }
        lines.append(meshLine)
        lines.append("")
        lines.append("  channel  state      peer                       codec       since")
        let channels = topics.keys.filter { $0.hasPrefix("channel/") }.compactMap { Int($0.dropFirst("channel/".count)) }.sorted()
        for index in channels {
            let c = object(topics["channel/\(index)"])
            func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
            lines.append("  " + pad(String(index), 9) + pad(c["state"] as? String ?? "?", 11) + pad(c["peer"] as? String ?? "-", 27)
                + pad(c["codec"] as? String ?? "-", 12) + time(c["since"]))
        }
        return lines.joined(separator: "\n")
    }
}
