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
            $0.answerAfter = nil
        }
        let caller = try await AgentHarness(transports: [.udp]) { $0.user = "caller" }
        let offer = Self.sdp("legacy", port: 40002), answer = Self.sdp("cloud", port: 50002)
        let target = SIPURI(user: "callee", host: "127.0.0.1", port: callee.port(.udp))
        let outgoing = try await caller.agent.call(
            target, via: SIPDestination(transport: .udp, host: "127.0.0.1", port: callee.port(.udp)), from: "gw1-ch3", body: offer)

        guard case .incomingCall(let incoming, let from) = try await callee.recorder.wait(for: "incoming", { $0.isIncoming }) else { return }
        #expect(from.contains("gw1-ch3@"))
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
        let callee = try await AgentHarness(transports: [.udp]) { $0.answerAfter = nil }
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
}
