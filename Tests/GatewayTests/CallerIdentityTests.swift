import Gateway
import NIOCore
import SIP
import SIPTransport
import SIPUserAgent
import Testing

/// Who calls, as each side shows it: a station's name and number toward the cloud, the
/// asserted cloud user toward the stations; every name from outside made safe for a header.
@Suite("Caller identity across the bridge")
struct CallerIdentityTests {
    static func from(_ text: String) throws -> SIPNameAddress {
        var scanner = SIPScanner(text)
        return try SIPNameAddress.parseSingle(&scanner, header: "From")
    }

    static let channel = BridgeConfiguration.Channel(index: 1, number: "801", cloudTarget: "desk", legacyTargets: ["sip:door@192.0.2.5"])

    @Test func towardTheCloudTheChannelsNameOrTheStationsThenItsNumber() throws {
        var named = Self.channel
        named.displayName = "Lobby door"
        #expect(CallerIdentity.towardCloud(channel: named, station: try Self.from("\"Door 1\" <sip:801@192.0.2.5>;tag=a")) == "Lobby door (801)")
        #expect(CallerIdentity.towardCloud(channel: Self.channel, station: try Self.from("\"Door 1\" <sip:801@192.0.2.5>;tag=a")) == "Door 1 (801)")
        #expect(CallerIdentity.towardCloud(channel: Self.channel, station: try Self.from("<sip:801@192.0.2.5>;tag=a")) == "801")
        #expect(CallerIdentity.towardCloud(channel: named, station: nil) == "Lobby door")
        // A user part that is no number or plain name is left out; the name stays.
        #expect(CallerIdentity.towardCloud(channel: named, station: try Self.from("<sip:%22%3Cx%3E@192.0.2.5>;tag=a")) == "Lobby door")
    }

    @Test func hostileDisplayNamesAreMadeSafe() throws {
        // Quotes and backslashes cannot break out of the quoted display name; controls go.
        let station = try Self.from("\"Door \\\"1\\\" \\\\ x\" <sip:801@192.0.2.5>;tag=a")
        #expect(station.displayText == "Door \"1\" \\ x")
        #expect(CallerIdentity.towardCloud(channel: Self.channel, station: station) == "Door 1  x (801)")
        #expect(SIPNameAddress.safeDisplayName(String(repeating: "a", count: 500))?.count == 64)
        #expect(SIPNameAddress.safeDisplayName("\u{1}\u{7F}  ") == nil)
    }

    @Test func towardTheStationsTheAssertedIdentityWhenTheCoreGaveIt() throws {
        var invite = SIPMessage.request(.invite, .sip(SIPURI(user: "gw1-ch1", host: "192.0.2.1")))
        invite.headers.add(.from, "<sips:alice@symphony.local>;tag=x")
        let address = try SocketAddress(ipAddress: "192.0.2.1", port: 5061)
        let flow = SIPFlow(transport: .tls, local: address, remote: address, connectionID: 1)
        #expect(CallerIdentity.towardStations(SIPIncomingCall(invite, flow: flow), trusted: true) == "alice")
        invite.headers.add(.pAssertedIdentity, "\"Alice Example\" <sips:alice@symphony.local>")
        #expect(CallerIdentity.towardStations(SIPIncomingCall(invite, flow: flow), trusted: true) == "Alice Example")
        // From a mesh peer nobody asserted anything: its own From.
        #expect(CallerIdentity.towardStations(SIPIncomingCall(invite, flow: flow), trusted: false) == "alice")
        invite.headers.set(.from, "\"Concierge\" <sips:alice@symphony.local>;tag=x")
        #expect(CallerIdentity.towardStations(SIPIncomingCall(invite, flow: flow), trusted: false) == "Concierge")
    }
}

/// Which REFER targets the gateway calls (RFC 3515 blind transfer from the cloud leg).
@Suite("Transfer targets")
struct TransferTargetTests {
    @Test(arguments: [
        ("<sips:bob@symphony.local>", "bob"),
        ("sip:desk@SYMPHONY.local", "desk"),
        ("\"Bob\" <sips:bob@symphony.local;method=INVITE>", "bob"),
        ("<sips:bob@evil.example>", nil),
        ("<sips:bob@symphony.local?Replaces=abc%3Bto-tag%3D1>", nil),
        ("<sips:bob@symphony.local;method=BYE>", nil),
        ("<sips:bob%20x@symphony.local>", nil),
        ("<tel:+4930123>", nil),
        ("<sips:symphony.local>", nil),
        ("garbage <<>>", nil),
    ] as [(String, String?)])
    func onlyNamesOfTheCloudsDomain(_ referTo: String, _ expected: String?) {
        #expect(ChannelRouter.transferTarget(referTo, domain: "symphony.local") == expected)
    }

    @Test func aHugeReferToIsNotParsed() {
        #expect(ChannelRouter.transferTarget("<sips:" + String(repeating: "a", count: 600) + "@symphony.local>", domain: "symphony.local") == nil)
    }

    /// Which REFER is honoured and which refused with what, in the order the checks run.
    @Test func theVerdictOnAREFER() {
        func verdict(_ referTo: String = "<sips:bob@symphony.local>", fromCloud: Bool = true, connected: Bool = true, underWay: Bool = false, reachable: Bool = true) -> ChannelRouter.TransferVerdict {
            ChannelRouter.transferVerdict(referTo: referTo, fromCloud: fromCloud, connected: connected, transferUnderWay: underWay, domain: "symphony.local", cloudReachable: reachable)
        }
        #expect(verdict() == .accept(target: "bob"))
        #expect(verdict(fromCloud: false) == .refuse(status: 403, warning: "transfers are taken from the cloud leg only"))
        #expect(verdict(connected: false) == .refuse(status: 403, warning: "the call is not connected"))
        #expect(verdict(underWay: true) == .refuse(status: 491, warning: "a transfer is under way"))
        #expect(verdict("<sips:bob@evil.example>") == .refuse(status: 403, warning: "Refer-To must name a user or group of symphony.local"))
        #expect(verdict(reachable: false) == .refuse(status: 503, warning: "the cloud is not reachable"))
        #expect(verdict("<sips:bob@evil.example>", fromCloud: false) == .refuse(status: 403, warning: "transfers are taken from the cloud leg only"), "the leg is checked first")
    }
}
