import NIOCore
import SIP
import SIPTransport
@testable import SIPUserAgent
import Testing

/// One INVITE session as a value (issue 15): every rule the agent follows after the INVITE —
/// early media, a 422 or a challenge retried once, our 2xx until its ACK, the peer's offers and
/// ours with glare, how a call ends — driven with messages and a clock, without a socket.
@Suite("INVITE session")
struct SIPInviteSessionTests {
    static let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9\r\n"
    static let offer = SIPMessageBody(contentType: "application/sdp", text: sdp)
    static let other = SIPMessageBody(contentType: "application/sdp", text: sdp.replacingOccurrences(of: "4000", with: "5000"))

    static func message(_ text: String, body: SIPMessageBody? = nil) throws -> SIPMessage {
        var head = text.replacingOccurrences(of: "\n", with: "\r\n")
        if let body {
            head += "Content-Type: \(body.contentType)\r\nContent-Length: \(body.text.utf8.count)\r\n\r\n\(body.text)"
        } else {
            head += "Content-Length: 0\r\n\r\n"
        }
        return try SIPMessageParser().parse(head)
    }

    static func invite(body: SIPMessageBody? = offer, cseq: Int = 1) throws -> SIPMessage {
        try message("""
            INVITE sip:bob@192.0.2.2 SIP/2.0
            Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-\(cseq)
            From: <sip:alice@192.0.2.1>;tag=a1
            To: <sip:bob@192.0.2.2>
            Call-ID: call-1
            CSeq: \(cseq) INVITE
            Contact: <sip:alice@192.0.2.1>
            Max-Forwards: 70

            """, body: body)
    }

    static func response(_ status: Int, cseq: Int = 1, method: String = "INVITE", body: SIPMessageBody? = nil, extra: String = "") throws -> SIPMessage {
        try message("""
            SIP/2.0 \(status) Whatever
            Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-\(cseq)
            From: <sip:alice@192.0.2.1>;tag=a1
            To: <sip:bob@192.0.2.2>;tag=b1
            Call-ID: call-1
            CSeq: \(cseq) \(method)
            Contact: <sip:bob@192.0.2.2>

            """ + (extra.isEmpty ? "" : extra + "\n"), body: body)
    }

    /// The peer's request in the dialog of an incoming call (it is alice; we are bob).
    static func inDialog(_ method: String, cseq: Int, body: SIPMessageBody? = nil) throws -> SIPMessage {
        try message("""
            \(method) sip:bob@192.0.2.2 SIP/2.0
            Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-in\(cseq)
            From: <sip:alice@192.0.2.1>;tag=a1
            To: <sip:bob@192.0.2.2>;tag=b1
            Call-ID: call-1
            CSeq: \(cseq) \(method)
            Contact: <sip:alice@192.0.2.1>
            Max-Forwards: 70

            """, body: body)
    }

    static func flow() throws -> SIPFlow {
        SIPFlow(transport: .udp, local: try SocketAddress(ipAddress: "192.0.2.2", port: 5060), remote: try SocketAddress(ipAddress: "192.0.2.1", port: 5060), connectionID: 0)
    }

