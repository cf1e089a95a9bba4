import NIOCore
import SIP
import SIPTransport
import SIPUserAgent
import Testing

/// The registrar role on its own, on a manual clock: expiry, the longest registration it
/// grants, and the bounds that keep a REGISTER flood from growing it.
@Suite("SIP registrar role")
struct SIPRegistrarTests {
    static let flow = SIPFlow(
        transport: .udp, local: try! SocketAddress(ipAddress: "127.0.0.1", port: 5060), remote: try! SocketAddress(ipAddress: "192.0.2.7", port: 5060),
        connectionID: 0)

    static func register(_ user: String, contacts: [String], expires: Int? = 600, cseq: Int = 1) throws -> SIPMessage {
        var text = "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK\(user)\(cseq)\r\nMax-Forwards: 70\r\n"
        text += "To: <sip:\(user)@127.0.0.1>\r\nFrom: <sip:\(user)@127.0.0.1>;tag=t\r\nCall-ID: reg-\(user)\r\nCSeq: \(cseq) REGISTER\r\n"
        for contact in contacts { text += "Contact: \(contact)\r\n" }
        if let expires { text += "Expires: \(expires)\r\n" }
        return try SIPMessageParser().parse(text + "Content-Length: 0\r\n\r\n")
    }

    @Test func bindingsLapseAtTheirExpiryAndLongRegistrationsAreShortened() throws {
        var registrar = SIPRegistrar(.init())
        let (ok, registered) = registrar.receive(try Self.register("alice", contacts: ["<sip:alice@192.0.2.7>"], expires: 86_400), flow: Self.flow, now: 1000)
        #expect(ok.statusCode == 200 && registered?.aor == "sip:alice@127.0.0.1")
        #expect(ok.headers[.contact]?.contains("expires=3600") == true, "a day is shortened to the hour granted at most: \(ok.headers[.contact] ?? "-")")
        #expect(registrar.current(at: 4599)["sip:alice@127.0.0.1"]?.count == 1)
        #expect(registrar.current(at: 4600).isEmpty, "gone at its expiry")
    }

    @Test func aFloodOfNewAddressesOfRecordStopsAtTheBoundWith503() throws {
        var settings = SIPRegistrar.Settings()
        settings.maxAddressesOfRecord = 3
        var registrar = SIPRegistrar(settings)
        for user in ["a", "b", "c"] {
            #expect(registrar.receive(try Self.register(user, contacts: ["<sip:\(user)@192.0.2.7>"]), flow: Self.flow, now: 0).response.statusCode == 200)
        }
        let full = registrar.receive(try Self.register("d", contacts: ["<sip:d@192.0.2.7>"]), flow: Self.flow, now: 1).response
        #expect(full.statusCode == 503 && full.headers[.retryAfter] == "60")
        #expect(registrar.receive(try Self.register("a", contacts: ["<sip:a@192.0.2.7>"], cseq: 2), flow: Self.flow, now: 1).response.statusCode == 200,
                "a refresh of one already held still works")
        // Once the old ones lapse there is room again.
        #expect(registrar.receive(try Self.register("d", contacts: ["<sip:d@192.0.2.7>"]), flow: Self.flow, now: 700).response.statusCode == 200)
        #expect(registrar.current(at: 700).count == 1)
    }

    @Test func tooManyContactsForOneAddressGet503AndNothingChanges() throws {
        var settings = SIPRegistrar.Settings()
        settings.maxContactsPerAddress = 2
        var registrar = SIPRegistrar(settings)
        let three = (1...3).map { "<sip:alice@192.0.2.\($0)>" }
        #expect(registrar.receive(try Self.register("alice", contacts: three), flow: Self.flow, now: 0).response.statusCode == 503)
        #expect(registrar.current(at: 0).isEmpty)
        #expect(registrar.receive(try Self.register("alice", contacts: Array(three.prefix(2))), flow: Self.flow, now: 0).response.statusCode == 200)
    }

    @Test func theWildcardNeedsExpiresZeroAndRemovesEverything() throws {
        var registrar = SIPRegistrar(.init())
        _ = registrar.receive(try Self.register("alice", contacts: ["<sip:alice@192.0.2.7>"]), flow: Self.flow, now: 0)
        #expect(registrar.receive(try Self.register("alice", contacts: ["*"], expires: 60, cseq: 2), flow: Self.flow, now: 1).response.statusCode == 400)
        #expect(registrar.receive(try Self.register("alice", contacts: ["*"], expires: 0, cseq: 3), flow: Self.flow, now: 1).response.statusCode == 200)
        #expect(registrar.current(at: 1).isEmpty)
    }

    @Test func withUsersAnUnauthenticatedRegisterIsChallenged() throws {
        var registrar = SIPRegistrar(.init(users: ["alice": "secret"]))
        let answer = registrar.receive(try Self.register("alice", contacts: ["<sip:alice@192.0.2.7>"]), flow: Self.flow, now: 0)
        #expect(answer.response.statusCode == 401 && answer.registered == nil)
        #expect(registrar.current(at: 0).isEmpty)
    }
}
