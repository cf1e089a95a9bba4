import Foundation
import NIOCore
import NIOPosix
import PeerTestSupport
import SIP
@testable import SIPTransport
import NetworkAddress
import Testing

/// Inbound stream connections are a resource anyone who reaches the port can take (issue 16):
/// capped per address and in all, closed when they do not finish their TLS handshake or send a
/// valid message in time, reported once a minute. The rules alone, then on real sockets.
@Suite("Stream connection admission")
struct ConnectionAdmissionTests {
    @Test func capsPerAddressAndInAllAndTheirPlacesFreedOnClose() {
        var admission = ConnectionAdmission(limits: .init(maxConnections: 4, maxPerAddress: 2))
        let verdicts = [(1, "192.0.2.1"), (2, "192.0.2.1"), (3, "192.0.2.1"), (4, "192.0.2.2"), (5, "192.0.2.3")]
            .map { admission.admit(UInt64($0.0), from: $0.1) }
        #expect(verdicts == [.accept, .accept, .refuseAddress, .accept, .accept])
        for id: UInt64 in [1, 2, 4, 5] { admission.proven(id) }
        let full = admission.admit(6, from: "192.0.2.4")
        #expect(full == .refuseGlobal, "every open connection has proven itself: nobody to make room")
        admission.closed(1)
        admission.closed(1)  // twice: nothing more
        #expect(admission.count(from: "192.0.2.1") == 1 && admission.openCount == 3)
        let again = admission.admit(7, from: "192.0.2.1")
        #expect(again == .accept, "the place closed is free")
        admission.closed(99)  // never admitted
        #expect(admission.openCount == 4)
    }

    @Test("When all places are taken, the oldest connection that has not spoken makes room; those that have are kept")
    func silentConnectionsMakeRoomOldestFirst() {
        var admission = ConnectionAdmission(limits: .init(maxConnections: 3, maxPerAddress: 3))
        for id: UInt64 in 1...3 { _ = admission.admit(id, from: "198.51.100.\(id)") }
        admission.proven(1)
        let first = admission.admit(4, from: "192.0.2.9")
        #expect(first == .acceptEvicting(2), "2 is the oldest silent one; 1 has spoken")
        let second = admission.admit(5, from: "192.0.2.9")
        #expect(second == .acceptEvicting(3))
        admission.proven(5)
        let third = admission.admit(6, from: "192.0.2.9")
        #expect(third == .acceptEvicting(4))
        admission.closed(2)  // the evicted connection's close comes later: nothing more
        #expect(admission.openCount == 3 && admission.count(from: "192.0.2.9") == 2)
        // Thousands of silent arrivals: the bookkeeping stays bounded and still finds the oldest.
        var ids: [UInt64] = []
        for id: UInt64 in 100..<20_000 {
            if case .acceptEvicting(let victim) = admission.admit(id, from: "203.0.113.\(id % 250)") { ids.append(victim) }
            if id % 3 == 0 { admission.closed(id) }
        }
        #expect(!ids.contains(1) && !ids.contains(5), "proven connections are never evicted")
        #expect(admission.openCount == 3)
        let report = admission.report(now: 0)
        #expect(report?.contains("silent ones to make room") == true, "\(report ?? "")")
    }

    @Test func aConnectionMustHandshakeAndSpeakInTime() {
        var admission = ConnectionAdmission(limits: .init())
        _ = admission.admit(1, from: "a", tls: true)
        _ = admission.admit(2, from: "a", tls: true)
        _ = admission.admit(3, from: "a")
        admission.handshaken(2)
        let v8 = admission.deadlinePassed(1, handshakeOnly: true)
        #expect(v8, "no handshake: closed")
        let v9 = admission.deadlinePassed(2, handshakeOnly: true)
        #expect(!v9)
        let v10 = admission.deadlinePassed(3, handshakeOnly: true)
        #expect(!v10, "plain TCP has no handshake to wait for")
        let v11 = admission.deadlinePassed(2)
        #expect(v11, "handshaken but silent")
        admission.proven(3)
        let v12 = admission.deadlinePassed(3)
        #expect(!v12 && admission.isProven(3))
        admission.closed(3)
        let v13 = admission.deadlinePassed(3)
        #expect(!v13, "gone already")
    }

