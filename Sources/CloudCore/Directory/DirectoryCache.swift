import NIOConcurrencyHelpers

/// A short-lived memory of directory answers on the call path (HA1 values, who exists, what a
/// name calls, forwarding rules). A GRDB read costs a pool checkout, a queue hop and a read
/// transaction — about 40 µs here, more than the rest of a REGISTER — while the directory
/// changes rarely. Changes made through this process clear it at once; changes by another
/// process (`symphony-cloud-core admin`) are seen within `lifetime` (docs/CLOUD-CORE.md).
final class DirectoryCache<Value: Sendable>: Sendable {
    let lifetime: Duration
    /// Past this many entries the cache starts over: a scan of random names cannot grow it.
    let capacity: Int
    private let entries = NIOLockedValueBox<[String: (value: Value, loaded: ContinuousClock.Instant)]>([:])

    init(lifetime: Duration = .seconds(2), capacity: Int = 50_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    func value(_ key: String, load: () throws -> Value) rethrows -> Value {
        let now = ContinuousClock.now
        if let entry = entries.withLockedValue({ $0[key] }), now - entry.loaded < lifetime { return entry.value }
        let value = try load()
        entries.withLockedValue { entries in
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[key] = (value, now)
        }
        return value
    }

    func removeAll() {
        entries.withLockedValue { $0.removeAll() }
    }
}
