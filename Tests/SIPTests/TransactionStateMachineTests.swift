import SIP
import Testing

/// The four RFC 3261 §17 transactions (with RFC 6026), on a simulated clock.
@Suite("Transactions")
struct TransactionStateMachineTests {
    static let invite = try! parseSIP(
        """
        INVITE sip:bob@example.com SIP/2.0
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1
        Max-Forwards: 70
        To: <sip:bob@example.com>
        From: <sip:alice@example.com>;tag=a1
        Call-ID: call-1@192.0.2.1
        CSeq: 1 INVITE
        Route: <sip:proxy.example.com;lr>
        Contact: <sip:alice@192.0.2.1>
        Content-Length: 0


        """)

    static let options = try! parseSIP(
        """
        OPTIONS sip:bob@example.com SIP/2.0
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKopt1
        Max-Forwards: 70
        To: <sip:bob@example.com>
        From: <sip:alice@example.com>;tag=a1
        Call-ID: call-2@192.0.2.1
        CSeq: 7 OPTIONS
        Content-Length: 0


        """)

    static func response(_ code: Int, to request: SIPMessage, tag: String? = "b1") -> SIPMessage {
        SIPResponseFactory.response(to: request, status: code, toTag: tag)
    }

    // MARK: INVITE client (§17.1.1)

    @Test func inviteClientRetransmitsWithTimerAUntilTimerB() {
        var clock = ManualTransactionClock(ClientInviteTransaction(request: Self.invite, reliable: false))
        clock.start()
        clock.advance(by: .seconds(40))
        // A doubles from T1: 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; B fires at 64·T1 = 32 s.
        #expect(clock.requestSendTimes == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5].map { Duration.milliseconds(Int($0 * 1000)) })
        #expect(clock.timedOut)
        #expect(clock.terminatedAt == .seconds(32))
    }

    @Test func inviteClientOnReliableTransportDoesNotRetransmit() {
        var clock = ManualTransactionClock(ClientInviteTransaction(request: Self.invite, reliable: true))
        clock.start()
        clock.advance(by: .seconds(33))
        #expect(clock.requestSendTimes == [.zero])
        #expect(clock.timedOut)
    }

    @Test func inviteClientProvisionalStopsRetransmissions() {
        var clock = ManualTransactionClock(ClientInviteTransaction(request: Self.invite, reliable: false))
        clock.start()
        clock.advance(by: .milliseconds(600))
        clock.feed { $0.receive(Self.response(180, to: Self.invite)) }
        clock.advance(by: .seconds(10))
        #expect(clock.requestSendTimes.count == 2)
        #expect(clock.machine.state == .proceeding)
        #expect(clock.delivered.map(\.statusCode) == [180])
    }

    @Test func inviteClientAcksFailureAndAbsorbsRetransmissionsForTimerD() throws {
        var clock = ManualTransactionClock(ClientInviteTransaction(request: Self.invite, reliable: false))
        clock.start()
        let busy = Self.response(486, to: Self.invite)
        clock.feed { $0.receive(busy) }
        #expect(clock.machine.state == .completed)
        let ack = try #require(clock.sent.last?.message)
        #expect(ack.method == .ack)
        // §17.1.1.3: same branch and Request-URI, To with the response's tag, Route copied.
        #expect(ack.topVia?.branch == "z9hG4bKinv1")
        #expect(ack.requestURI == Self.invite.requestURI)
        #expect(ack.to?.tag == "b1")
        #expect(ack.cseq == SIPCSeq(1, .ack))
        #expect(ack.routes.count == 1)
        // A retransmitted 486 is ACKed again but not delivered twice.
        clock.advance(by: .seconds(1))
        clock.feed { $0.receive(busy) }
        #expect(clock.sent.filter { $0.message.method == .ack }.count == 2)
        #expect(clock.delivered.count == 1)
        clock.advance(by: .seconds(32))
        #expect(clock.terminated && !clock.timedOut)
    }

    @Test func inviteClientAcceptedStatePassesEvery2xxUntilTimerM() {
        // RFC 6026 §8.4: 2xx moves to Accepted; retransmitted or forked 2xx still reach the TU.
        var clock = ManualTransactionClock(ClientInviteTransaction(request: Self.invite, reliable: false))
        clock.start()
        clock.feed { $0.receive(Self.response(200, to: Self.invite, tag: "fork1")) }
        #expect(clock.machine.state == .accepted)
        clock.feed { $0.receive(Self.response(200, to: Self.invite, tag: "fork2")) }
        #expect(clock.delivered.count == 2)
        #expect(clock.sent.filter { $0.message.method == .ack }.isEmpty, "the TU, not the transaction, ACKs a 2xx")
        clock.advance(by: .seconds(31))
        #expect(!clock.terminated)
        clock.advance(by: .seconds(2))
        #expect(clock.terminated)
    }

