public import CloudUplink
public import DurableState
public import Foundation
public import LegacyLinks
public import Logging
public import MQTTStatus
public import Mesh

/// The gateway's MQTT topics (../shared/ARCHITECTURE.md "MQTT status"), under
/// `<topic_prefix>/<gateway id>/`: retained `status` (also the last will), `info`, `cloud`,
/// `legacy`, `mesh` and `channel/<n>`; `stats` every 60 s; `event` for call start/end, door
/// opening and reload results. JSON payloads with `ts` in milliseconds.
///
/// It keeps the state of every retained topic, publishes a change at once, and rewrites them all
/// on every (re)connect — the broker may have restarted without persistence. Publishing only
/// queues in libmosquitto: a broker that is away never holds up a call.
public actor GatewayStatusPublisher {
    public enum ChannelState: String, Sendable {
        case idle, ringing, connected, mesh, disabled, error
    }

    struct ChannelStatus: Codable, Equatable {
        var state: String
        var peer: String?
        var codec: String?
        var srtp: Bool?
        /// "mesh" for a call over the mesh.
        var via: String?
        var since: Int64
        var ts: Int64
    }

    public let connection: MQTTConnection
    public let prefix: String
    private(set) var configuration: BridgeConfiguration
    let logger: Logger
    let clock: @Sendable () -> Date
    private let startedAt: Date
    private var channels: [Int: ChannelStatus] = [:]
    private var cloud: [String: JSONValue] = ["claimed": .bool(false), "registered": .bool(false), "flow": .string("down")]
    private var legacy: [String: JSONValue] = ["trunk": .string("unknown")]
    private var mesh: [String: JSONValue] = ["state": .string("standby"), "peers": .array([]), "calls": .int(0)]
    private var meshPeers: [JSONValue] = []
    private var meshCalls = 0
    private var failedOver = false
    private var counters = (calls: 0, answered: 0, failures: 0)
    private var lastDiscoveryRequest: ContinuousClock.Instant?
    private var problems: [String: String] = [:]
    /// Call records waiting for the disk and summarised (docs/RELIABILITY.md "No call record lost").
    private var recordBacklog = RecordBacklog()
    private var certificateExpiry: Date?

    /// How often `stats` goes out (60 s; tests shorten it).
    let statsInterval: Duration

    public init(
        connection: MQTTConnection, configuration: BridgeConfiguration, logger: Logger, statsInterval: Duration = .seconds(60),
        clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.connection = connection
        self.statsInterval = statsInterval
        self.configuration = configuration
        self.prefix = "\(configuration.mqtt.topicPrefix)/\(configuration.gatewayID)"
        self.logger = logger
        self.clock = clock
        self.startedAt = clock()
        let now = Int64(clock().timeIntervalSince1970 * 1000)
        for channel in configuration.channels {
            channels[channel.index] = ChannelStatus(state: channel.enabled ? "idle" : "disabled", since: now, ts: now)
        }
        if configuration.meshEnabled == false { mesh["state"] = .string("disabled") }
    }

    /// The will the connection must carry: `status` = offline, retained (set before connecting).
    public static func lastWill(for configuration: BridgeConfiguration) -> (topic: String, payload: String, retain: Bool) {
        ("\(configuration.mqtt.topicPrefix)/\(configuration.gatewayID)/status", #"{"state":"offline"}"#, true)
    }

    /// Follows the connection (every (re)connect rewrites all retained topics) and publishes
    /// `stats` every interval, until the task is cancelled (the gateway's status service).
    public func run(statistics: @escaping @Sendable () async -> GatewayStatistics) async {
        await withDiscardingTaskGroup { group in
            group.addTask { [self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: statsInterval)
                    if Task.isCancelled { return }
                    await self.publishStats(await statistics())
                }
            }
            group.addTask { [self] in
                for await event in connection.events { await self.connectionEvent(event) }
            }
        }
    }

    private func connectionEvent(_ event: MQTTConnection.Event) {
        if case .connected = event {
            republishAll()
            subscribeHomeAssistant()
        }
        // Home Assistant announces itself after its own restart: discovery goes again.
        if case .message(let topic, let payload, _) = event, topic == "homeassistant/status", payload == Array("online".utf8) {
            publishDiscoveryOnRequest()
        }
        if case .disconnected(let code) = event, code != 0 {
            logger.warning("MQTT broker connection lost; reconnecting with backoff", metadata: ["code": "\(code)"])
        }
    }

    // MARK: Inputs

    public func routerEvent(_ event: ChannelRouter.Event) {
        let now = nowMilliseconds
        switch event {
        case .channelBusy(let channel, let direction, let peer):
            counters.calls += 1
            setChannel(channel, ChannelStatus(state: ChannelState.ringing.rawValue, peer: peer, via: direction.overMesh ? "mesh" : nil, since: now, ts: now))
            publishEvent(["type": .string("call_start"), "channel": .int(Int64(channel)), "direction": .string(direction.rawValue), "peer": .string(peer)])
        case .fellBackToMesh(let channel, let reason):
            if var status = channels[channel] {
                status.via = "mesh"
                setChannel(channel, status)
            }
            publishEvent(["type": .string("mesh_fallback"), "channel": .int(Int64(channel)), "reason": .string(reason)])
        case .channelConnected(let channel, let codec, let overMesh):
            counters.answered += 1
            let peer = channels[channel]?.peer
            let state = overMesh ? ChannelState.mesh : ChannelState.connected
            setChannel(channel, ChannelStatus(state: state.rawValue, peer: peer, codec: codec, srtp: true, via: overMesh ? "mesh" : nil, since: now, ts: now))
        case .channelIdle(let channel, let outcome, let reason):
            if outcome == .failed { counters.failures += 1 }
            setChannel(channel, ChannelStatus(state: ChannelState.idle.rawValue, since: now, ts: now))
            publishEvent(["type": .string("call_end"), "channel": .int(Int64(channel)), "outcome": .string(outcome.rawValue), "reason": .string(reason)])
        case .digit(let channel, let digit, let fromLegacy):
            let far = channels[channel]?.via ?? "cloud"
            var fields: [String: JSONValue] = ["type": .string("door_open"), "channel": .int(Int64(channel)), "from": .string(fromLegacy ? "legacy" : far)]
            if configuration.mqttIncludeDigits { fields["digit"] = .string(String(digit)) }
            publishEvent(fields)
        case .refused(let status, let reason):
            counters.failures += 1
            logger.debug("refusal not published as a channel state", metadata: ["status": "\(status)", "reason": "\(reason)"])
        }
    }

    public func uplink(_ status: UplinkStatus) {
        switch status {
        case .registered:
            cloud["claimed"] = .bool(true)
            cloud["registered"] = .bool(true)
            cloud["flow"] = .string("up")
        case .connecting:
            cloud["registered"] = .bool(false)
            cloud["flow"] = .string("connecting")
        case .down(let reason, _):
            cloud["registered"] = .bool(false)
            cloud["flow"] = .string("down")
            cloud["last_error"] = .string(reason)
        case .stopped:
            cloud["registered"] = .bool(false)
            cloud["flow"] = .string("down")
        }
        publish("cloud", cloud)
        publishStatus()
    }

    /// The uplink's health: the `cloud` topic's `health`; with the mesh on, `down` is a failover
    /// (new legacy calls go to the mesh) and the way back up a failback, each an `event`.
    public func health(_ state: CloudHealth.State) {
        let previous = cloud["health"]
        cloud["health"] = .string(state.rawValue)
        publish("cloud", cloud)
        guard configuration.meshEnabled else { return }
        if state == .down, previous != .string("down"), previous != nil {
            failedOver = true
            publishEvent(["type": .string("failover"), "reason": .string("the cloud uplink is down; legacy calls go to the mesh")])
        } else if state == .up, failedOver {
            failedOver = false
            publishEvent(["type": .string("failback"), "reason": .string("the cloud uplink is up again; new calls go to the cloud")])
        }
        publishMesh()
    }

    /// The mesh's peers, and how many calls run over it.
    public func mesh(peers: [MeshPeer]? = nil, activeCalls: Int? = nil) {
        if let peers {
            meshPeers = peers.map { peer in
                .object([
                    "device": .string(peer.device), "address": .string(peer.address.address), "interface": .string(peer.address.interface),
                    "port": .int(Int64(peer.port)), "numbers": .array(peer.numbers.map { .string($0) }),
                ])
            }
        }
        if let activeCalls { meshCalls = activeCalls }
        publishMesh()
    }

    private func publishMesh() {
        guard configuration.meshEnabled else { return }
        let active = failedOver || meshCalls > 0
        let next: [String: JSONValue] = ["state": .string(active ? "active" : "standby"), "peers": .array(meshPeers), "calls": .int(Int64(meshCalls))]
        guard next != mesh else { return }
        mesh = next
        publish("mesh", mesh)
    }

    /// The claim's outcome (the uplink does not exist before it).
    public func claim(claimed: Bool, error: String?) {
        cloud["claimed"] = .bool(claimed)
        if let error { cloud["last_error"] = .string(error) }
        publish("cloud", cloud)
        publishStatus()
    }

    public func trunk(_ state: TrunkSupervision.State, roundTrip: Duration?) {
        legacy["trunk"] = .string(state.rawValue)
        if let roundTrip {
            legacy["rtt_ms"] = .double((Double(roundTrip.components.seconds) * 1000 + Double(roundTrip.components.attoseconds) / 1e15).rounded())
        }
        publish("legacy", legacy)
        publishStatus()
    }

    public func event(_ fields: [String: JSONValue]) { publishEvent(fields) }

    /// A reloaded config: channels added, changed or removed (removed ones are cleared from the
    /// broker), `info` with the new hash. A channel in a call keeps its state.
    public func update(configuration new: BridgeConfiguration) {
        configuration = new
        let now = nowMilliseconds
        var next: [Int: ChannelStatus] = [:]
        for channel in new.channels {
            if let current = channels[channel.index], current.state != "idle", current.state != "disabled" {
                next[channel.index] = current
            } else {
                next[channel.index] = ChannelStatus(state: channel.enabled ? "idle" : "disabled", since: now, ts: now)
            }
        }
        channels = next
        republishAll()
        publishDiscovery()
    }

    /// Goes offline cleanly: `status` offline (retained), then a normal disconnect (no will).
    public func stop() {
        connection.publishAndStop("\(prefix)/status", JSONValue.object(["state": .string("offline"), "ts": .int(nowMilliseconds)]).text, retain: true)
    }

    // MARK: Publishing

    private var nowMilliseconds: Int64 { Int64(clock().timeIntervalSince1970 * 1000) }

    var overallState: String {
        let cloudUp = cloud["registered"] == .bool(true)
        let trunkDown = legacy["trunk"] == .string("down")
        return cloudUp && !trunkDown && problems.isEmpty ? "online" : "degraded"
    }

    private func publishStatus() {
        var fields: [String: JSONValue] = ["state": .string(overallState), "ts": .int(nowMilliseconds)]
        if !problems.isEmpty { fields["problems"] = .array(problems.sorted { $0.key < $1.key }.map { .string($0.value) }) }
        if recordBacklog.waiting > 0 || recordBacklog.summarised > 0 {
            fields["records_waiting"] = .int(Int64(recordBacklog.waiting))
            fields["records_summarised"] = .int(Int64(recordBacklog.summarised))
        }
        connection.publish("\(prefix)/status", JSONValue.object(fields).text, qos: 1, retain: true)
    }

    /// A problem an operator must act on (a broken identity file, a certificate about to expire),
    /// by `key`; nil clears it. Listed in `status` as `problems`, which makes the state `degraded`.
    public func problem(_ key: String, _ text: String?) {
        guard problems[key] != text else { return }
        problems[key] = text
        publishStatus()
    }

    /// The call records' state as it is now: a problem while they cannot be written, the counts in `status`.
    public func records(_ records: GatewayCallRecords) {
        self.records(problem: records.problem, backlog: records.backlog)
    }

    /// The call records' state: a problem while they cannot be written, the counts in `status`.
    public func records(problem text: String?, backlog: RecordBacklog) {
        let changed = backlog != recordBacklog
        recordBacklog = backlog
        if problems["records"] != text { problem("records", text) } else if changed { publishStatus() }
    }

    /// The device certificate's end (in `info`), and the alarm in `status` (`certificateAlarm`).
    public func certificate(expiresAt: Date, renewalDue: Date, renewalError: String?, now: Date) {
        if certificateExpiry != expiresAt {
            certificateExpiry = expiresAt
            publishInfo()
        }
        problem("certificate", Self.certificateAlarm(expiresAt: expiresAt, renewalDue: renewalDue, renewalError: renewalError, now: now))
    }

    /// The alarm, from 30 days before the certificate's end — once its renewal is due and has
    /// not happened (a certificate made short on purpose is no alarm while it renews on time).
    public static func certificateAlarm(expiresAt: Date, renewalDue: Date, renewalError: String?, now: Date) -> String? {
        let days = Int((expiresAt.timeIntervalSince(now) / 86400).rounded(.down))
        guard days < 30, now >= renewalDue else { return nil }
        let when = ISO8601DateFormatter().string(from: expiresAt)
        let left = expiresAt <= now ? "has expired" : days <= 0 ? "expires within a day" : days == 1 ? "expires in 1 day" : "expires in \(days) days"
        return "the device certificate \(left) (\(when))" + (renewalError.map { "; renewal failing: \($0)" } ?? "")
    }

    private func publishInfo() {
        var fields: [String: JSONValue] = [
            "version": .string(GatewayVersion.current), "channels": .int(Int64(configuration.channels.count)),
            "started_at": .int(Int64(startedAt.timeIntervalSince1970 * 1000)), "config_hash": .string(configuration.digest),
            "site": configuration.site.map { .string($0) } ?? .null,
        ]
        if let certificateExpiry { fields["certificate_expires_at"] = .int(Int64(certificateExpiry.timeIntervalSince1970 * 1000)) }
        publish("info", fields)
    }

    private func publish(_ topic: String, _ fields: [String: JSONValue]) {
        var fields = fields
        fields["ts"] = .int(nowMilliseconds)
        connection.publish("\(prefix)/\(topic)", JSONValue.object(fields).text, qos: 1, retain: true)
    }

    private func setChannel(_ index: Int, _ status: ChannelStatus) {
        channels[index] = status
        publishChannel(index)
    }

    private func publishChannel(_ index: Int) {
        guard let status = channels[index] else { return }
        var fields: [String: JSONValue] = ["state": .string(status.state), "since": .int(status.since)]
        if configuration.mqttRetainCaller, let peer = status.peer { fields["peer"] = .string(peer) }
        if let codec = status.codec { fields["codec"] = .string(codec) }
        if let srtp = status.srtp { fields["srtp"] = .bool(srtp) }
        if let via = status.via { fields["via"] = .string(via) }
        publish("channel/\(index)", fields)
    }

    private func publishEvent(_ fields: [String: JSONValue]) {
        var fields = fields
        fields["ts"] = .int(nowMilliseconds)
        connection.publish("\(prefix)/event", JSONValue.object(fields).text, qos: 1, retain: false)
    }

    private func publishStats(_ statistics: GatewayStatistics) {
        var fields: [String: JSONValue] = [
            "calls": .int(Int64(counters.calls)), "answered": .int(Int64(counters.answered)), "failures": .int(Int64(counters.failures)),
            "active": .int(Int64(statistics.activeCalls)), "jitter_ms": .double((statistics.jitterMilliseconds * 10).rounded() / 10),
            "refused_calls": .int(Int64(statistics.refusedCalls)), "refused_requests": .int(Int64(statistics.refusedRequests)),
        ]
        fields["packet_loss"] = .double(statistics.expected == 0 ? 0 : (Double(max(0, statistics.lost)) / Double(statistics.expected) * 10000).rounded() / 100)
        fields["ts"] = .int(nowMilliseconds)
        connection.publish("\(prefix)/stats", JSONValue.object(fields).text, qos: 0, retain: false)
    }

    // MARK: Home Assistant MQTT discovery

    private func subscribeHomeAssistant() {
        guard configuration.homeAssistantDiscovery else { return }
        connection.subscribe("homeassistant/status", qos: 1)
        publishDiscovery()
    }

    /// One device per gateway: a connectivity sensor for the cloud, a sensor for the overall
    /// state and one per channel (its `state`), all tied to `status` for availability. Channels
    /// that are gone get an empty retained config, which removes their entity.
    /// Home Assistant said it is (back) online: discovery again, but at most every 10 s, however
    /// often someone with publish rights on the broker says so.
    func publishDiscoveryOnRequest() {
        let now = ContinuousClock.now
        if let last = lastDiscoveryRequest, now - last < .seconds(10) { return }
        lastDiscoveryRequest = now
        publishDiscovery()
    }

    func publishDiscovery() {
        guard configuration.homeAssistantDiscovery else { return }
        let id = "symphony_" + configuration.gatewayID.map { $0.isLetter || $0.isNumber ? $0 : "_" }.map(String.init).joined()
        let device: JSONValue = .object([
            "identifiers": .array([.string(id)]), "name": .string("Symphony Bridge \(configuration.gatewayID)"),
            "manufacturer": .string("Symphony"), "model": .string("SYM-BRIDGE"), "sw_version": .string(GatewayVersion.current),
        ])
        func entity(_ name: String, _ uniqueID: String, _ stateTopic: String, _ template: String, extra: [String: JSONValue] = [:]) -> String {
            var fields: [String: JSONValue] = [
                "name": .string(name), "unique_id": .string(uniqueID), "state_topic": .string(stateTopic), "value_template": .string(template),
                "availability_topic": .string("\(prefix)/status"), "availability_template": .string("{{ 'offline' if value_json.state == 'offline' else 'online' }}"),
                "device": device,
            ]
            for (key, value) in extra { fields[key] = value }
            return JSONValue.object(fields).text
        }
        connection.publish("homeassistant/binary_sensor/\(id)_cloud/config", entity(
            "Cloud", "\(id)_cloud", "\(prefix)/cloud", "{{ 'ON' if value_json.registered else 'OFF' }}",
            extra: ["device_class": .string("connectivity")]), qos: 1, retain: true)
        connection.publish("homeassistant/sensor/\(id)_state/config", entity("State", "\(id)_state", "\(prefix)/status", "{{ value_json.state }}"), qos: 1, retain: true)
        for index in 1...14 {
            let topic = "homeassistant/sensor/\(id)_ch\(index)/config"
            if channels[index] != nil {
                connection.publish(topic, entity("Channel \(index)", "\(id)_ch\(index)", "\(prefix)/channel/\(index)", "{{ value_json.state }}"), qos: 1, retain: true)
            } else {
                connection.publish(topic, "", qos: 1, retain: true)
            }
        }
    }

    /// Every retained topic, as it stands: on start and after each (re)connect. Channels that are
    /// not (or no longer) configured get an empty retained payload, which removes them.
    func republishAll() {
        logger.info("MQTT connected; publishing the retained topics", metadata: ["prefix": "\(prefix)"])
        publishStatus()
        publishInfo()
        publish("cloud", cloud)
        publish("legacy", legacy)
        publish("mesh", mesh)
        for index in 1...14 {
            if channels[index] != nil {
                publishChannel(index)
            } else {
                connection.publish("\(prefix)/channel/\(index)", "", qos: 1, retain: true)
            }
        }
    }
}