    @Test func refusalsAreReportedOnceAMinuteAndTheLimitsFitTheFileLimit() {
        var admission = ConnectionAdmission(limits: .init(maxConnections: 1, maxPerAddress: 1))
        let v14 = admission.report(now: 0)
        #expect(v14 == nil, "nothing to say")
        _ = admission.admit(1, from: "a")
        admission.proven(1)
        for id in 2...500 { _ = admission.admit(UInt64(id), from: id % 2 == 0 ? "a" : "b") }
        let first = admission.report(now: 10)
        #expect(first?.contains("refused 250 over the per-address cap (1) and 249 over the global cap (1)") == true, "\(first ?? "-")")
        _ = admission.admit(600, from: "c")
        let v15 = admission.report(now: 40)
        #expect(v15 == nil, "not twice a minute")
        let v16 = admission.report(now: 70)
        #expect(v16?.contains("1 over the global cap") == true)

        let limits = ConnectionAdmission.Limits(maxConnections: 1024, maxPerAddress: 64)
        #expect(limits.fitted(toFileLimit: 1024).maxConnections == 512)
        #expect(limits.fitted(toFileLimit: 100) == .init(maxConnections: 50, maxPerAddress: 50))
        #expect(limits.fitted(toFileLimit: 1_000_000) == limits)
        #expect(ConnectionAdmission.Limits.processFileLimit > 0)
    }

