import Mesh
import NetworkAddress
import Testing

@Suite("Mesh discovery (DNS-SD over mDNS)")
struct MeshDiscoveryTests {
    static let ours: [UInt8] = [0xFE, 0x80] + Array(repeating: 0, count: 13) + [1]
    static let theirs: [UInt8] = [0xFE, 0x80] + Array(repeating: 0, count: 13) + [2]

    static func discovery(site: String = "lobby") -> MeshDiscovery {
        MeshDiscovery(node: MeshNode(device: "gw1", site: site, numbers: ["101"], port: 5061), interface: "eth0", address: ours)
    }

    /// What gw2 announces on the link.
    static func announcement(device: String = "gw2", site: String = "lobby", numbers: String = "201,202", ttl: UInt32 = 120) -> DNSMessage {
        let instance = "\(device).\(MeshDiscovery.serviceType)"
        return DNSMessage(flags: DNSMessage.responseFlags, answers: [
            .init(name: MeshDiscovery.serviceType, data: .ptr(instance), ttl: ttl),
            .init(name: instance, data: .srv(priority: 0, weight: 0, port: 5071, target: "symphony-\(device).local"), cacheFlush: true, ttl: ttl),
            .init(name: instance, data: .txt(["txtvers=1", "device=\(device)", "site=\(site)", "numbers=\(numbers)"]), cacheFlush: true, ttl: ttl),
            .init(name: "symphony-\(device).local", data: .aaaa(theirs), cacheFlush: true, ttl: ttl),
        ])
    }

    static func sent(_ outputs: [MeshDiscovery.Output]) -> [DNSMessage] {
        outputs.compactMap { if case .send(let message) = $0 { message } else { nil } }
    }

    @Test func startAnnouncesTwiceASecondApartAndQueriesWithGrowingIntervals() {
        var discovery = Self.discovery()
        let first = Self.sent(discovery.start(at: 0))
        #expect(first.count == 2 && first[0].isResponse && !first[1].isResponse, "an announcement and a query at once")
        let announced = first[0].answers
        #expect(announced.contains { $0.data == .ptr("gw1.\(MeshDiscovery.serviceType)") })
        #expect(announced.contains { $0.data == .srv(priority: 0, weight: 0, port: 5061, target: "symphony-gw1.local") && $0.cacheFlush })
        #expect(announced.contains { $0.data == .aaaa(Self.ours) })
        #expect(announced.contains { if case .txt(let strings) = $0.data { strings.contains("site=lobby") && strings.contains("numbers=101") } else { false } })
        #expect(Self.sent(discovery.tick(at: 0.5)).isEmpty)
        let second = Self.sent(discovery.tick(at: 1.0))
        #expect(second.filter(\.isResponse).count == 1 && second.filter { !$0.isResponse }.count == 1, "the second announcement and the second query")
        #expect(Self.sent(discovery.tick(at: 2.0)).isEmpty, "no third announcement; the next query after 2 s")
        #expect(Self.sent(discovery.tick(at: 3.0)).count == 1)
        #expect(Self.sent(discovery.tick(at: 6.0)).isEmpty)
        #expect(Self.sent(discovery.tick(at: 7.0)).count == 1, "then after 4 s")
    }

    @Test func aPeerOfTheSiteIsLearnedWithTheInterfaceAsScope() throws {
        var discovery = Self.discovery()
        _ = discovery.start(at: 0)
        let outputs = discovery.received(Self.announcement(), from: "fe80::2", at: 1, jitter: 0)
        #expect(outputs.contains(.peersChanged))
        let peer = try #require(discovery.peers["gw2"])
        #expect(peer.numbers == ["201", "202"] && peer.port == 5071)
        #expect(peer.address.address == "fe80::2" && peer.address.interface == "eth0")
        #expect(peer.expiresAt == 121)
        #expect(discovery.received(Self.announcement(), from: "fe80::2", at: 2, jitter: 0).isEmpty, "the same records again change nothing")
    }

    @Test("A goodbye in a live peer's name (anyone on the link can send one) does not make us forget it: it answers the query")
    func aForgedGoodbyeIsAnsweredByTheLivePeer() {
        var discovery = Self.discovery()
        _ = discovery.received(Self.announcement(), from: "fe80::2", at: 0, jitter: 0)
        _ = discovery.received(Self.announcement(ttl: 0), from: "fe80::66", at: 5, jitter: 0)
        _ = discovery.received(Self.announcement(), from: "fe80::2", at: 5.2, jitter: 0)
        #expect(!discovery.tick(at: 7).contains(.peersChanged))
        #expect(discovery.peers["gw2"] != nil && (discovery.peers["gw2"]?.expiresAt ?? 0) > 100)
    }