    static func key(_ request: SIPMessage) throws -> SIPTransactionKey { try #require(SIPTransactionKey.server(for: request)) }

    /// An incoming call answered (our 2xx out, not yet acknowledged) and then confirmed.
    static func answeredIncoming() throws -> SIPInviteSession {
        let invite = try invite()
        var session = SIPInviteSession(
            handle: SIPCallHandle(value: 1), direction: .incoming, state: .answered, flow: try flow(), invite: invite, timers: SIPCallTimers())
        session.dialog = SIPDialog(uasRequest: invite, localTag: "b1", localContact: SIPNameAddress(uri: SIPURI(user: "bob", host: "192.0.2.2")))
        session.localBody = other
        session.okSent(try response(200, body: other), on: try key(invite), now: 0)
        return session
    }

    @Test func earlyMediaIsReportedOnceAndTheFirstProvisionalRings() throws {
        var session = SIPInviteSession(
            handle: SIPCallHandle(value: 1), direction: .outgoing, state: .calling, flow: try Self.flow(), invite: try Self.invite(), timers: SIPCallTimers())
        let first = session.provisional(try Self.response(180))
        #expect(first.rings && first.earlyMedia == nil)
        let rang = session.provisional(try Self.response(183, body: Self.other))
        #expect(!rang.rings && rang.earlyMedia == Self.other, "the second provisional does not ring again; its SDP is early media")
        let again = session.provisional(try Self.response(183, body: Self.other))
        #expect(again.earlyMedia == nil, "the same description again is nothing new")
        #expect(session.state == .ringing && session.remoteBody == Self.other)
    }

    @Test func a422IsRetriedOnceWithTheMinimumAndAChallengeOnceWithCredentials() throws {
        var session = SIPInviteSession(
            handle: SIPCallHandle(value: 1), direction: .outgoing, state: .calling, flow: try Self.flow(), invite: try Self.invite(), timers: SIPCallTimers())
        let tooSmall = try Self.response(422, extra: "Min-SE: 300")
        let notMore = session.retryAfterIntervalTooSmall(tooSmall, asked: 300)
        #expect(!notMore, "the peer asks no more than we did: give up")
        let retried = session.retryAfterIntervalTooSmall(tooSmall, asked: 90)
        #expect(retried)
        #expect(session.invite.cseq?.sequence == 2 && session.invite.headers[.sessionExpires] == "300" && session.invite.topVia == nil)
        let twice = session.retryAfterIntervalTooSmall(tooSmall, asked: 90)
        #expect(!twice, "once")

        let without = session.retryAuthenticated(with: nil)
        #expect(!without, "no credentials: give up")
        let with = session.retryAuthenticated(with: (.authorization, "Digest username=\"gw\""))
        #expect(with)
        #expect(session.invite.cseq?.sequence == 3 && session.invite.headers[.authorization] != nil)
        let again = session.retryAuthenticated(with: (.authorization, "Digest username=\"gw\""))
        #expect(!again, "refused twice: the credentials are wrong")
    }

    @Test func ourOKWaitsForTheACKWithItsCSeqAndTheFirstACKConfirmsTheCall() throws {
        var session = try Self.answeredIncoming()
        #expect(session.timers.deadlines[.okRetransmit] != nil)
        let other = session.ackReceived(try Self.inDialog("ACK", cseq: 7))
        #expect(other == nil, "an ACK for another INVITE")
        let ack = session.ackReceived(try Self.inDialog("ACK", cseq: 1))
        #expect(ack == .init(confirmsCall: true, answer: nil))
        #expect(session.state == .established && session.timers.deadlines[.okRetransmit] == nil)
        let repeated = session.ackReceived(try Self.inDialog("ACK", cseq: 1))
        #expect(repeated == nil, "a retransmitted ACK is nothing new")
    }

    @Test func anOfferlessReInviteGetsOurOfferAndItsACKBringsTheAnswer() throws {
        var session = try Self.answeredIncoming()
        _ = session.ackReceived(try Self.inDialog("ACK", cseq: 1))
        let reinvite = try Self.inDialog("INVITE", cseq: 2)
        let change = session.sessionChange(reinvite, key: try Self.key(reinvite), answerWithin: 8, now: 10)
        #expect(change == .pending(offer: nil))
        #expect(session.timers.deadlines[.offerAnswer] == 18, "the owner has 8 s")
        // An offer while ours is due in the 2xx: 491 (RFC 3311 §5.2).
        let second = try Self.inDialog("UPDATE", cseq: 3, body: Self.offer)
        let glare = session.sessionChange(second, key: try Self.key(second), answerWithin: 8, now: 10)
        #expect(glare == .reject(status: 491, retryAfter: nil))
        let answered = session.answeringOffer(with: Self.offer)
        #expect(answered != nil && answered?.offer == nil)
        #expect(session.offerInOK && session.localBody == Self.offer && session.timers.deadlines[.offerAnswer] == nil)
        session.okSent(try Self.response(200, cseq: 2, body: Self.offer), on: try Self.key(reinvite), now: 11)
        let ack = try Self.inDialog("ACK", cseq: 2, body: Self.other)
        let confirmation = session.ackReceived(ack)
        #expect(confirmation == .init(confirmsCall: false, answer: Self.other))
        #expect(session.remoteBody == Self.other && session.offerAnswer.outstanding == .none)
    }

    @Test func aRefusedOfferLeavesTheSessionAsItWas() throws {
        var session = try Self.answeredIncoming()
        _ = session.ackReceived(try Self.inDialog("ACK", cseq: 1))
        let remote = session.remoteBody
        let update = try Self.inDialog("UPDATE", cseq: 2, body: Self.other)
        let change = session.sessionChange(update, key: try Self.key(update), answerWithin: 8, now: 0)
        #expect(change == .pending(offer: Self.other))
        // A second offer while the first is unanswered: 500 with Retry-After 0–10 s (§14.2).
        let second = try Self.inDialog("INVITE", cseq: 3, body: Self.offer)
        guard case .reject(500, let retry?) = session.sessionChange(second, key: try Self.key(second), answerWithin: 8, now: 0) else {
            Issue.record("the second offer was not refused with 500")
            return
        }
        #expect(retry <= 10)
        let refused = session.refusingOffer()
        #expect(refused != nil)
        #expect(session.remoteBody == remote && session.offerAnswer.outstanding == .none && session.pendingOffer == nil)
        let nothing = session.refusingOffer()
        #expect(nothing == nil, "nothing left to refuse")
        // An UPDATE without a body is a refresh.
        let refresh = try Self.inDialog("UPDATE", cseq: 4)
        let refreshed = session.sessionChange(refresh, key: try Self.key(refresh), answerWithin: 8, now: 0)
        #expect(refreshed == .refresh)
    }

    @Test func ourReInviteOneAtATimeGlareAndRefusal() throws {
        var session = try Self.answeredIncoming()
        var random = SystemRandomNumberGenerator()
        func begin(_ body: SIPMessageBody?) -> Bool { session.beginReinvite(offering: body) }
        func finish(_ response: SIPMessage) -> SIPInviteSession.ReinviteOutcome { session.reinviteFinished(response, using: &random) }
        #expect(!begin(Self.offer), "not before the ACK: the call is not established")
        _ = session.ackReceived(try Self.inDialog("ACK", cseq: 1))
        #expect(begin(Self.offer))
        #expect(!begin(Self.offer), "one at a time (§14.1)")
        // The peer's offer meets ours: 491 for it.
        let theirs = try Self.inDialog("INVITE", cseq: 2, body: Self.other)
        let change = session.sessionChange(theirs, key: try Self.key(theirs), answerWithin: 8, now: 0)
        #expect(change == .reject(status: 491, retryAfter: nil))
        // Ours gets 491 too: again later, with the same offer.
        guard case .glare(let delay) = finish(try Self.response(491, cseq: 2)) else {
            Issue.record("491 is not glare")
            return
        }
        #expect(delay > .zero && delay <= .seconds(4))
        #expect(begin(nil) && session.reinviteBody == Self.offer, "the retry offers what the first did")
        // Answered without SDP: the exchange failed; our description stays.
        let before = session.localBody
        #expect(finish(try Self.response(200, cseq: 3)) == .accepted(answer: nil, offered: true))
        #expect(session.localBody == before)
        #expect(begin(Self.offer))
        #expect(finish(try Self.response(488, cseq: 4)) == .refused(status: 488))
        #expect(session.reinviteBody == nil && session.localBody == before)
        #expect(begin(Self.offer))
        #expect(finish(try Self.response(500, cseq: 5, extra: "Retry-After: 3")) == .glare(retryAfter: .seconds(3)))
        #expect(begin(nil))
        #expect(finish(try Self.response(500, cseq: 6, extra: "Retry-After: 3600")) == .refused(status: 500), "a long Retry-After is no glare")
        #expect(begin(Self.offer))
        #expect(finish(try Self.response(200, cseq: 7, body: Self.other)) == .accepted(answer: Self.other, offered: true))
        #expect(session.localBody == Self.offer && session.remoteBody == Self.other)
    }

    @Test func howACallEndsDependsOnWhereItIs() throws {
        var outgoing = SIPInviteSession(
            handle: SIPCallHandle(value: 1), direction: .outgoing, state: .calling, flow: try Self.flow(), invite: try Self.invite(), timers: SIPCallTimers())
        #expect(outgoing.ending == .nothing, "no transaction yet: nothing to cancel")
        let key = try Self.key(try Self.invite())
        outgoing.inviteTransaction = key
        #expect(outgoing.ending == .cancel(key))
        var incoming = try Self.answeredIncoming()
        #expect(incoming.ending == .bye)
        incoming.state = .ringing
        incoming.inviteTransaction = key
        #expect(incoming.ending == .decline(key))
        incoming.state = .ending
        #expect(incoming.ending == .nothing)
    }
}
