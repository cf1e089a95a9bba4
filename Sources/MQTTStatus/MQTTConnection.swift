import CMosquitto
import CrashContext
import Foundation
import NIOConcurrencyHelpers

/// One MQTT connection through libmosquitto: its network loop runs on a thread of its own —
/// ours, with `poll()`, not libmosquitto's `mosquitto_loop_start`, whose `select()` refuses a
/// socket numbered 1024 or above (a daemon holding many connections lost its MQTT status for
/// good: `MOSQ_ERR_INVAL` at every reconnect) — reconnects with exponential backoff, and hands
/// what happens to Swift as an `AsyncStream` of events. `publish` is thread-safe and never blocks on
/// the network (it queues); with the broker away it fails at once, and the caller rewrites its
/// retained state on the next `.connected`. Nothing here ever waits on the broker, so a broker
/// that is down never holds up a call.
public final class MQTTConnection: @unchecked Sendable {
    /// The largest message taken from a subscription (docs/RELIABILITY.md).
    public static let maxIncomingPayload = 4096

    public struct Settings: Sendable {
        public var host: String
        public var port: Int
        public var clientID: String
        public var username: String?
        public var password: String?
        /// TLS toward the broker, verifying it against `caFile` (nil: the system's roots).
        public var tls = false
        public var caFile: String?
        /// The last will: published by the broker when the connection dies without a goodbye.
        public var will: (topic: String, payload: String, retain: Bool)?
        public var keepAliveSeconds: Int32 = 30
        public var reconnectDelay: (min: UInt32, max: UInt32) = (1, 30)

        public init(host: String, port: Int, clientID: String) {
            self.host = host
            self.port = port
            self.clientID = clientID
        }
    }

    public enum Event: Sendable, Equatable {
        case connected
        case disconnected(code: Int32)
        case message(topic: String, payload: [UInt8], retained: Bool)
    }

    public enum ConnectionError: Error, CustomStringConvertible {
        case setup(String)

        public var description: String {
            switch self { case .setup(let what): "MQTT: \(what)" }
        }
    }

    public let settings: Settings
    public let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let handle: OpaquePointer
    /// `looping`: the network thread runs, so other threads may call into libmosquitto (before
    /// it, libmosquitto is not in threaded mode and a publish from another thread races the
    /// connect — seen as a client that never connected).
    private let state = NIOLockedValueBox((connected: false, started: false, stopped: false, looping: false))
    /// Signalled when the network thread has ended (`stop` waits for it).
    private let finished = DispatchSemaphore(value: 0)
    /// A pipe whose read end the network thread polls with the socket: a publish from another
    /// thread writes a byte to it, so that what it queued goes out at once, not at the next poll.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    /// The latest message ids the broker acknowledged (QoS 1 PUBACK; the last 64), for `publishAndStop`.
    private let acknowledged = NIOLockedValueBox<[Int32]>([])

    private static let libraryReady: Bool = {
        mosquitto_lib_init()
        return true
    }()