    @Test func otherSitesAndOurOwnRecordsAreIgnored() {
        var discovery = Self.discovery()
        _ = discovery.received(Self.announcement(site: "elsewhere"), from: "fe80::2", at: 1, jitter: 0)
        _ = discovery.received(Self.announcement(device: "gw1"), from: "fe80::1", at: 1, jitter: 0)
        #expect(discovery.peers.isEmpty)
    }

    @Test func aGoodbyeOrTheTTLRemovesAPeer() {
        var discovery = Self.discovery()
        _ = discovery.received(Self.announcement(), from: "fe80::2", at: 0, jitter: 0)
        // RFC 6762 §10.1: a goodbye leaves the peer one more second and asks about it.
        let outputs = discovery.received(Self.announcement(ttl: 0), from: "fe80::2", at: 5, jitter: 0)
        #expect(Self.sent(outputs).contains { !$0.isResponse }, "a query to confirm the goodbye")
        #expect(discovery.peers["gw2"] != nil)
        #expect(discovery.tick(at: 6.1).contains(.peersChanged))
        #expect(discovery.peers.isEmpty, "gone a second after its goodbye")
        _ = discovery.received(Self.announcement(ttl: 10), from: "fe80::2", at: 20, jitter: 0)
        #expect(discovery.peers["gw2"] != nil)
        #expect(discovery.tick(at: 30.5).contains(.peersChanged))
        #expect(discovery.peers.isEmpty, "forgotten at its TTL")
    }

    @Test func aQueryForTheServiceIsAnsweredAfter20To120Milliseconds() {
        var discovery = Self.discovery()
        _ = discovery.start(at: 0)
        _ = discovery.tick(at: 1)  // both announcements out
        let query = DNSMessage(questions: [.init(name: MeshDiscovery.serviceType, type: .ptr)])
        #expect(discovery.received(query, from: "fe80::2", at: 10, jitter: 0.5).isEmpty, "not at once: the PTR is shared (RFC 6762 §6)")
        #expect(Self.sent(discovery.tick(at: 10.05)).filter(\.isResponse).isEmpty)
        #expect(Self.sent(discovery.tick(at: 10.07)).filter(\.isResponse).count == 1, "answered at 20 ms + half of 100 ms")
        // Known-answer suppression: a querier that holds our PTR with most of its TTL gets no answer.
        var known = query
        known.answers = [.init(name: MeshDiscovery.serviceType, data: .ptr("gw1.\(MeshDiscovery.serviceType)"), ttl: 100)]
        _ = discovery.received(known, from: "fe80::2", at: 20, jitter: 0)
        #expect(Self.sent(discovery.tick(at: 20.2)).filter(\.isResponse).isEmpty)
    }

    @Test func stoppingSaysGoodbye() {
        let goodbye = Self.sent(Self.discovery().stop())
        #expect(goodbye.count == 1 && goodbye[0].answers.allSatisfy { $0.ttl == 0 } && !goodbye[0].answers.isEmpty)
    }

    @Test func newNumbersAreAnnouncedAgain() {
        var discovery = Self.discovery()
        _ = discovery.start(at: 0)
        _ = discovery.tick(at: 1)
        let changed = Self.sent(discovery.update(node: MeshNode(device: "gw1", site: "lobby", numbers: ["101", "103"], port: 5061), at: 50))
        #expect(changed.contains { message in message.answers.contains { if case .txt(let t) = $0.data { t.contains("numbers=101,103") } else { false } } })
    }

    @Test func addressesAreWrittenAsRFC5952Says() {
        #expect(MeshDiscovery.text(Self.ours) == "fe80::1")
        #expect(MeshDiscovery.text([0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x1A, 0x2B, 0xFF, 0xFE, 0x3C, 0x4D, 0x5E]) == "fe80::21a:2bff:fe3c:4d5e")
        #expect(MeshDiscovery.text(Array(repeating: 0, count: 15) + [1]) == "::1")
        #expect(MeshDiscovery.text([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]) == "2001:db8:0:1::1")
    }
}

@Suite("Mesh ring plans")
struct MeshRingPlanTests {
    @Test func parallelRingsEveryoneOnce() {
        var plan = MeshRingPlan(mode: .parallel, targets: ["201", "202"])
        #expect(plan.start() == [0, 1])
        #expect(plan.next() == nil)
    }

    @Test func aChainWrapsAroundWhileSomeoneRang() {
        var plan = MeshRingPlan(mode: .chain, targets: ["201", "202", "203"])
        #expect(plan.start() == [0])
        plan.rang()
        #expect(plan.next() == 1)
        #expect(plan.next() == 2)
        #expect(plan.next() == 0, "wraps to the first")
        #expect(plan.next() == 1)
        #expect(plan.next() == 2)
        #expect(plan.next() == nil, "a whole round without anyone ringing ends the chain")
    }

