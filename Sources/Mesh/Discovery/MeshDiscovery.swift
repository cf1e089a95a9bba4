public import NetworkAddress

/// One node of the site mesh as DNS-SD describes it (RFC 6763): an instance of
/// `_symphony-mesh._tcp` whose SRV names the SIPS port and host, whose AAAA is the node's
/// link-local address on that interface, and whose TXT says which site it belongs to and which
/// numbers it answers (its channels). `avahi-browse -rt _symphony-mesh._tcp` lists the nodes.
public struct MeshNode: Sendable, Equatable {
    /// The device name the cloud gave at claiming: also the CN of its certificate.
    public var device: String
    public var site: String
    /// The numbers this node answers on the mesh (its channels' numbers).
    public var numbers: [String]
    /// The SIPS port of the mesh listener.
    public var port: Int

    public init(device: String, site: String, numbers: [String], port: Int) {
        self.device = device
        self.site = site
        self.numbers = numbers
        self.port = port
    }
}

/// A node seen on an interface. Only a hint: the call proves who answers (mutual TLS with the
/// site CA, the certificate naming `device`).
public struct MeshPeer: Sendable, Equatable, Hashable {
    public var device: String
    public var numbers: [String]
    public var address: LinkLocalAddress
    public var port: Int
    /// When the records expire (the discovery clock's seconds).
    public var expiresAt: Double
    public var lastSeen: Double
    /// The records' TTL as heard (clamped, `MeshDiscovery.maxPeerTTL`), and how many of the
    /// refresh queries at 80, 85, 90 and 95 % of it were sent (RFC 6762 §5.2).
    public var ttl: Double = Double(MeshDiscovery.ttl)
    public var refreshesSent = 0

    public init(device: String, numbers: [String], address: LinkLocalAddress, port: Int, expiresAt: Double, lastSeen: Double, ttl: Double = Double(MeshDiscovery.ttl)) {
        self.device = device
        self.numbers = numbers
        self.address = address
        self.port = port
        self.expiresAt = expiresAt
        self.lastSeen = lastSeen
        self.ttl = ttl
    }

    /// When the next refresh query for this peer is due, if one still is.
    var nextRefresh: Double? {
        guard refreshesSent < 4 else { return nil }
        return expiresAt - ttl * (0.2 - 0.05 * Double(refreshesSent))
    }
}

extension [MeshPeer] {
    /// The peer answering `number`: the first one (the service lists the most recently heard first).
    public func answering(_ number: String) -> MeshPeer? {
        first { $0.numbers.contains(number) }
    }
}

/// mDNS/DNS-SD on one interface, as a value with an injected clock (seconds): what to send and
/// when, what the peer table holds. RFC 6762 rules it follows: announce twice a second apart at
/// start (§8.3) and on change, answer queries for the service with a 20–120 ms delay (§6: the PTR
/// is a shared record), query at 1, 2, 4 … s up to once an hour (§5.2), refresh peers' records at
/// 80 % of their TTL, forget records at their TTL, send goodbyes (TTL 0, §10.1) when stopping.
/// Not done: probing for name conflicts (§8.1): device names are unique, the cloud made them.
public struct MeshDiscovery: Sendable {
    public static let serviceType = "_symphony-mesh._tcp.local"
    public static let ttl: UInt32 = 120
    /// Peers' TTLs are taken up to this (ours is 120 s): a record that claims to live for 136
    /// years would never leave the table.
    public static let maxPeerTTL: UInt32 = 2 * ttl
    /// Peers kept per interface. A site has a handful of gateways; a host that invents device
    /// names gets no further (counted in `refusedPeers`).
    public static let maxPeers = 64

    public enum Output: Sendable, Equatable {
        /// Multicast this on the interface (to ff02::fb port 5353).
        case send(DNSMessage)
        /// The peer table changed.
        case peersChanged
    }

    public private(set) var node: MeshNode
    public let interface: String
    /// Our link-local address on the interface (16 bytes).
    public let address: [UInt8]
    public private(set) var peers: [String: MeshPeer] = [:]
    /// New peers refused because the table was full.
    public private(set) var refusedPeers: UInt64 = 0
    private var nextQuery: Double = 0
    private var queryInterval: Double = 1
    private var announcementsLeft = 2
    private var nextAnnouncement: Double = 0
    private var pendingAnswerAt: Double?
    /// A goodbye arrived in the message being handled: a query goes out to confirm it.
    private var goodbyeHeard = false

    public init(node: MeshNode, interface: String, address: [UInt8]) {
        precondition(address.count == 16)
        self.node = node
        self.interface = interface
        self.address = address
    }

    var instanceName: String { "\(node.device).\(Self.serviceType)" }
    var hostName: String { "symphony-\(node.device).local" }

