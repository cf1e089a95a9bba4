public import SIP
public import SIPTransport

/// One contact bound to an address of record (RFC 3261 §10.3), with the RFC 5626 flow it
/// registered over.
public struct LocationBinding: Sendable, Equatable {
    /// The AOR's user part (one domain per core): `alice`, `gw1-ch3`.
    public var addressOfRecord: String
    /// The Contact as registered, without `expires`.
    public var contact: SIPNameAddress
    /// RFC 5626 §4.1: `+sip.instance` and `reg-id`; with both, the binding is keyed by them
    /// instead of by the contact URI, and a new flow replaces the old one.
    public var instance: String?
    public var regID: Int?
    /// Seconds on the location service's clock.
    public var expiresAt: Double
    public var callID: String
    public var cseq: UInt32
    /// The flow the REGISTER came over: where requests for this contact go (RFC 5626 §5.3).
    /// After a restart the flow's connection is gone; UDP flows still work, stream contacts wait
    /// for the client's re-registration (or are reached at their contact URI).
    public var flow: SIPFlow
    /// Who registered it: `user:alice`, `device:gw1`.
    public var principal: String

    var key: String {
        if let instance, let regID { return "\(instance)#\(regID)" }
        return contact.uri.description
    }

    public var isOutbound: Bool { instance != nil && regID != nil }
}

/// The registrar's storage (Kamailio's usrloc): bindings in memory, each AOR's contacts in
/// registration order, expiry on an injected clock, and the set of AORs changed since the last
/// write-back to SQLite (`takeChanges`), so that a REGISTER never waits for the disk.
public struct LocationService: Sendable {
    public private(set) var bindings: [String: [LocationBinding]] = [:]
    private var changed: Set<String> = []

    public init() {}

    public var count: Int { bindings.values.reduce(0) { $0 + $1.count } }

    /// The live contacts of `aor` at `now`, oldest registration first.
    public func lookup(_ aor: String, now: Double) -> [LocationBinding] {
        (bindings[aor] ?? []).filter { $0.expiresAt > now }
    }

    /// RFC 3261 §10.3 step 7, RFC 5626 §6: adds, refreshes or (expires 0) removes one binding.
    /// A refresh with the same Call-ID must carry a higher CSeq, else it is out of order; a new
    /// contact past `maxPerAOR` live ones is refused (refreshes and removals always pass).
    public mutating func update(_ binding: LocationBinding, expires: UInt32, now: Double, maxPerAOR: Int = .max) -> UpdateOutcome {
        var list = bindings[binding.addressOfRecord] ?? []
        if let index = list.firstIndex(where: { $0.key == binding.key }) {
            let old = list[index]
            if old.callID == binding.callID, binding.cseq <= old.cseq { return .outOfOrder }
            list.remove(at: index)
        } else if expires > 0, list.count(where: { $0.expiresAt > now }) >= maxPerAOR {
            return .tooMany
        }
        if expires > 0 {
            var stored = binding
            stored.expiresAt = now + Double(expires)
            list.append(stored)
        }
        bindings[binding.addressOfRecord] = list.isEmpty ? nil : list
        changed.insert(binding.addressOfRecord)
        return .updated
    }

    public enum UpdateOutcome: Sendable, Equatable { case updated, outOfOrder, tooMany }

    /// `Contact: *` with `Expires: 0` (§10.3 step 6).
    public mutating func removeAll(_ aor: String) {
        if bindings.removeValue(forKey: aor) != nil { changed.insert(aor) }
    }

    /// Drops bindings whose time is up; returns how many.
    @discardableResult
    public mutating func expire(now: Double) -> Int {
        var removed = 0
        for (aor, list) in bindings {
            let live = list.filter { $0.expiresAt > now }
            guard live.count != list.count else { continue }
            removed += list.count - live.count
            bindings[aor] = live.isEmpty ? nil : live
            changed.insert(aor)
        }
        return removed
    }

    /// AORs whose write-back failed: written again with the next changes.
    public mutating func markChanged(_ aors: [String]) {
        changed.formUnion(aors)
    }

    /// The AORs changed since the last call, with their current bindings (empty: delete).
    public mutating func takeChanges() -> [(aor: String, bindings: [LocationBinding])] {
        defer { changed = [] }
        return changed.sorted().map { ($0, bindings[$0] ?? []) }
    }

    /// Restores bindings loaded from storage (start-up).
    /// Bindings restored from disk live at most this long from now (a day: `max_expires_s` is at most 86,400).
    static let longestRestoredLifetime: Double = 86_400

    public mutating func restore(_ loaded: [LocationBinding], now: Double) {
        // A state file is outside input too: an expiry that is not a time (inf, NaN) or lies
        // further ahead than any registration may last is not restored.
        for binding in loaded where binding.expiresAt.isFinite && binding.expiresAt > now && binding.expiresAt - now <= Self.longestRestoredLifetime {
            bindings[binding.addressOfRecord, default: []].append(binding)
        }
    }
}
