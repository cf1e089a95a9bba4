@testable import CloudCore
import Foundation
import NIOCore
import PeerTestSupport
import SIP
import SIPTransport
import Testing

/// A SIP phone made by hand over UDP: it writes exactly the requests a test wants (forged ones
/// too) and reads what comes back.
final class HandPhone: @unchecked Sendable {
    let socket: UDPSocket
    let user: String
    let core: CoreHarness
    let token: String
    let host: String

    init(_ user: String, core: CoreHarness, host: String = "127.0.0.1") throws {
        socket = try UDPSocket(host: host)
        self.user = user
        self.core = core
        self.host = host
        token = try core.token(for: user)
    }

    var contact: String { "sip:\(user)@\(host):\(socket.port)" }

    func send(_ message: SIPMessage) {
        socket.send(Array(buffer: SIPMessageSerializer.serialize(message)), to: core.port(.udp))
    }

    /// A request of ours: Via, From (with `fromTag`), To, Call-ID, CSeq, Max-Forwards.
    func request(
        _ method: SIPMethod, to uri: String, toUser: String, fromTag: String = SIPIdentifiers.tag(), toTag: String? = nil,
        callID: String = SIPIdentifiers.callID(host: "test"), cseq: UInt32 = 1, headers: [(SIPHeaderName, String)] = []
    ) throws -> SIPMessage {
        var message = SIPMessage.request(method, try SIPURIParser.parse(uri))
        message.headers.add(.via, "SIP/2.0/UDP \(host):\(socket.port);branch=z9hG4bK\(SIPIdentifiers.tag());rport")
        message.headers.add(.maxForwards, "70")
        message.headers.add(.from, "<sip:\(user)@symphony.local>;tag=\(fromTag)")
        message.headers.add(.to, "<sip:\(toUser)@symphony.local>" + (toTag.map { ";tag=\($0)" } ?? ""))
        message.headers.add(.callID, callID)
        message.headers.add(.cseq, "\(cseq) \(method.rawValue)")
        message.headers.add(.contact, "<\(contact)>")
        for (name, value) in headers { message.headers.add(name, value) }
        return message
    }

    func register(expires: Int = 600, contact: String? = nil) async throws -> Int {
        var register = try request(.register, to: "sip:symphony.local", toUser: user, headers: [(.authorization, "Bearer \(token)"), (.expires, String(expires))])
        if let contact { register.headers.set(.contact, "<\(contact)>") }
        send(register)
        return try await response(to: register).statusCode ?? 0
    }

    /// The next message that `matches`, within `timeout` (others are skipped).
    func next(timeout: Duration = .seconds(5), _ matches: (SIPMessage) -> Bool = { _ in true }) async throws -> SIPMessage? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let bytes = try await socket.receive(timeout: deadline - ContinuousClock.now) else { return nil }
            if let message = try? SIPMessageParser().parse(bytes), matches(message) { return message }
        }
        return nil
    }

    /// The final response to `request` (same Call-ID and CSeq method).
    func response(to request: SIPMessage, timeout: Duration = .seconds(5)) async throws -> SIPMessage {
        let found = try await next(timeout: timeout) {
            !$0.isRequest && ($0.statusCode ?? 0) >= 200 && $0.callID == request.callID && $0.cseq?.method == request.method
        }
        guard let found else { throw PeerError("no final response to \(request.method?.rawValue ?? "?") \(request.callID ?? "")") }
        return found
    }

    /// Answers `request` with `status`; a 2xx to an INVITE copies Record-Route and adds our Contact.
    func answer(_ request: SIPMessage, status: Int, toTag: String) {
        var response = SIPResponseFactory.response(to: request, status: status, toTag: toTag)
        if status < 300, request.method == .invite {
            SIPResponseFactory.copyRecordRoute(from: request, into: &response)
            response.headers.add(.contact, "<\(contact)>")
        }
        send(response)
    }
}