    @Test func inviteClientTransportErrorReportsFailure() {
        var clock = ManualTransactionClock(ClientInviteTransaction(request: Self.invite, reliable: true))
        clock.start()
        clock.feed { $0.transportError() }
        #expect(clock.transportFailed && clock.terminated)
    }

    // MARK: Non-INVITE client (§17.1.2)

    @Test func nonInviteClientBacksOffToT2() {
        var clock = ManualTransactionClock(ClientNonInviteTransaction(request: Self.options, reliable: false))
        clock.start()
        clock.advance(by: .seconds(33))
        // E: 0.5, 1, 2, 4, 4, 4 … until F at 32 s.
        let times = clock.requestSendTimes.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 }
        #expect(Array(times.prefix(6)) == [0, 0.5, 1.5, 3.5, 7.5, 11.5])
        #expect(times.last == 31.5)
        #expect(clock.timedOut && clock.terminatedAt == .seconds(32))
    }

    @Test func nonInviteClientInProceedingRetransmitsEveryT2() {
        var clock = ManualTransactionClock(ClientNonInviteTransaction(request: Self.options, reliable: false))
        clock.start()
        clock.feed { $0.receive(Self.response(100, to: Self.options)) }
        clock.advance(by: .milliseconds(500))  // E fires once at 0.5 s, then every T2
        clock.advance(by: .seconds(8))
        #expect(clock.requestSendTimes == [.zero, .milliseconds(500), .milliseconds(4500), .milliseconds(8500)])
    }

    @Test func nonInviteClientCompletesAndWaitsTimerK() {
        var clock = ManualTransactionClock(ClientNonInviteTransaction(request: Self.options, reliable: false))
        clock.start()
        clock.feed { $0.receive(Self.response(200, to: Self.options)) }
        clock.feed { $0.receive(Self.response(200, to: Self.options)) }
        #expect(clock.delivered.count == 1, "retransmitted final responses are absorbed")
        clock.advance(by: .seconds(5))
        #expect(clock.terminatedAt == .seconds(5))
    }

    // MARK: INVITE server (§17.2.1)

    @Test func inviteServerSendsTryingAndRepeatsLastResponseOnRetransmission() {
        var clock = ManualTransactionClock(ServerInviteTransaction(request: Self.invite, reliable: false))
        clock.start()
        #expect(clock.sent.map(\.message.statusCode) == [100])
        #expect(clock.delivered.count == 1)
        clock.feed { $0.respond(Self.response(180, to: Self.invite)) }
        clock.feed { $0.receive(Self.invite) }
        #expect(clock.sent.map(\.message.statusCode) == [100, 180, 180])
        #expect(clock.delivered.count == 1, "retransmissions do not reach the TU")
    }

    @Test func inviteServerRetransmitsFailureWithTimerGUntilAck() {
        var clock = ManualTransactionClock(ServerInviteTransaction(request: Self.invite, reliable: false))
        clock.start()
        clock.feed { $0.respond(Self.response(486, to: Self.invite)) }
        clock.advance(by: .milliseconds(1600))  // G at 0.5 and 1.5 s
        #expect(clock.sent.filter { $0.message.statusCode == 486 }.count == 3)
        let ack = SIPACKFactory.ackForNon2xx(request: Self.invite, response: Self.response(486, to: Self.invite))
        clock.feed { $0.receive(ack) }
        #expect(clock.machine.state == .confirmed)
        clock.advance(by: .seconds(10))
        #expect(clock.sent.filter { $0.message.statusCode == 486 }.count == 3, "no retransmission after ACK")
        #expect(clock.terminatedAt == .milliseconds(6600), "Timer I = T4 after the ACK")
    }

    @Test func inviteServerWithoutAckTimesOutWithTimerH() {
        var clock = ManualTransactionClock(ServerInviteTransaction(request: Self.invite, reliable: true))
        clock.start()
        clock.feed { $0.respond(Self.response(603, to: Self.invite)) }
        clock.advance(by: .seconds(40))
        #expect(clock.sent.filter { $0.message.statusCode == 603 }.count == 1, "no G on reliable transports")
        #expect(clock.timedOut && clock.terminatedAt == .seconds(32))
    }

    @Test func inviteServerAcceptedAbsorbsRetransmissionsUntilTimerL() {
        // RFC 6026 §8.7.
        var clock = ManualTransactionClock(ServerInviteTransaction(request: Self.invite, reliable: false))
        clock.start()
        clock.feed { $0.respond(Self.response(200, to: Self.invite)) }
        #expect(clock.machine.state == .accepted)
        clock.feed { $0.receive(Self.invite) }
        #expect(clock.sent.count == 2, "an INVITE retransmission in Accepted is absorbed")
        clock.feed { $0.respond(Self.response(200, to: Self.invite)) }
        #expect(clock.sent.count == 3, "the TU's 2xx retransmission passes")
        clock.advance(by: .seconds(32))
        #expect(clock.terminated)
    }

    // MARK: Non-INVITE server (§17.2.2)

    @Test func nonInviteServerAnswersRetransmissionsAndEndsAfterTimerJ() {
        var clock = ManualTransactionClock(ServerNonInviteTransaction(request: Self.options, reliable: false))
        clock.start()
        clock.feed { $0.receive(Self.options) }
        #expect(clock.sent.isEmpty, "in Trying a retransmission is absorbed")
        clock.feed { $0.respond(Self.response(200, to: Self.options)) }
        clock.feed { $0.receive(Self.options) }
        #expect(clock.sent.count == 2)
        clock.advance(by: .seconds(31))
        #expect(!clock.terminated)
        clock.advance(by: .seconds(1))
        #expect(clock.terminatedAt == .seconds(32))
    }

    @Test func nonInviteServerOnReliableTransportEndsAtOnce() {
        var clock = ManualTransactionClock(ServerNonInviteTransaction(request: Self.options, reliable: true))
        clock.start()
        clock.feed { $0.respond(Self.response(200, to: Self.options)) }
        clock.advance(by: .zero)
        #expect(clock.terminated)
    }

    // MARK: Matching (§17.1.3, §17.2.3)

    @Test func ackMatchesItsInviteServerTransaction() {
        let ack = SIPACKFactory.ackForNon2xx(request: Self.invite, response: Self.response(486, to: Self.invite))
        #expect(SIPTransactionKey.server(for: ack) == SIPTransactionKey.server(for: Self.invite))
        let cancel = SIPACKFactory.cancel(for: Self.invite)
        #expect(SIPTransactionKey.server(for: cancel) != SIPTransactionKey.server(for: Self.invite))
        #expect(SIPTransactionKey.cancelled(by: cancel) == SIPTransactionKey.server(for: Self.invite))
    }

    @Test func responseMatchesByBranchAndMethod() {
        let response = Self.response(200, to: Self.invite)
        #expect(SIPTransactionKey.client(for: response) == SIPTransactionKey.client(forRequest: Self.invite))
        var other = Self.options
        other.headers.set(.via, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1")
        #expect(SIPTransactionKey.client(for: Self.response(200, to: other)) != SIPTransactionKey.client(forRequest: Self.invite))
    }

    @Test func rfc2543RequestsMatchByTheirIdentity() throws {
        // RFC 4475 §3.2.1: a branch of only the cookie is matched the RFC 2543 way.
        let first = try SIPMessageParser().parse(try Fixtures.bytes("rfc4475/badbranch.dat"))
        var retransmission = first
        retransmission.headers.set(.maxForwards, "2")
        #expect(SIPTransactionKey.server(for: first) == SIPTransactionKey.server(for: retransmission))
        var next = first
        next.headers.set(.cseq, "9 OPTIONS")
        #expect(SIPTransactionKey.server(for: first) != SIPTransactionKey.server(for: next))
        guard case .legacy = SIPTransactionKey.server(for: first) else {
            Issue.record("expected RFC 2543 matching for a cookie-only branch")
            return
        }
    }

    @Test func broadcastViaResponseMatchesNoClientTransaction() throws {
        // RFC 4475 §3.3.10: a UAC drops a 200 whose top Via is not one of its own.
        let bcast = try SIPMessageParser().parse(try Fixtures.bytes("rfc4475/bcast.dat"))
        #expect(SIPTransactionKey.client(for: bcast) != SIPTransactionKey.client(forRequest: Self.invite))
    }
}
