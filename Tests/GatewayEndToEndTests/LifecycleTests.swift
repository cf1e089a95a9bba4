import Foundation
import Gateway
import PeerTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The gateway as a systemd service: the notify protocol (READY, STATUS, WATCHDOG, STOPPING)
/// on a socket the test plays systemd with, and SIGHUP reloads that are all or nothing — a bad
/// file refused with the old config running, a good one applied (a channel added appears on
/// MQTT), a change that needs a restart refused with the key named.
@Suite("Gateway lifecycle", .serialized)
struct LifecycleTests {
    /// A unix datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
    final class NotifySocket: @unchecked Sendable {
        let path: String
        let fd: Int32

        init(path: String) throws {
            self.path = path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard fd >= 0, bound == 0 else { throw PeerError("cannot bind \(path)") }
        }

        deinit { close(fd) }

        /// Every message that has arrived so far.
        func drain() -> [String] {
            var messages: [String] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                guard n > 0 else { return messages }
                messages.append(String(decoding: buffer[..<n], as: UTF8.self))
            }
        }
    }

    static func config(_ scratch: ScratchDirectory, broker: Int, legacyPort: Int, channels: [Int], extra: String = "") -> String {
        MQTTStatusTests.cloudlessConfig(id: "gw7", state: scratch.path("state"), legacyPort: legacyPort, brokerPort: broker, channels: channels, extra: extra)
    }

    @Test func notifyProtocolAndAllOrNothingReloads() async throws {
        let scratch = try ScratchDirectory()
        let broker = try Mosquitto(in: scratch)
        try await broker.start()
        let legacyPort = try freePort(udp: true)
        let file = scratch.path("bridge.toml")
        try Self.config(scratch, broker: broker.port, legacyPort: legacyPort, channels: [1]).write(toFile: file, atomically: true, encoding: .utf8)
        let systemd = try NotifySocket(path: scratch.path("notify.sock"))
        let gateway = try PeerProcess(
            try builtExecutable("symphony-bridge"), ["run", "--config", file],
            environment: ["NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "200000"])
        var received: [String] = []
        func waitFor(_ what: String, _ condition: @escaping ([String]) -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline {
                received += systemd.drain()
                if condition(received) { return }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw PeerError("no \(what) from the gateway; got \(received)\n\(gateway.text.suffix(2000))")
        }
        try await waitFor("READY=1") { $0.contains { $0.hasPrefix("READY=1") && $0.contains("STATUS=legacy udp:127.0.0.1:\(legacyPort), 1 channel(s)") } }
        try await waitFor("watchdog keepalives") { $0.filter { $0 == "WATCHDOG=1" }.count >= 3 }
        try await MQTTStatusTests.eventuallyState(broker, "symphony-bridge/gw7", "degraded", gateway)
        let events = try broker.startSubscriber("symphony-bridge/gw7/event")
        try await Task.sleep(for: .milliseconds(300))

        // A broken file: refused, the running config stays.
        try "[gateway]\nid = \"gw7\"\n[[channel]]\nindex = 99\n".write(toFile: file, atomically: true, encoding: .utf8)
        kill(gateway.process.processIdentifier, SIGHUP)
        try await waitFor("the refused reload's STATUS") { $0.contains { $0.contains("STATUS=reload refused (old config running)") } }
        #expect(received.contains { $0.hasPrefix("RELOADING=1") })

        // A good file with a second channel: applied; the channel appears on MQTT.
        try Self.config(scratch, broker: broker.port, legacyPort: legacyPort, channels: [1, 2]).write(toFile: file, atomically: true, encoding: .utf8)
        kill(gateway.process.processIdentifier, SIGHUP)
        try await waitFor("the applied reload's STATUS") { $0.contains { $0.contains("STATUS=reloaded: 2 channel(s)") } }
        let channel2 = MQTTStatusTests.json(try await broker.retained("symphony-bridge/gw7/channel/2")["symphony-bridge/gw7/channel/2"])
        #expect(channel2["state"] as? String == "idle", "channel 2 added by the reload: \(channel2)")

        // Moving the legacy listener needs a restart: refused, naming the key.
        try Self.config(scratch, broker: broker.port, legacyPort: try freePort(udp: true), channels: [1, 2]).write(toFile: file, atomically: true, encoding: .utf8)
        kill(gateway.process.processIdentifier, SIGHUP)
        try await waitFor("the restart-only refusal") { $0.contains { $0.contains("legacy.listen can only change with a restart") } }

        try await Task.sleep(for: .milliseconds(500))
        events.stop()
        #expect(events.text.contains("\"type\":\"reload_failed\"") && events.text.contains("\"type\":\"reload_ok\""), "\(events.text)")
        #expect(gateway.text.contains("reload refused, the running config stays"), "the log says why")

        kill(gateway.process.processIdentifier, SIGTERM)
        #expect(try await gateway.wait(timeout: .seconds(15)) == 0)
        received += systemd.drain()
        #expect(received.contains("STOPPING=1"))
        broker.stop()
    }
}