    /// A TCP connection from `source` to the agent's port; nil when it could not be made.
    static func connect(_ group: MultiThreadedEventLoopGroup, from source: String, to port: Int) async throws -> any Channel {
        try await ClientBootstrap(group: group)
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: port)).get()
    }

    static func closes(_ channel: any Channel, within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while channel.isActive, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return !channel.isActive
    }

    @Test func overTheCapTheSameAddressIsRefusedAnotherIsServedAndSilentOnesAreClosed() async throws {
        let agent = try await AgentHarness(
            // The first-message time well past the "at once" check: at the start of the parallel
            // run the five connects alone were once seen to take over a second.
            transports: [.tcp], connectionLimits: .init(maxConnections: 100, maxPerAddress: 3, firstMessageTimeout: .seconds(4)))
        defer { Task { await agent.shutdown() } }
        let port = agent.port(.tcp)
        var idle: [any Channel] = []
        for _ in 0..<5 { idle.append(try await Self.connect(agent.group, from: "127.0.0.1", to: port)) }
        try await Task.sleep(for: .milliseconds(300))
        let closedAtOnce = idle.filter { !$0.isActive }.count
        #expect(closedAtOnce == 2, "two over the per-address cap of 3 closed at once, \(closedAtOnce) were")
        #expect(await agent.endpoint.admission.count(from: "127.0.0.1") == 3)

        // Another address is served meanwhile, and what it says keeps its connection.
        let other = try await Self.connect(agent.group, from: "127.0.0.2", to: port)
        let options = "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2:9;branch=z9hG4bKadm1\r\nFrom: <sip:t@x>;tag=1\r\n"
            + "To: <sip:a@127.0.0.1>\r\nCall-ID: adm1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        try await other.writeAndFlush(ByteBuffer(string: options))
        try await Task.sleep(for: .milliseconds(300))
        // The silent ones are closed after the first-message time; the one that spoke stays.
        for channel in idle { #expect(await Self.closes(channel, within: .seconds(10)), "a silent connection closed after 4 s") }
        try await Task.sleep(for: .milliseconds(500))
        #expect(other.isActive, "the connection that sent a valid request stays")
        #expect(await agent.endpoint.admission.count(from: "127.0.0.1") == 0, "their places are free")
        #expect(await agent.endpoint.admission.count(from: "127.0.0.2") == 1)
        try? await other.close()
    }

    @Test func aTLSConnectionThatNeverHandshakesIsClosed() async throws {
        let scratch = try ScratchDirectory()
        let certificates = try await TestCertificates.make(in: scratch)
        let agent = try await AgentHarness(
            transports: [.tls], tls: try tlsSettings(certificates),
            connectionLimits: .init(maxConnections: 100, maxPerAddress: 10, handshakeTimeout: .milliseconds(500), firstMessageTimeout: .seconds(30)))
        defer { Task { await agent.shutdown() } }
        let silent = try await Self.connect(agent.group, from: "127.0.0.1", to: agent.port(.tls))
        #expect(await Self.closes(silent, within: .seconds(3)), "no ClientHello within 0.5 s: closed")
        #expect(await agent.endpoint.admission.openCount == 0)
    }

    @Test("Hundreds of silent connections closed at their deadline leave nothing behind in the endpoint's tables")
    func closedConnectionsLeaveNothingBehind() async throws {
        let scratch = try ScratchDirectory()
        let certificates = try await TestCertificates.make(in: scratch)
        let agent = try await AgentHarness(
            transports: [.tls], tls: try tlsSettings(certificates),
            connectionLimits: .init(maxConnections: 1000, maxPerAddress: 1000, handshakeTimeout: .milliseconds(300), firstMessageTimeout: .seconds(30)))
        defer { Task { await agent.shutdown() } }
        var silent: [any Channel] = []
        for _ in 0..<300 { silent.append(try await Self.connect(agent.group, from: "127.0.0.1", to: agent.port(.tls))) }
        // Closed at the 300 ms deadline; the window is wide because at the start of the parallel
        // suite run (84 suites on 2 cores) a closing TLS channel was seen to take over 5 s to reach
        // the client — never closing at all is what fails.
        for channel in silent { #expect(await Self.closes(channel, within: .seconds(20))) }
        try await Task.sleep(for: .milliseconds(300))
        let tables = await agent.endpoint.connectionTables
        #expect(tables == ConnectionTables(), "\(tables)")
    }
}

/// The legacy side serves its intercom server and stations, not the LAN (issue 16,
/// `[legacy] allow`): a request from elsewhere gets 403, a flood of them mostly nothing, and a
/// stream connection from there is refused at once.
@Suite("Request sources")
struct SIPSourceFilterTests {
    @Test func prefixesMatchTheirAddressesOnly() throws {
        let lan = try #require(IPPrefix("192.168.10.0/24"))
        #expect(lan.contains(try SocketAddress(ipAddress: "192.168.10.77", port: 5060)))
        #expect(!lan.contains(try SocketAddress(ipAddress: "192.168.11.1", port: 5060)))
        #expect(lan.contains(try SocketAddress(ipAddress: "::ffff:192.168.10.9", port: 5060)), "IPv4-mapped")
        #expect(lan.description == "192.168.10.0/24")
        let host = try #require(IPPrefix("10.0.0.5"))
        #expect(host.contains(try SocketAddress(ipAddress: "10.0.0.5", port: 1)))
        #expect(!host.contains(try SocketAddress(ipAddress: "10.0.0.6", port: 1)))
        let v6 = try #require(IPPrefix("fd00::/8"))
        #expect(v6.contains(try SocketAddress(ipAddress: "fd12::1", port: 1)))
        #expect(!v6.contains(try SocketAddress(ipAddress: "fe80::1", port: 1)))
        #expect(!v6.contains(try SocketAddress(ipAddress: "10.0.0.5", port: 1)))
        #expect(IPPrefix("0.0.0.0/0")?.contains(try SocketAddress(ipAddress: "203.0.113.9", port: 1)) == true)
        #expect(IPPrefix("192.168.10.1/24")?.description == "192.168.10.0/24", "host bits cleared")
        for bad in ["", "pbx.local", "192.168.10.0/33", "::/129", "10.0.0.5/", "10.0.0.5/-1", "10.0.0.5/8/8", "fe80::1%eth0", String(repeating: "1", count: 100)] {
            #expect(IPPrefix(bad) == nil, "\(bad)")
        }
    }

    @Test func refusedSourcesGet403AtARateThenNothing() throws {
        var filter = SIPSourceFilter(allowed: [try #require(IPPrefix("127.0.0.1"))], answersPerSecond: 10)
        let stranger = try SocketAddress(ipAddress: "127.0.0.2", port: 5060)
        #expect(filter.check(try SocketAddress(ipAddress: "127.0.0.1", port: 9), now: 0) == .allow)
        let verdicts = (0..<100).map { _ in filter.check(stranger, now: 0) }
        #expect(verdicts.filter { $0 == .refuse }.count == 10 && verdicts.filter { $0 == .drop }.count == 90)
        #expect(filter.check(stranger, now: 0.5) == .refuse, "five more a second later")
        let report = filter.report(now: 1)
        #expect(report?.contains("refused 101 requests") == true && report?.contains("127.0.0.2") == true, "\(report ?? "-")")
        #expect(filter.report(now: 2) == nil)
    }

    @Test func anEndpointAnswersStrangers403AndRefusesTheirConnections() async throws {
        let agent = try await AgentHarness(transports: [.udp, .tcp], requestSources: [try #require(IPPrefix("127.0.0.1"))])
        defer { Task { await agent.shutdown() } }
        let options = { (id: String, transport: String) in
            "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/\(transport) 127.0.0.2:9;branch=z9hG4bK\(id);rport\r\nFrom: <sip:t@x>;tag=1\r\n"
                + "To: <sip:a@127.0.0.1>\r\nCall-ID: \(id)\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        }
        let (friend, collector) = try await DatagramCollector.socket(on: agent.group)
        defer { friend.close(promise: nil) }
        let destination = try SocketAddress(ipAddress: "127.0.0.1", port: agent.port(.udp))
        try await friend.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: ByteBuffer(string: options("f1", "UDP"))))
        #expect(try SIPMessageParser().parse(try await collector.next(timeout: .seconds(5))).statusCode == 200, "an allowed source is served")
        let (strangerSocket, strangerCollector) = try await DatagramCollector.socket(on: agent.group, address: "127.0.0.2")
        defer { strangerSocket.close(promise: nil) }
        try await strangerSocket.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: ByteBuffer(string: options("s1", "UDP"))))
        #expect(try SIPMessageParser().parse(try await strangerCollector.next(timeout: .seconds(5))).statusCode == 403, "a stranger gets 403")
        let tcp = try await ConnectionAdmissionTests.connect(agent.group, from: "127.0.0.2", to: agent.port(.tcp))
        #expect(await ConnectionAdmissionTests.closes(tcp, within: .seconds(2)), "and no connection")
        #expect(await agent.endpoint.admission.openCount == 0)
    }
}

/// Server transactions per source and in all (issue 16): a flood holds at most the caps, gets a
/// few 503s and then nothing, and what a TU drops goes after 64·T1.
@Suite("Transaction admission")
struct TransactionAdmissionTests {
    @Test("The caps per source and in all; places freed on close; one report a minute")
    func capsAndReport() {
        var admission = SIPTransactionAdmission(limits: .init(maxTransactions: 3, maxPerSource: 2, answersPerSecond: 1))
        #expect(admission.check("a", now: 0) == .admit)
        admission.opened("a")
        admission.opened("a")
        #expect(admission.check("a", now: 0) == .refuse, "a is at its cap")
        #expect(admission.check("a", now: 0.1) == .drop, "past the answer rate")
        #expect(admission.check("b", now: 0.1) == .admit)
        admission.opened("b")
        #expect(admission.check("c", now: 2) == .refuse, "all places taken")
        admission.closed("a")
        #expect(admission.check("c", now: 2) == .admit && admission.total == 2 && admission.count(from: "a") == 1)
        admission.closed("unknown")
        #expect(admission.total == 2, "closing what was never opened changes nothing")
        let report = admission.report(now: 10)
        #expect(report?.contains("refused 3 requests") == true && report?.contains("2 answered 503, 1 dropped") == true, "\(report ?? "")")
        _ = admission.check("a", now: 11)
        #expect(admission.report(now: 20) == nil, "once a minute")
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func add() { lock.withLock { value += 1 } }
        var count: Int { lock.withLock { value } }
    }

    @Test("A flood from one source over UDP: the cap's worth reach the TU, a few get 503 with Retry-After, the rest nothing; another source is served; abandoned transactions go after 64·T1")
    func aFloodFromOneSourceIsCapped() async throws {
        var configuration = SIPEndpoint.Configuration()
        configuration.transactionLimits = .init(maxTransactions: 100, maxPerSource: 5, answersPerSecond: 3)
        configuration.timers.t1 = .milliseconds(10)
        let endpoint = try SIPEndpoint(eventLoop: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration)
        let port = try await endpoint.listen(.udp, on: try SocketAddress(ipAddress: "127.0.0.1", port: 0)).port ?? 0
        let delivered = Counter()
        await endpoint.setRequestHandler { endpoint, incoming in
            delivered.add()
            if case .transaction(let key) = incoming.kind { endpoint.abandon(key) }  // a TU that drops what it gets
        }
        let flooder = try UDPSocket(), other = try UDPSocket(host: "127.0.0.7")
        for index in 0..<30 { flooder.send(text: DatagramResilienceTests.options("f\(index)"), to: port) }
        other.send(text: DatagramResilienceTests.options("o1"), to: port)
        try await Task.sleep(for: .milliseconds(300))
        var answers: [String] = []
        while let text = try await flooder.receiveText(timeout: .milliseconds(100)) { answers.append(text) }
        #expect(delivered.count == 6, "five from the flooder, one from the other source")
        #expect(answers.count == 3 && answers.allSatisfy { $0.hasPrefix("SIP/2.0 503") && $0.contains("Retry-After: 5") }, "\(answers)")
        #expect(await endpoint.statistics.transactionsRefused == 25)
        // 64·T1 = 640 ms later the abandoned transactions are gone and the source is served again.
        try await Task.sleep(for: .milliseconds(900))
        #expect(await endpoint.transactionAdmission.total == 0)
        flooder.send(text: DatagramResilienceTests.options("again"), to: port)
        try await Task.sleep(for: .milliseconds(200))
        #expect(delivered.count == 7)
        // A CANCEL that matches nothing is answered 481 and holds nothing.
        flooder.send(text: DatagramResilienceTests.options("c1").replacingOccurrences(of: "OPTIONS", with: "CANCEL"), to: port)
        let cancelAnswer = try await flooder.receiveText(timeout: .seconds(2))
        #expect(cancelAnswer?.hasPrefix("SIP/2.0 481") == true)
        #expect(await endpoint.transactionAdmission.total == 1, "only the abandoned OPTIONS, not the CANCEL")
        await endpoint.shutdown()
    }
}

@Suite("Log budget")
struct LogBudgetTests {
    @Test("The first lines of a minute go out, the rest are counted and the count said once with the next minute's first")
    func firstLinesThenACount() {
        var budget = LogBudget(perMinute: 3)
        let minute = (0..<10).map { budget.take(now: Double($0)) }
        #expect(minute.map(\.log) == [true, true, true, false, false, false, false, false, false, false])
        #expect(minute.allSatisfy { $0.heldBack == 0 })
        let next = budget.take(now: 61)
        #expect(next.log && next.heldBack == 7)
        let again = budget.take(now: 62)
        #expect(again.log && again.heldBack == 0, "said once")
    }
}