    public init(_ settings: Settings) throws(ConnectionError) {
        _ = Self.libraryReady
        self.settings = settings
        (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(1024))
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw .setup("cannot create the wake-up pipe") }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        (wakeRead, wakeWrite) = (ends[0], ends[1])
        guard let handle = mosquitto_new(settings.clientID, true, nil) else {
            close(ends[0])
            close(ends[1])
            throw .setup("cannot create a client")
        }
        self.handle = handle
        mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
        _ = mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, Int32(MQTT_PROTOCOL_V311))
        if let will = settings.will {
            let rc = will.payload.withCString { mosquitto_will_set(handle, will.topic, Int32(strlen($0)), $0, 1, will.retain) }
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw .setup("last will refused: \(Self.describe(rc))") }
        }
        if let username = settings.username {
            let rc = mosquitto_username_pw_set(handle, username, settings.password)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw .setup("credentials refused: \(Self.describe(rc))") }
        }
        if settings.tls {
            let rc = mosquitto_tls_set(handle, settings.caFile, settings.caFile == nil ? "/etc/ssl/certs" : nil, nil, nil, nil)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw .setup("TLS setup refused: \(Self.describe(rc))") }
        }
        _ = mosquitto_reconnect_delay_set(handle, settings.reconnectDelay.min, settings.reconnectDelay.max, true)
        mosquitto_connect_callback_set(handle) { _, context, code in
            guard let context else { return }
            Unmanaged<MQTTConnection>.fromOpaque(context).takeUnretainedValue().connectionChanged(up: code == 0, code: code)
        }
        mosquitto_publish_callback_set(handle) { _, context, mid in
            guard let context else { return }
            Unmanaged<MQTTConnection>.fromOpaque(context).takeUnretainedValue().acknowledged.withLockedValue { recent in
                recent.append(mid)
                if recent.count > 64 { recent.removeFirst(recent.count - 64) }
            }
        }
        mosquitto_disconnect_callback_set(handle) { _, context, code in
            guard let context else { return }
            Unmanaged<MQTTConnection>.fromOpaque(context).takeUnretainedValue().connectionChanged(up: false, code: code)
        }
        mosquitto_message_callback_set(handle) { _, context, message in
            guard let context, let message else { return }
            // What the daemons subscribe to is a word or two ("online"); a broker lets anyone with
            // publish rights send up to 256 MiB, so larger payloads are not even copied.
            let length = Int(message.pointee.payloadlen)
            guard message.pointee.topic != nil, (0...MQTTConnection.maxIncomingPayload).contains(length) else { return }
            let topic = String(cString: message.pointee.topic)
            CrashContext.set("MQTT message on \(topic.prefix(120))")
            let payload = message.pointee.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: length)) } ?? []
            Unmanaged<MQTTConnection>.fromOpaque(context).takeUnretainedValue()
                .continuation.yield(.message(topic: topic, payload: payload, retained: message.pointee.retain))
        }
    }

    deinit {
        stop()
        mosquitto_destroy(handle)
        close(wakeRead)
        close(wakeWrite)
    }

    /// Wakes the network thread (a full pipe already holds a wake-up: nothing lost).
    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    /// Starts the network thread and the first connection attempt; returns at once. A broker
    /// that is not there yet is retried with the reconnect delay.
    public func start() {
        let first = state.withLockedValue { s in
            defer { s.started = true }
            return !s.started
        }
        guard first else { return }
        // Threaded mode: publishes from other threads while our thread reads and writes.
        _ = mosquitto_threaded_set(handle, true)
        state.withLockedValue { $0.looping = true }
        let thread = Thread { [self] in self.networkLoop() }
        thread.name = "mqtt"
        thread.start()
    }

    /// The network loop: connect (non-blocking), then `poll()` the socket and let libmosquitto
    /// read, write and keep the connection alive (`mosquitto_loop_read/write/misc`); on a lost
    /// connection, wait the reconnect delay (doubling up to its maximum) and connect again.
    private func networkLoop() {
        defer { finished.signal() }
        var delay = Double(max(settings.reconnectDelay.min, 1))
        var nextAttempt = ContinuousClock.now  // monotonic: a step of the wall clock does not stall reconnecting
        var everConnected = false
        var socketOpen = false
        while true {
            let stopped = state.withLockedValue { $0.stopped }
            if !socketOpen {
                if stopped { return }
                guard ContinuousClock.now >= nextAttempt else {
                    usleep(100_000)
                    continue
                }
                let rc = everConnected
                    ? mosquitto_reconnect_async(handle)
                    : mosquitto_connect_async(handle, settings.host, Int32(settings.port), settings.keepAliveSeconds)
                everConnected = true
                if rc != MOSQ_ERR_SUCCESS.rawValue {
                    continuation.yield(.disconnected(code: rc))
                    nextAttempt = ContinuousClock.now + .seconds(delay)
                    delay = min(delay * 2, Double(max(settings.reconnectDelay.max, settings.reconnectDelay.min)))
                    continue
                }
                socketOpen = true
            }
            let fd = mosquitto_socket(handle)
            guard fd >= 0 else {
                socketOpen = false
                nextAttempt = ContinuousClock.now + .seconds(delay)
                continue
            }
            var descriptors = [
                pollfd(fd: fd, events: Int16(POLLIN) | (mosquitto_want_write(handle) ? Int16(POLLOUT) : 0), revents: 0),
                pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
            ]
            _ = poll(&descriptors, 2, 100)
            if descriptors[1].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while read(wakeRead, &drain, drain.count) > 0 {}
            }
            var rc = MOSQ_ERR_SUCCESS.rawValue
            if descriptors[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { rc = mosquitto_loop_read(handle, 1) }
            if rc == MOSQ_ERR_SUCCESS.rawValue, mosquitto_want_write(handle) { rc = mosquitto_loop_write(handle, 1) }
            if rc == MOSQ_ERR_SUCCESS.rawValue { rc = mosquitto_loop_misc(handle) }
            if stopped {
                // `stop` queued the DISCONNECT: it went out with the write above.
                return
            }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                // The connection is gone (libmosquitto closed the socket and called back).
                if state.withLockedValue({ $0.connected }) { connectionChanged(up: false, code: rc) }
                socketOpen = false
                nextAttempt = ContinuousClock.now + .seconds(delay)
                delay = min(delay * 2, Double(max(settings.reconnectDelay.max, settings.reconnectDelay.min)))
            } else if state.withLockedValue({ $0.connected }) {
                delay = Double(max(settings.reconnectDelay.min, 1))
            }
        }
    }

    /// Whether other threads may call into libmosquitto now.
    private var looping: Bool { state.withLockedValue { $0.looping && !$0.stopped } }

    public var isConnected: Bool { state.withLockedValue { $0.connected } }

    /// Queues a message; false when there is no connection (it is not kept for later).
    @discardableResult
    public func publish(_ topic: String, _ payload: String, qos: Int32 = 0, retain: Bool = false) -> Bool {
        guard looping else { return false }
        let bytes = Array(payload.utf8)
        let rc = bytes.withUnsafeBytes { mosquitto_publish(handle, nil, topic, Int32(bytes.count), $0.baseAddress, qos, retain) }
        wake()
        return rc == MOSQ_ERR_SUCCESS.rawValue
    }

    public func subscribe(_ pattern: String, qos: Int32 = 0) {
        guard looping else { return }
        _ = mosquitto_subscribe(handle, nil, pattern, qos)
        wake()
    }

    /// Publishes a last message (QoS 1) and waits — at most `timeout` — until the broker has
    /// acknowledged it, then stops: a disconnect right after a publish can close the connection
    /// before the message went out, and the broker then publishes the will instead.
    public func publishAndStop(_ topic: String, _ payload: String, retain: Bool, timeout: Duration = .seconds(2)) {
        if state.withLockedValue({ $0.connected && !$0.stopped }) {
            var mid: Int32 = 0
            let bytes = Array(payload.utf8)
            let rc = bytes.withUnsafeBytes { mosquitto_publish(handle, &mid, topic, Int32(bytes.count), $0.baseAddress, 1, retain) }
            wake()
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                let deadline = ContinuousClock.now + timeout
                while ContinuousClock.now < deadline, !acknowledged.withLockedValue({ $0.contains(mid) }) {
                    usleep(5000)
                }
            }
        }
        stop()
    }

    /// Disconnects cleanly (the broker does not publish the will) and stops the thread.
    public func stop() {
        let wasRunning = state.withLockedValue { s in
            defer { s.stopped = true }
            return s.started && !s.stopped
        }
        guard wasRunning else { return }
        _ = mosquitto_disconnect(handle)
        wake()
        // The thread sends the DISCONNECT and ends.
        _ = finished.wait(timeout: .now() + 2)
        continuation.finish()
    }

    private func connectionChanged(up: Bool, code: Int32) {
        // Said once per change (a lost connection is seen by the callback and by the loop).
        let changed = state.withLockedValue { s in
            defer { s.connected = up }
            return s.connected != up || up
        }
        if changed { continuation.yield(up ? .connected : .disconnected(code: code)) }
    }

    static func describe(_ code: Int32) -> String { String(cString: mosquitto_strerror(code)) }
}
