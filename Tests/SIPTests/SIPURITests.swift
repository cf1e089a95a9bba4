import SIP
import Testing

@Suite("URIs")
struct SIPURITests {
    @Test func sipURIComponents() throws {
        let uri = try SIPURIParser.parseSIP("sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent")
        #expect(uri.isSecure)
        #expect(uri.user == "alice")
        #expect(uri.password == "secret")
        #expect(uri.host == "atlanta.com")
        #expect(uri.port == 5061)
        #expect(uri.transport == "tcp")
        #expect(uri.parameters.has("lr"))
        #expect(uri.headers.map(\.name) == ["subject", "priority"])
    }

    @Test func ipv6ReferencesRFC5118() throws {
        let uri = try SIPURIParser.parseSIP("sip:[2001:db8::10]:5070")
        #expect(uri.host == "2001:db8::10")
        #expect(uri.description == "sip:[2001:db8::10]:5070")
        let mapped = try SIPURIParser.parseSIP("sip:[::ffff:192.0.2.128]")
        #expect(mapped.host == "::ffff:192.0.2.128")
        #expect(throws: SIPParseError.self) { try SIPURIParser.parseSIP("sip:[2001:db8:::1]") }
        #expect(throws: SIPParseError.self) { try SIPURIParser.parseSIP("sip:[fe80::1%eth0]") }
    }

    @Test func telAndOtherSchemes() throws {
        guard case .tel(let tel) = try SIPURIParser.parse("tel:+1-201-555-0123;phone-context=example.com") else {
            Issue.record("expected tel")
            return
        }
        #expect(tel.number == "+1-201-555-0123")
        #expect(tel.isGlobal)
        #expect(tel.parameters.value("phone-context") == "example.com")
        #expect(try SIPURIParser.parse("soap.beep://192.0.2.103:3002").scheme == "soap.beep")
    }

    @Test func escapesDecodeOnlyWhenAsked() throws {
        let uri = try SIPURIParser.parseSIP("sip:%61lice@atlanta.com;transport=TCP")
        #expect(uri.user == "%61lice")
        #expect(SIPURI.unescaped(uri.user!) == "alice")
        #expect(throws: SIPParseError.self) { try SIPURIParser.parseSIP("sip:al%6ice@atlanta.com%") }
    }

    @Test(arguments: [
        // RFC 3261 §19.1.4: equivalent pairs.
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp", true),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5", true),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5", true),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com", "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com", true),
        ("sip:alice@atlanta.com?subject=project%20x&priority=urgent", "sip:alice@atlanta.com?priority=urgent&subject=project%20x", true),
        // and not equivalent:
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP", false),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060", false),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp", false),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off", false),
    ])
    func equivalence(_ a: String, _ b: String, _ equal: Bool) throws {
        #expect(try SIPURIParser.parseSIP(a).isEquivalent(to: SIPURIParser.parseSIP(b)) == equal)
    }

    @Test func nameAddressForms() throws {
        var s = SIPScanner("\"A \\\"quoted\\\" name\" <sip:a@example.com;lr>;tag=x;q=0.5")
        let quoted = try SIPNameAddress.parseSingle(&s, header: "From")
        #expect(quoted.displayName == "\"A \\\"quoted\\\" name\"")
        #expect(quoted.sipURI?.parameters.has("lr") == true)
        #expect(quoted.tag == "x")
        var bare = SIPScanner("sip:+19725552222@gw1.example.net;unknownparam")
        let addr = try SIPNameAddress.parseSingle(&bare, header: "Contact")
        #expect(addr.sipURI?.parameters.isEmpty == true, "on a bare addr-spec ;params belong to the header")
        #expect(addr.parameters.has("unknownparam"))
        var list = SIPScanner("<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
        #expect(try SIPNameAddress.parseList(&list, header: "Route").count == 2)
    }
}
