import Foundation
import PeerTestSupport
import SIP
import SIPTransport
import SIPUserAgent
import Testing

/// What a back-to-back call leg needs from the user agent: its own SDP per call, the peer's SDP
/// from the INVITE and from the answer, its own From user (a gateway calls as one of its
/// channels), answering and refusing by hand.
@Suite("Call legs with their own session descriptions")
struct CallLegBodyTests {
    static func sdp(_ name: String, port: Int) -> SIPMessageBody {
        SIPMessageBody(contentType: "application/sdp", text: "v=0\r\no=\(name) 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio \(port) RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n")
    }

    @Test func eachLegCarriesItsOwnOfferAndAnswer() async throws {
        let callee = try await AgentHarness(transports: [.udp]) {
            $0.user = "callee"
            $0.role = .softphone(answerAfter: nil)
        }
        let caller = try await AgentHarness(transports: [.udp]) { $0.user = "caller" }
        let offer = Self.sdp("legacy", port: 40002), answer = Self.sdp("cloud", port: 50002)
        let target = SIPURI(user: "callee", host: "127.0.0.1", port: callee.port(.udp))
        let outgoing = try await caller.agent.call(
            target, via: SIPDestination(transport: .udp, host: "127.0.0.1", port: callee.port(.udp)), from: "gw1-ch3", body: offer)

        guard case .incomingCall(let incoming, let call) = try await callee.recorder.wait(for: "incoming", { $0.isIncoming }) else { return }
        #expect(call.from?.uri.description.contains("gw1-ch3@") == true)
        #expect(call.offer == offer, "the event carries the offer")
        #expect(await callee.agent.remoteBody(of: incoming) == offer)
        #expect(await callee.agent.invite(of: incoming)?.contacts.first?.sipURI?.user == "gw1-ch3")
        await callee.agent.answer(incoming, body: answer)

        try await caller.recorder.wait(for: "answered") { $0.isAnswered }
        #expect(await caller.agent.remoteBody(of: outgoing) == answer)
        await caller.agent.hangUp(outgoing)
        try await callee.recorder.wait(for: "ended") { $0.isEnded }
        await caller.shutdown()
        await callee.shutdown()
    }

    @Test func aLegCanBeRefusedByHand() async throws {
        let callee = try await AgentHarness(transports: [.udp]) { $0.role = .softphone(answerAfter: nil) }
        let caller = try await AgentHarness(transports: [.udp])
        let target = SIPURI(user: "callee", host: "127.0.0.1", port: callee.port(.udp))
        _ = try await caller.agent.call(target, via: SIPDestination(transport: .udp, host: "127.0.0.1", port: callee.port(.udp)))
        guard case .incomingCall(let incoming, _) = try await callee.recorder.wait(for: "incoming", { $0.isIncoming }) else { return }
        await callee.agent.reject(incoming, status: 486)
        let failed = try await caller.recorder.wait(for: "failed") { $0.failedStatus != nil }
        #expect(failed.failedStatus == 486)
        #expect(await callee.agent.activeCallCount == 0)
        await caller.shutdown()
        await callee.shutdown()
    }

    @Test func aReinviteOfferIsAnsweredByTheOwnerAndTheAnswerReachesTheOfferer() async throws {
        let callee = try await AgentHarness(transports: [.udp]) {
            $0.user = "callee"
            $0.role = .backToBackLeg
        }
        let caller = try await AgentHarness(transports: [.udp]) { $0.user = "caller" }
        let target = SIPURI(user: "gw1-ch2", host: "127.0.0.1", port: callee.port(.udp))
        let outgoing = try await caller.agent.call(target, via: SIPDestination(transport: .udp, host: "127.0.0.1", port: callee.port(.udp)), body: Self.sdp("a", port: 40002))
        try await callee.answerNextCall()
        try await caller.recorder.wait(for: "answered") { $0.isAnswered }
        try await callee.recorder.wait(for: "ACK") { $0.isConfirmed }

        // The caller moves its media: the callee's owner sees the new offer and answers it.
        let moved = Self.sdp("a", port: 41002)
        #expect(await caller.agent.reinvite(outgoing, body: moved))
        guard case .offerReceived(let incoming, let offer, let method) = try await callee.recorder.wait(for: "offer", { if case .offerReceived = $0 { true } else { false } })
        else { return }
        #expect(offer == moved && method == .invite)
        let answer = Self.sdp("b", port: 50004)
        await callee.agent.answerOffer(incoming, body: answer)
        let received = try await caller.recorder.wait(for: "answer") { if case .answerReceived = $0 { true } else { false } }
        #expect(received == .answerReceived(outgoing, answer: answer))
        #expect(await caller.agent.remoteBody(of: outgoing) == answer)
        #expect(await callee.agent.remoteBody(of: incoming) == moved)
        #expect(await callee.agent.localBody(of: incoming) == answer)

        // A refused offer leaves the session as it was (RFC 3261 §14.2) and the call up.
        #expect(await caller.agent.reinvite(outgoing, body: Self.sdp("a", port: 42002)))
        try await callee.recorder.wait(for: "second offer") { event in
            if case .offerReceived(_, let offer, _) = event { offer.text.contains("42002") } else { false }
        }
        await callee.agent.refuseOffer(incoming, status: 488, warning: "no \"shared\" codec")
        try await Task.sleep(for: .milliseconds(300))
        #expect(await callee.agent.remoteBody(of: incoming) == moved)
        #expect(await caller.agent.remoteBody(of: outgoing) == answer)
        #expect(await caller.agent.activeCallCount == 1)
        // And the next offer may go again (nothing stays outstanding).
        #expect(await caller.agent.reinvite(outgoing, body: Self.sdp("a", port: 43002)))
        try await callee.recorder.wait(for: "third offer") { event in
            if case .offerReceived(_, let offer, _) = event { offer.text.contains("43002") } else { false }
        }
        await caller.agent.hangUp(outgoing)
        try await callee.recorder.wait(for: "ended") { $0.isEnded }
        await caller.shutdown()
        await callee.shutdown()
    }