    /// Our records: the PTR (shared), SRV, TXT and AAAA (unique: cache-flush).
    func records(ttl: UInt32 = Self.ttl) -> (answer: DNSMessage.Record, additional: [DNSMessage.Record]) {
        let txt = ["txtvers=1", "device=\(node.device)", "site=\(node.site)", "numbers=\(node.numbers.joined(separator: ","))", "transport=tls"]
        return (
            DNSMessage.Record(name: Self.serviceType, data: .ptr(instanceName), ttl: ttl),
            [
                DNSMessage.Record(name: instanceName, data: .srv(priority: 0, weight: 0, port: UInt16(node.port), target: hostName), cacheFlush: true, ttl: ttl),
                DNSMessage.Record(name: instanceName, data: .txt(txt), cacheFlush: true, ttl: ttl),
                DNSMessage.Record(name: hostName, data: .aaaa(address), cacheFlush: true, ttl: ttl),
            ])
    }

    func announcement(ttl: UInt32 = Self.ttl) -> DNSMessage {
        let (answer, additional) = records(ttl: ttl)
        return DNSMessage(flags: DNSMessage.responseFlags, answers: [answer] + additional)
    }

    func query() -> DNSMessage {
        DNSMessage(questions: [DNSMessage.Question(name: Self.serviceType, type: .ptr)])
    }

    /// The first announcement and query go at once.
    public mutating func start(at now: Double) -> [Output] {
        announcementsLeft = 2
        nextAnnouncement = now
        nextQuery = now
        queryInterval = 1
        return tick(at: now)
    }

    /// Our numbers changed (a reload): announce again.
    public mutating func update(node: MeshNode, at now: Double) -> [Output] {
        guard node != self.node else { return [] }
        self.node = node
        announcementsLeft = 2
        nextAnnouncement = now
        return tick(at: now)
    }

    /// Goodbye: our records with TTL 0.
    public func stop() -> [Output] {
        [.send(announcement(ttl: 0))]
    }

    /// Asks the site again now (the cloud just went down: know the peers as they are).
    public mutating func queryNow(at now: Double) -> [Output] {
        nextQuery = now
        queryInterval = 1
        return tick(at: now)
    }

    public mutating func tick(at now: Double) -> [Output] {
        var outputs: [Output] = []
        if announcementsLeft > 0, now >= nextAnnouncement {
            announcementsLeft -= 1
            nextAnnouncement = now + 1
            outputs.append(.send(announcement()))
            pendingAnswerAt = nil
        }
        if let at = pendingAnswerAt, now >= at {
            pendingAnswerAt = nil
            outputs.append(.send(announcement()))
        }
        if now >= nextQuery {
            outputs.append(.send(query()))
            nextQuery = now + queryInterval
            queryInterval = min(queryInterval * 2, 3600)
        }
        // A peer whose records are at 80, 85, 90 or 95 % of their life is asked about again,
        // once at each (RFC 6762 §5.2): one query covers every peer due.
        var refresh = false
        for (key, peer) in peers {
            guard let due = peer.nextRefresh, now >= due, now < peer.expiresAt else { continue }
            peers[key]?.refreshesSent += 1
            refresh = true
        }
        if refresh, !outputs.contains(where: { if case .send(let message) = $0 { !message.isResponse } else { false } }) {
            outputs.append(.send(query()))
        }
        let before = peers.count
        peers = peers.filter { $0.value.expiresAt > now }
        if peers.count != before { outputs.append(.peersChanged) }
        return outputs
    }

    /// A message from `source` (text, without zone) arrived on this interface. `jitter` in [0, 1)
    /// spreads our answer over RFC 6762 §6's 20–120 ms.
    public mutating func received(_ message: DNSMessage, from source: String, at now: Double, jitter: Double) -> [Output] {
        var outputs: [Output] = []
        if !message.isResponse {
            let asked = message.questions.contains { question in
                let name = question.name.lowercased()
                return (name == Self.serviceType && (question.type == DNSMessage.RecordType.ptr.rawValue || question.type == DNSMessage.RecordType.any.rawValue))
                    || name == instanceName.lowercased() || name == hostName.lowercased()
            }
            // Known-answer suppression (§7.1): the querier already has our PTR with at least half its TTL.
            let known = message.answers.contains { record in
                record.name.lowercased() == Self.serviceType && record.data == .ptr(instanceName) && record.ttl >= Self.ttl / 2
            }
            if asked, !known, pendingAnswerAt == nil { pendingAnswerAt = now + 0.02 + 0.1 * jitter }
            return outputs
        }
        goodbyeHeard = false
        if learn(message, source: source, at: now) { outputs.append(.peersChanged) }
        if goodbyeHeard { outputs.append(.send(query())) }
        return outputs
    }