/// What the `stats` topic reports about media, gathered by the caller.
public struct GatewayStatistics: Sendable {
    public var activeCalls: Int
    public var expected: UInt64
    public var lost: Int64
    public var jitterMilliseconds: Double
    /// Calls refused since start (busy channel, unknown number, cloud away, shutting down).
    public var refusedCalls: Int
    /// Requests the legacy side refused before they became calls: past the transaction limits,
    /// or from sources not in `[legacy] allow`.
    public var refusedRequests: Int

    public init(activeCalls: Int, expected: UInt64, lost: Int64, jitterMilliseconds: Double, refusedCalls: Int = 0, refusedRequests: Int = 0) {
        self.refusedCalls = refusedCalls
        self.refusedRequests = refusedRequests
        self.activeCalls = activeCalls
        self.expected = expected
        self.lost = lost
        self.jitterMilliseconds = jitterMilliseconds
    }
}

/// A JSON value with a stable serialization (keys sorted), for the status payloads.
public enum JSONValue: Sendable, Equatable {
    case string(String), int(Int64), double(Double), bool(Bool), null
    case array([JSONValue]), object([String: JSONValue])

    public var text: String {
        switch self {
        case .string(let s): return Self.quote(s)
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? String(d) : "null"
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .array(let items): return "[" + items.map(\.text).joined(separator: ",") + "]"
        case .object(let fields): return "{" + fields.sorted { $0.key < $1.key }.map { Self.quote($0.key) + ":" + $0.value.text }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