    @Test func anUnansweredOfferIsRefusedAfterTheTimeout() async throws {
        let callee = try await AgentHarness(transports: [.udp]) {
            $0.role = .backToBackLeg
            $0.offerAnswerTimeout = .milliseconds(300)
        }
        let caller = try await AgentHarness(transports: [.udp])
        let target = SIPURI(user: "callee", host: "127.0.0.1", port: callee.port(.udp))
        let outgoing = try await caller.agent.call(target, via: SIPDestination(transport: .udp, host: "127.0.0.1", port: callee.port(.udp)))
        try await callee.answerNextCall()
        try await callee.recorder.wait(for: "ACK") { $0.isConfirmed }
        #expect(await caller.agent.reinvite(outgoing, body: Self.sdp("a", port: 41002)))
        try await callee.recorder.wait(for: "offer") { if case .offerReceived = $0 { true } else { false } }
        // Nobody answers: 500 after the timeout, and a new offer is possible again.
        try await Task.sleep(for: .milliseconds(800))
        #expect(await caller.agent.reinvite(outgoing, body: Self.sdp("a", port: 42002)))
        await caller.agent.hangUp(outgoing)
        await caller.shutdown()
        await callee.shutdown()
    }

    /// RFC 4028 between two of our agents, with intervals short enough for a test: the caller
    /// refreshes at half the interval; when it vanishes (no BYE), the callee ends the call at
    /// the interval less a third.
    @Test func sessionTimersRefreshAndEndAVanishedSession() async throws {
        let callee = try await AgentHarness(transports: [.udp]) {
            $0.minimumSessionExpires = 2
        }
        let caller = try await AgentHarness(transports: [.udp]) {
            $0.sessionExpires = 3
            $0.minimumSessionExpires = 2
        }
        let outgoing = try await caller.agent.call(
            SIPURI(user: "callee", host: "127.0.0.1", port: callee.port(.udp)), via: SIPDestination(transport: .udp, host: "127.0.0.1", port: callee.port(.udp)))
        try await callee.recorder.wait(for: "ACK") { $0.isConfirmed }
        #expect(await caller.agent.sessionTimer(of: outgoing) == SIPSessionTimer(interval: 3, weRefresh: true))
        // Two refreshes (at 1.5 s and 3 s), and the session still up after the interval.
        let deadline = ContinuousClock.now + .seconds(8)
        var refreshes = 0
        while refreshes < 2, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            refreshes = await caller.recorder.events.filter { if case .reinvited = $0 { true } else { false } }.count
        }
        #expect(refreshes >= 2, "the caller refreshed every 1.5 s: \(refreshes)")
        #expect(await callee.agent.activeCallCount == 1)
        // The caller vanishes: no BYE, no refresh. The callee gives up 2 s after the last one.
        await caller.shutdown()
        let vanishedAt = ContinuousClock.now
        try await callee.recorder.wait(for: "ended", timeout: .seconds(6)) { $0.isEnded }
        #expect(ContinuousClock.now - vanishedAt < .seconds(4))
        await callee.shutdown()
    }

    @Test func anIntervalBelowTheCalleesMinimumIsRetriedWithItsMinSE() async throws {
        let callee = try await AgentHarness(transports: [.udp]) { $0.minimumSessionExpires = 120 }
        let caller = try await AgentHarness(transports: [.udp]) {
            $0.sessionExpires = 100
            $0.minimumSessionExpires = 2
        }
        let outgoing = try await caller.agent.call(
            SIPURI(user: "callee", host: "127.0.0.1", port: callee.port(.udp)), via: SIPDestination(transport: .udp, host: "127.0.0.1", port: callee.port(.udp)))
        try await caller.recorder.wait(for: "answered") { $0.isAnswered }
        #expect(await caller.agent.sessionTimer(of: outgoing)?.interval == 120)
        await caller.agent.hangUp(outgoing)
        try await callee.recorder.wait(for: "ended") { $0.isEnded }
        await caller.shutdown()
        await callee.shutdown()
    }
}
