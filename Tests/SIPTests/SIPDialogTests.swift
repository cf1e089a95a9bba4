import SIP
import Testing

@Suite("Dialogs (RFC 3261 §12, §14)")
struct SIPDialogTests {
    static let invite = try! parseSIP(
        """
        INVITE sip:bob@biloxi.example.com SIP/2.0
        Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8
        Max-Forwards: 70
        To: Bob <sip:bob@biloxi.example.com>
        From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
        Call-ID: a84b4c76e66710
        CSeq: 314159 INVITE
        Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>
        Contact: <sip:alice@pc33.atlanta.example.com>
        Content-Length: 0


        """)

    static func ok() -> SIPMessage {
        var ok = SIPResponseFactory.response(to: invite, status: 200, toTag: "a6c85cf")
        SIPResponseFactory.copyRecordRoute(from: invite, into: &ok)
        ok.headers.add(.contact, "<sip:bob@192.0.2.4>")
        return ok
    }

    static let via = SIPVia(transport: "UDP", host: "pc33.atlanta.example.com", parameters: [SIPParameter(name: "branch", value: "z9hG4bKnew")])
    static let aliceContact = SIPNameAddress(uri: try! SIPURIParser.parseSIP("sip:alice@pc33.atlanta.example.com"))

    @Test func uacDialogFromTwoHundred() throws {
        var dialog = try #require(SIPDialog(uacRequest: Self.invite, response: Self.ok(), localContact: Self.aliceContact))
        #expect(dialog.id == SIPDialogID(callID: "a84b4c76e66710", localTag: "1928301774", remoteTag: "a6c85cf"))
        #expect(dialog.state == .confirmed)
        #expect(dialog.remoteTarget.description == "sip:bob@192.0.2.4")
        // UAC route set: Record-Route reversed.
        #expect(dialog.routeSet.compactMap(\.sipURI?.host) == ["p1.example.com", "p2.example.com"])
        let ack = dialog.makeACK(inviteSequence: 314159, via: Self.via)
        #expect(ack.cseq == SIPCSeq(314159, .ack))
        #expect(ack.requestURI?.description == "sip:bob@192.0.2.4")
        #expect(ack.routes.count == 2)
        let bye = dialog.makeRequest(.bye, via: Self.via)
        #expect(bye.cseq == SIPCSeq(314160, .bye))
        #expect(bye.to?.tag == "a6c85cf" && bye.from?.tag == "1928301774")
        #expect(dialog.matches(Self.ok()))
    }

    @Test func uasDialogFromInvite() throws {
        let bobContact = SIPNameAddress(uri: try SIPURIParser.parseSIP("sip:bob@192.0.2.4"))
        var dialog = try #require(SIPDialog(uasRequest: Self.invite, localTag: "a6c85cf", localContact: bobContact))
        #expect(dialog.routeSet.compactMap(\.sipURI?.host) == ["p2.example.com", "p1.example.com"])
        #expect(dialog.remoteSequence == 314159)
        // An in-dialog request with a lower CSeq is refused with 500 (§12.2.2).
        var bye = Self.invite
        bye.startLine = .request(SIPRequestLine(method: .bye, uri: Self.invite.requestURI!, version: .v2))
        bye.headers.set(.to, "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf")
        bye.headers.set(.cseq, "314158 BYE")
        #expect(dialog.receive(bye) == .reject(status: 500, retryAfter: nil))
        bye.headers.set(.cseq, "314160 BYE")
        #expect(dialog.matches(bye))
        #expect(dialog.receive(bye) == .accept)
        #expect(dialog.state == .terminated)
    }

    @Test func strictRouterGetsTheRequestURI() throws {
        var ok = Self.ok()
        ok.headers.set(.recordRoute, "<sip:strict.example.com>")
        var dialog = try #require(SIPDialog(uacRequest: Self.invite, response: ok, localContact: Self.aliceContact))
        let bye = dialog.makeRequest(.bye, via: Self.via)
        // §12.2.1.1: the strict router is the Request-URI; the remote target is the last Route.
        #expect(bye.requestURI?.description == "sip:strict.example.com")
        #expect(bye.routes.last?.uri.description == "sip:bob@192.0.2.4")
    }

    @Test func reInviteGlareAnswers491AndRetriesInTheRightWindow() throws {
        var dialog = try #require(SIPDialog(uacRequest: Self.invite, response: Self.ok(), localContact: Self.aliceContact))
        let began = dialog.beginOutgoingInvite()
        let second = dialog.beginOutgoingInvite()
        #expect(began)
        #expect(!second, "one re-INVITE at a time")
        var reinvite = Self.invite
        reinvite.headers.set(.from, "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf")
        reinvite.headers.set(.to, "Alice <sip:alice@atlanta.example.com>;tag=1928301774")
        reinvite.headers.set(.cseq, "7 INVITE")
        #expect(dialog.receive(reinvite) == .reject(status: 491, retryAfter: nil))
        var generator = SplitMix64(seed: 7)
        for _ in 0..<100 {
            let delay = dialog.glareRetryDelay(using: &generator)
            // We own the Call-ID: 2.1 s to 4 s in 10 ms steps (§14.1).
            #expect(delay >= .milliseconds(2100) && delay <= .seconds(4))
            #expect(delay.components.attoseconds % 10_000_000_000_000_000 == 0)
        }
        dialog.finishOutgoingInvite(response: SIPResponseFactory.response(to: reinvite, status: 491))
        #expect(dialog.receive(reinvite) == .accept)
    }

    @Test func earlyDialogConfirmsOnTwoHundred() throws {
        var ringing = SIPResponseFactory.response(to: Self.invite, status: 180, toTag: "a6c85cf")
        ringing.headers.add(.contact, "<sip:bob@192.0.2.99>")
        var dialog = try #require(SIPDialog(uacRequest: Self.invite, response: ringing, localContact: Self.aliceContact))
        #expect(dialog.state == .early)
        dialog.confirm(with: Self.ok())
        #expect(dialog.state == .confirmed)
        #expect(dialog.remoteTarget.description == "sip:bob@192.0.2.4")
    }
}