/// Who the core relays for (issue 16): in-dialog requests only along a dialog the core knows or
/// a route it signed, never to where a stranger's header points; the limits on calls, contacts
/// and refused requests.
@Suite("Core: relaying and limits", .serialized)
struct CoreRelayTests {
    /// alice (callee) registered; bob calls her; she answers; bob ACKs along the route set.
    struct AnsweredCall {
        let alice: HandPhone
        let bob: HandPhone
        let invite: SIPMessage
        let aliceTag: String
        let routeSet: [String]
        var callID: String { invite.callID ?? "" }
        var bobTag: String { invite.from?.tag ?? "" }
    }

    static func answeredCall(_ core: CoreHarness) async throws -> AnsweredCall {
        let alice = try HandPhone("alice", core: core), bob = try HandPhone("bob", core: core)
        #expect(try await alice.register() == 200)
        let invite = try bob.request(.invite, to: "sip:alice@symphony.local", toUser: "alice", headers: [(.proxyAuthorization, "Bearer \(bob.token)")])
        bob.send(invite)
        guard let forked = try await alice.next(timeout: .seconds(5), { $0.method == .invite }) else { throw PeerError("the INVITE did not reach alice") }
        let aliceTag = SIPIdentifiers.tag()
        alice.answer(forked, status: 200, toTag: aliceTag)
        let ok = try await bob.response(to: invite)
        #expect(ok.statusCode == 200)
        // RFC 3261 §12.1.2: the caller's route set is the Record-Route in reverse.
        let routeSet = ok.recordRoutes.reversed().map { "<\($0.uri)>" }
        #expect(routeSet.allSatisfy { $0.contains(";symcore=") && $0.count > 40 }, "every Record-Route is signed: \(routeSet)")
        var ack = try bob.request(.ack, to: alice.contact, toUser: "alice", fromTag: invite.from?.tag ?? "", toTag: aliceTag, callID: invite.callID ?? "")
        for route in routeSet { ack.headers.add(.route, route) }
        bob.send(ack)
        #expect(try await alice.next(timeout: .seconds(3), { $0.method == .ack }) != nil, "the ACK is relayed")
        return AnsweredCall(alice: alice, bob: bob, invite: invite, aliceTag: aliceTag, routeSet: routeSet)
    }

