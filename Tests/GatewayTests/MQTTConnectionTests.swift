import Foundation
import MQTTStatus
import PeerTestSupport
import Testing

/// The MQTT connection of a daemon that holds many descriptors (issue 17, found when the test
/// process passed 1,024): libmosquitto's own loop (`select()`) refuses a socket numbered 1,024 or
/// above, so the connection runs its own `poll()` loop.
@Suite("MQTT connection", .serialized)
struct MQTTConnectionTests {
    @Test("Connects, publishes and reconnects with its socket past descriptor 1,024")
    func connectsWithHighDescriptors() async throws {
        let scratch = try ScratchDirectory()
        let broker = try Mosquitto(in: scratch)
        try await broker.start()
        // Take the low descriptors so that the client's socket lands above 1,024.
        var held: [Int32] = []
        while held.last.map({ $0 < 1100 }) ?? true {
            let fd = open("/dev/null", O_RDONLY)
            guard fd >= 0 else { break }
            held.append(fd)
        }
        defer { for fd in held { close(fd) } }
        #expect((held.last ?? 0) >= 1100)
        var settings = MQTTConnection.Settings(host: "127.0.0.1", port: broker.port, clientID: "high-fd-test")
        settings.reconnectDelay = (1, 2)
        let connection = try MQTTConnection(settings)
        connection.start()
        func within(_ seconds: Double, _ condition: () -> Bool) async throws -> Bool {
            let deadline = ContinuousClock.now + .seconds(seconds)
            while ContinuousClock.now < deadline {
                if condition() { return true }
                try await Task.sleep(for: .milliseconds(50))
            }
            return condition()
        }
        #expect(try await within(10) { connection.isConnected }, "connected over a socket numbered past 1,024")
        #expect(connection.publish("test/high", "hello", qos: 1, retain: true))
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await broker.retained("test/high")["test/high"] == "hello")
        // The broker goes away and comes back: the connection follows.
        broker.stop()
        #expect(try await within(10) { !connection.isConnected }, "the loss noticed")
        try await broker.start()
        #expect(try await within(15) { connection.isConnected }, "reconnected after the broker's restart")
        connection.stop()
        broker.stop()
    }
}