    @Test func aChainWhereNobodyRingsEndsAfterOneRound() {
        var plan = MeshRingPlan(mode: .chain, targets: ["201", "202"])
        #expect(plan.next() == 1)
        #expect(plan.next() == nil)
        #expect(MeshRingPlan(mode: .chain, targets: []).start().isEmpty)
    }
}

extension MeshDiscoveryTests {
    /// gw2's announcement with TXT strings of the caller's choosing.
    static func announcement(txt: [String], device: String = "gw2", ttl: UInt32 = 120) -> DNSMessage {
        let instance = "\(device).\(MeshDiscovery.serviceType)"
        return DNSMessage(flags: DNSMessage.responseFlags, answers: [
            .init(name: MeshDiscovery.serviceType, data: .ptr(instance), ttl: ttl),
            .init(name: instance, data: .srv(priority: 0, weight: 0, port: 5071, target: "symphony-\(device).local"), cacheFlush: true, ttl: ttl),
            .init(name: instance, data: .txt(txt), cacheFlush: true, ttl: ttl),
            .init(name: "symphony-\(device).local", data: .aaaa(theirs), cacheFlush: true, ttl: ttl),
        ])
    }

    @Test("TXT strings with no key (=, ==, =x), empty ones and 255-byte ones are taken or skipped, never a crash (was: Index out of range on \"=\")",
          arguments: [["="], ["==", "=x"], [""], ["=", "device=gw2", "site=lobby", "numbers=201"], [String(repeating: "=", count: 255)],
                      ["device=" + String(repeating: "d", count: 248)], ["DEVICE=gw2", "Site=lobby", "device=evil", "numbers"]])
    func txtWithoutKeys(txt: [String]) {
        var discovery = Self.discovery()
        _ = discovery.received(Self.announcement(txt: txt), from: "fe80::2", at: 1, jitter: 0)
        let attributes = MeshDiscovery.attributes(txt)
        #expect(!attributes.keys.contains(""))
        if attributes["device"] == "gw2", attributes["site"] == "lobby" {
            #expect(discovery.peers["gw2"] != nil, "a good record beside bad strings still counts; the first key wins")
        }
    }

    @Test func txtAttributesFollowRFC6763() {
        #expect(MeshDiscovery.attributes(["a=1", "A=2", "b", "=3", "c==4", ""]) == ["a": "1", "b": "", "c": "=4"])
    }

    @Test("A peer's TTL counts at most 240 s: a record that claims 136 years leaves the table like any other")
    func hugeTTL() {
        var discovery = Self.discovery()
        _ = discovery.received(Self.announcement(ttl: .max), from: "fe80::2", at: 0, jitter: 0)
        #expect(discovery.peers["gw2"]?.expiresAt == Double(MeshDiscovery.maxPeerTTL))
        #expect(discovery.tick(at: Double(MeshDiscovery.maxPeerTTL) + 1).contains(.peersChanged))
        #expect(discovery.peers.isEmpty)
    }

    @Test("Invented device names fill the table only up to its cap; the refusals are counted")
    func peerTableIsCapped() {
        var discovery = Self.discovery()
        for n in 0..<(MeshDiscovery.maxPeers + 50) {
            _ = discovery.received(Self.announcement(device: "fake\(n)"), from: "fe80::2", at: 1, jitter: 0)
        }
        #expect(discovery.peers.count == MeshDiscovery.maxPeers)
        #expect(discovery.refusedPeers == 50)
        // A known peer still refreshes.
        _ = discovery.received(Self.announcement(device: "fake0"), from: "fe80::2", at: 50, jitter: 0)
        #expect(discovery.peers["fake0"]?.lastSeen == 50)
    }

    @Test("A peer near the end of its TTL is asked about once at 80, 85, 90 and 95 % (RFC 6762 §5.2), not on every tick")
    func refreshQueriesAreFour() {
        var discovery = Self.discovery()
        _ = discovery.start(at: 0)
        _ = discovery.received(Self.announcement(ttl: 20), from: "fe80::2", at: 0, jitter: 0)
        var queries = 0
        var t = 0.05
        // Queries of the start-up schedule (1, 2, 4, 8 s) land in 0–16 s; count those after.
        while t < 25 {
            let sent = Self.sent(discovery.tick(at: t)).filter { !$0.isResponse }
            if t > 15.9 { queries += sent.count }
            t += 0.05
        }
        #expect(queries == 4, "\(queries) queries in the last 20 % of the peer's life")
    }
}