    @Test("Forged routes and requests of no dialog are refused, and the core connects to nobody they name (ss)")
    func forgedRoutesAreRefusedAndGoNowhere() async throws {
        let core = try await CoreHarness.start()
        let attacker = try HandPhone("mallory", core: core)
        let victimUDP = try UDPSocket(host: "127.0.0.5")
        let victimTCP = try TCPVictim(host: "127.0.0.5")
        let coreHop = "sip:127.0.0.1:\(core.port(.udp));transport=udp;lr"
        let cases: [(String, [String], Int)] = [
            ("the marker without a signature", ["<\(coreHop);symcore>"], 403),
            ("the marker with a made-up signature", ["<\(coreHop);symcore=\(String(repeating: "ab", count: 16))>"], 403),
            ("a signature of another dialog", ["<\(coreHop);symcore=00112233445566778899aabbccddeeff>"], 403),
            ("no route at all", [], 481),
            ("a foreign route only", ["<sip:127.0.0.5:\(victimTCP.port);transport=tcp;lr>"], 481),
        ]
        for (what, routes, status) in cases {
            for (method, target) in [(SIPMethod.bye, "sip:x@127.0.0.5:\(victimUDP.port)"), (.info, "sip:x@127.0.0.5:\(victimTCP.port);transport=tcp")] {
                var request = try attacker.request(method, to: target, toUser: "alice", toTag: "t1")
                for route in routes { request.headers.add(.route, route) }
                attacker.send(request)
                let answer = try await attacker.response(to: request)
                #expect(answer.statusCode == status, "\(what), \(method.rawValue): \(answer.statusCode ?? 0)")
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await victimUDP.receive(timeout: .milliseconds(100)) == nil, "nothing was sent to the UDP victim")
        #expect(victimTCP.accepted() == 0, "nobody connected to the TCP victim")
        #expect(try await victimTCP.socketStatistics().isEmpty, "ss lists no socket toward the victim")
        #expect(await core.server.proxy.statistics.inDialogRefused == cases.count * 2)
        await core.stop()
    }

    @Test("A BYE that knows the Call-ID but not the tags, or carries a route signed for another dialog, ends nothing; the caller's BYE along its route set does")
    func aByeNeedsTheDialogNotJustItsCallID() async throws {
        let core = try await CoreHarness.start()
        let call = try await Self.answeredCall(core)
        let attacker = try HandPhone("mallory", core: core)
        #expect(await core.server.proxy.activeDialogs == 1)

        // The right Call-ID, made-up tags, with and without the (copied) signed route.
        for (fromTag, toTag, routes) in [("guess", call.aliceTag, call.routeSet), (call.bobTag, "guess", [String]()), ("guess", "guess2", call.routeSet)] {
            var bye = try attacker.request(.bye, to: call.alice.contact, toUser: "alice", fromTag: fromTag, toTag: toTag, callID: call.callID, cseq: 9)
            for route in routes { bye.headers.add(.route, route) }
            attacker.send(bye)
            let answer = try await attacker.response(to: bye)
            #expect([403, 481].contains(answer.statusCode ?? 0), "refused: \(answer.statusCode ?? 0)")
        }
        // A route signed for this dialog, sent in another one (another Call-ID): not ours.
        var replayed = try attacker.request(.bye, to: call.alice.contact, toUser: "alice", fromTag: call.bobTag, toTag: call.aliceTag, cseq: 9)
        for route in call.routeSet { replayed.headers.add(.route, route) }
        attacker.send(replayed)
        #expect(try await attacker.response(to: replayed).statusCode == 403)
        #expect(try await call.alice.next(timeout: .milliseconds(500), { $0.method == .bye }) == nil, "alice got no BYE")
        #expect(await core.server.proxy.activeDialogs == 1, "the call goes on")

        // bob hangs up properly.
        var bye = try call.bob.request(.bye, to: call.alice.contact, toUser: "alice", fromTag: call.bobTag, toTag: call.aliceTag, callID: call.callID, cseq: 2)
        for route in call.routeSet { bye.headers.add(.route, route) }
        call.bob.send(bye)
        let relayed = try #require(try await call.alice.next(timeout: .seconds(3), { $0.method == .bye }))
        #expect(relayed.routes.isEmpty, "the core popped its own routes")
        call.alice.answer(relayed, status: 200, toTag: call.aliceTag)
        #expect(try await call.bob.response(to: bye).statusCode == 200)
        #expect(await core.server.proxy.activeDialogs == 0)
        await core.stop()
    }

    @Test("A dialog the core no longer knows (lost in a restart): a BYE along the signed route reaches the other side where it registered; without one it is 481")
    func aLostDialogsByeFollowsTheSignedRouteToARegistration() async throws {
        let core = try await CoreHarness.start()
        let call = try await Self.answeredCall(core)
        await core.server.proxy.forgetDialogs()
        #expect(await core.server.proxy.activeDialogs == 0)
        var bye = try call.bob.request(.bye, to: call.alice.contact, toUser: "alice", fromTag: call.bobTag, toTag: call.aliceTag, callID: call.callID, cseq: 2)
        for route in call.routeSet { bye.headers.add(.route, route) }
        call.bob.send(bye)
        let relayed = try #require(try await call.alice.next(timeout: .seconds(3), { $0.method == .bye }), "the BYE reached alice over her registration")
        call.alice.answer(relayed, status: 200, toTag: call.aliceTag)
        #expect(try await call.bob.response(to: bye).statusCode == 200)
        // Toward a contact nobody registered, the BYE is answered for the dialog that is gone.
        var stray = try call.bob.request(.bye, to: "sip:alice@127.0.0.5:5999", toUser: "alice", fromTag: call.bobTag, toTag: call.aliceTag, callID: call.callID, cseq: 3)
        for route in call.routeSet { stray.headers.add(.route, route) }
        call.bob.send(stray)
        #expect(try await call.bob.response(to: stray).statusCode == 481)
        await core.stop()
    }

    @Test("Routes signed before a restart still verify after it (the key comes from the token key); another core's do not")
    func routeSignaturesSurviveARestart() throws {
        let secret = Array("a token key that stays on disk".utf8)
        let before = RouteSignature(deriving: secret), after = RouteSignature(deriving: secret), other = RouteSignature(deriving: Array("another core".utf8))
        let uri = CloudCoreProxy.routeIdentity(host: "192.0.2.1", port: 5061, transport: "tls")
        let value = before.sign(callID: "c1", callerTag: "t1", uri: uri)
        #expect(value.count == 32)
        #expect(after.verify(value, callID: "c1", tags: ["t2", "t1"], uri: uri), "either tag may be the caller's")
        #expect(after.verify(value.uppercased(), callID: "c1", tags: ["t1"], uri: uri))
        #expect(!other.verify(value, callID: "c1", tags: ["t1"], uri: uri))
        #expect(!after.verify(value, callID: "c2", tags: ["t1"], uri: uri))
        #expect(!after.verify(value, callID: "c1", tags: ["t2"], uri: uri))
        #expect(!after.verify(value, callID: "c1", tags: ["t1"], uri: CloudCoreProxy.routeIdentity(host: "192.0.2.1", port: 5061, transport: "tcp")))
        #expect(!after.verify(String(value.dropLast()), callID: "c1", tags: ["t1"], uri: uri))
        // Length-prefixed: moving characters between Call-ID and tag is another input.
        #expect(!after.verify(value, callID: "c", tags: ["1t1"], uri: uri))
    }

    @Test("Bogus Bearer tokens from one source: past the allowance no more are verified or answered; another source registers meanwhile")
    func bogusTokensAreLimitedBeforeTheVerify() async throws {
        let core = try await CoreHarness.start { $0.unauthenticatedBurst = 20; $0.unauthenticatedPerSecond = 5 }
        let attacker = try HandPhone("alice", core: core, host: "127.0.0.6")
        let bogus = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9." + String(repeating: "A", count: 86)
        for _ in 0..<300 {
            attacker.send(try attacker.request(.register, to: "sip:symphony.local", toUser: "alice", headers: [(.authorization, "Bearer \(bogus)")]))
        }
        let carol = try HandPhone("carol", core: core)
        #expect(try await carol.register() == 200)
        try await core.eventually("the flood handled") { await core.server.proxy.statistics.rateLimited + core.server.proxy.statistics.forbidden >= 300 }
        let statistics = await core.server.proxy.statistics
        #expect(statistics.forbidden <= 25, "at most the burst (and what refilled) was verified and answered 403: \(statistics)")
        #expect(statistics.rateLimited >= 270, "the rest dropped unverified: \(statistics)")
        var answers = 0
        while try await attacker.next(timeout: .milliseconds(200)) != nil { answers += 1 }
        #expect(answers <= 25, "the flood got next to nothing back: \(answers)")
        await core.stop()
    }

    @Test("Limits per principal: calls at once (403 past it), contacts per address of record (503 past it); a channel has one spelling")
    func callsAndContactsPerPrincipalAreLimited() async throws {
        let core = try await CoreHarness.start { $0.callsPerPrincipal = 2; $0.bindingsPerAOR = 2 }
        let alice = try HandPhone("alice", core: core)
        #expect(try await alice.register() == 200)
        #expect(try await alice.register(contact: "sip:alice@127.0.0.1:7001") == 200)
        #expect(try await alice.register(contact: "sip:alice@127.0.0.1:7002") == 503, "a third contact is refused")
        #expect(try await alice.register(contact: "sip:alice@127.0.0.1:7001") == 200, "a refresh still passes")
        #expect(await core.server.proxy.contacts(of: "alice").count == 2)

        let bob = try HandPhone("bob", core: core)
        var statuses: [Int] = []
        for _ in 0..<3 {
            let invite = try bob.request(.invite, to: "sip:alice@symphony.local", toUser: "alice", headers: [(.proxyAuthorization, "Bearer \(bob.token)")])
            bob.send(invite)
            if let answer = try await bob.next(timeout: .seconds(1), { ($0.statusCode ?? 0) >= 200 && $0.callID == invite.callID }) {
                statuses.append(answer.statusCode ?? 0)
            }
        }
        #expect(statuses == [403], "two calls ring, the third is refused: \(statuses)")
        #expect(await core.server.proxy.statistics.callsOverLimit == 1)

        // Calls that ended do not count, also while the core still relays their late 2xx (Timer L).
        let answering = try HandPhone("carol", core: core)
        #expect(try await answering.register() == 200)
        let carolCaller = try HandPhone("alice", core: core)
        for index in 0..<3 {
            let invite = try carolCaller.request(.invite, to: "sip:carol@symphony.local", toUser: "carol", headers: [(.proxyAuthorization, "Bearer \(carolCaller.token)")])
            carolCaller.send(invite)
            let forked = try #require(try await answering.next { $0.method == .invite && $0.callID == invite.callID }, "call \(index) reached carol")
            let tag = SIPIdentifiers.tag()
            answering.answer(forked, status: 200, toTag: tag)
            let ok = try await carolCaller.response(to: invite)
            #expect(ok.statusCode == 200, "call \(index) of alice's: \(ok.statusCode ?? 0)")
            var bye = try carolCaller.request(.bye, to: answering.contact, toUser: "carol", fromTag: invite.from?.tag ?? "", toTag: tag, callID: invite.callID ?? "", cseq: 2)
            for route in ok.recordRoutes.reversed() { bye.headers.add(.route, "<\(route.uri)>") }
            carolCaller.send(bye)
            let relayed = try #require(try await answering.next { $0.method == .bye })
            answering.answer(relayed, status: 200, toTag: tag)
            _ = try await carolCaller.response(to: bye)
        }
        #expect(await core.server.proxy.statistics.callsOverLimit == 1, "three calls one after the other, each ended: none refused")

        #expect(Directory.channelParts("gw1-ch3")?.number == 3)
        for spelling in ["gw1-ch03", "gw1-ch+3", "gw1-ch003", "gw1-ch 3", "gw1-ch15", "gw1-ch0"] {
            #expect(Directory.channelParts(spelling) == nil, "\(spelling)")
        }
        await core.stop()
    }

    @Test("A Contact naming another host is never connected to: a call to it fails and the named host sees nobody")
    func aContactCannotSendTheCoreElsewhere() async throws {
        let core = try await CoreHarness.start()
        let victim = try TCPVictim(host: "127.0.0.5")
        let alice = try HandPhone("alice", core: core)
        #expect(try await alice.register(contact: "sip:alice@127.0.0.5:\(victim.port);transport=tcp") == 200)
        let bob = try HandPhone("bob", core: core)
        let invite = try bob.request(.invite, to: "sip:alice@symphony.local", toUser: "alice", headers: [(.proxyAuthorization, "Bearer \(bob.token)")])
        bob.send(invite)
        #expect(try await bob.response(to: invite).statusCode == 480)
        try await Task.sleep(for: .milliseconds(300))
        #expect(victim.accepted() == 0)
        #expect(try await victim.socketStatistics().isEmpty)
        await core.stop()
    }
}
