import DurableState
import Foundation
import Logging
import MQTTStatus
import NIOConcurrencyHelpers

/// The cloud core's own MQTT topics, when `[mqtt] host` is set: retained `status` (online, and
/// `{"state":"offline"}` as the last will and on a clean stop) and `info` (version, domain, start
/// time), under `<topic_prefix>/<id>/`, rewritten on every (re)connect.
final class CoreStatusPublisher: Sendable {
    let connection: MQTTConnection
    let prefix: String
    let info: String
    /// Call records waiting for the disk: `degraded` with the counts while any wait.
    private let backlog = NIOLockedValueBox(RecordBacklog())

    static func make(_ c: CloudCoreConfiguration, version: String, logger: Logger) -> CoreStatusPublisher? {
        let prefix = "\(c.mqtt.topicPrefix)/\(c.mqttID ?? c.domain)"
        let connection: MQTTConnection
        do {
            guard let settings = try c.mqtt.connectionSettings(
                clientID: "symphony-cloud-core-\(c.mqttID ?? c.domain)", will: ("\(prefix)/status", #"{"state":"offline"}"#, true))
            else { return nil }
            if let warning = c.mqtt.plaintextWarning { logger.warning("\(warning)") }
            connection = try MQTTConnection(settings)
        } catch {
            logger.error("\(error); running without MQTT status")
            return nil
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let info = #"{"domain":"\#(c.domain)","started_at":\#(now),"version":"\#(version)"}"#
        let publisher = CoreStatusPublisher(connection: connection, prefix: prefix, info: info)
        Task {
            for await event in connection.events where event == .connected { publisher.publishAll() }
        }
        connection.start()
        return publisher
    }

    init(connection: MQTTConnection, prefix: String, info: String) {
        self.connection = connection
        self.prefix = prefix
        self.info = info
    }

    private static var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func records(_ backlog: RecordBacklog) {
        self.backlog.withLockedValue { $0 = backlog }
        publishStatus()
    }

    private func publishStatus() {
        let b = backlog.withLockedValue { $0 }
        if b.waiting > 0 || b.error != nil {
            let fields: [String: Any] = [
                "state": "degraded", "problems": ["call records not written (\(b.error ?? "retrying")): \(b.waiting) waiting"],
                "records_waiting": b.waiting, "records_summarised": b.summarised, "ts": Self.now,
            ]
            let text = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) }
            connection.publish("\(prefix)/status", text ?? #"{"state":"degraded","ts":\#(Self.now)}"#, qos: 1, retain: true)
        } else {
            connection.publish("\(prefix)/status", #"{"state":"online","ts":\#(Self.now)}"#, qos: 1, retain: true)
        }
    }

    func publishAll() {
        publishStatus()
        connection.publish("\(prefix)/info", String(info.dropLast()) + #","ts":\#(Self.now)}"#, qos: 1, retain: true)
    }

    func stop() {
        connection.publishAndStop("\(prefix)/status", #"{"state":"offline","ts":\#(Self.now)}"#, retain: true)
    }
}