    /// Takes the peers a response describes; true if the table changed.
    private mutating func learn(_ message: DNSMessage, source: String, at now: Double) -> Bool {
        let records = message.answers + message.additionals
        var instances: [String: UInt32] = [:]
        for record in records where record.name.lowercased() == Self.serviceType {
            if case .ptr(let instance) = record.data { instances[instance.lowercased()] = record.ttl }
        }
        // SRV and TXT also arrive without the PTR (an answer to a query for the instance).
        for record in records {
            switch record.data {
            case .srv, .txt:
                let name = record.name.lowercased()
                if name.hasSuffix("." + Self.serviceType), instances[name] == nil { instances[name] = record.ttl }
            default: continue
            }
        }
        var changed = false
        for (instance, ptrTTL) in instances where instance != instanceName.lowercased() {
            var port: Int?, target: String?, txt: [String: String] = [:], ttl = min(ptrTTL, Self.maxPeerTTL)
            for record in records where record.name.lowercased() == instance {
                switch record.data {
                case .srv(_, _, let p, let t): (port, target, ttl) = (Int(p), t.lowercased(), min(ttl, record.ttl))
                case .txt(let strings): txt.merge(Self.attributes(strings)) { first, _ in first }
                default: continue
                }
            }
            guard let device = txt["device"], !device.isEmpty, device != node.device else { continue }
            let key = device
            if ttl == 0 {
                // A goodbye (RFC 6762 §10.1): kept one more second, not dropped at once, and asked
                // about — anyone on the link can send a goodbye in a peer's name, and a peer that
                // is still there answers the query and stays.
                if let peer = peers[key], peer.expiresAt > now + 1 {
                    peers[key]?.expiresAt = now + 1
                    peers[key]?.ttl = 1
                    peers[key]?.refreshesSent = 4
                    goodbyeHeard = true
                }
                continue
            }
            guard txt["site"] == node.site, let port, let target else { continue }
            var addressText: String?
            for record in records where record.name.lowercased() == target {
                if case .aaaa(let bytes) = record.data, bytes.count == 16, bytes[0] == 0xFE, bytes[1] & 0xC0 == 0x80 { addressText = Self.text(bytes) }
            }
            guard let address = try? LinkLocalAddress(addressText ?? source, interface: interface), port > 0 else { continue }
            guard peers[key] != nil || peers.count < Self.maxPeers else {
                refusedPeers &+= 1
                continue
            }
            let numbers = (txt["numbers"] ?? "").split(separator: ",").map(String.init)
            let peer = MeshPeer(device: device, numbers: numbers, address: address, port: port, expiresAt: now + Double(ttl), lastSeen: now, ttl: Double(ttl))
            let old = peers[key]
            peers[key] = peer
            if old == nil || old!.numbers != numbers || old!.address != address || old!.port != port { changed = true }
        }
        return changed
    }

    /// The key/value attributes of DNS-SD TXT strings (RFC 6763 §6.3–6.5): the key is what comes
    /// before the first `=`, case-insensitive; a string without `=` is a key with an empty value;
    /// a string with no key (`=`, `=x`, empty) is ignored; the first occurrence of a key wins.
    public static func attributes(_ strings: [String]) -> [String: String] {
        var attributes: [String: String] = [:]
        for string in strings {
            let key: Substring
            let value: Substring
            if let equals = string.firstIndex(of: "=") {
                key = string[..<equals]
                value = string[string.index(after: equals)...]
            } else {
                key = string[...]
                value = ""
            }
            guard !key.isEmpty else { continue }
            let name = key.lowercased()
            if attributes[name] == nil { attributes[name] = String(value) }
        }
        return attributes
    }

    /// RFC 5952 text of 16 address bytes (lowercase, longest zero run as `::`).
    public static func text(_ bytes: [UInt8]) -> String {
        guard bytes.count == 16 else { return "" }
        let groups = (0..<8).map { UInt16(bytes[$0 * 2]) << 8 | UInt16(bytes[$0 * 2 + 1]) }
        var best = (start: -1, length: 0), run = (start: -1, length: 0)
        for (index, group) in groups.enumerated() {
            if group == 0 {
                run = run.start < 0 ? (index, 1) : (run.start, run.length + 1)
                if run.length > best.length { best = run }
            } else {
                run = (-1, 0)
            }
        }
        if best.length < 2 { best = (-1, 0) }
        var parts: [String] = []
        var index = 0
        while index < 8 {
            if index == best.start {
                parts.append(index == 0 ? ":" : "")
                index += best.length
                if index == 8 { parts.append("") }
                continue
            }
            parts.append(String(groups[index], radix: 16))
            index += 1
        }
        return parts.joined(separator: ":")
    }
}
