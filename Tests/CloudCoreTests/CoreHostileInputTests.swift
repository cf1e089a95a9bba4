@testable import CloudCore
import NIOCore
import SIP
import SIPTransport
import Testing

/// Values the core takes from outside that are not SIP messages: its own state file, names in
/// requests that reach the directory (docs/RELIABILITY.md).
@Suite("Core: hostile state and names")
struct CoreHostileInputTests {
    static func binding(expiresAt: Double, contact: String = "sip:alice@192.0.2.10:5060") throws -> LocationBinding {
        let flow = SIPFlow(
            transport: .tls, local: try SocketAddress(ipAddress: "127.0.0.1", port: 5061), remote: try SocketAddress(ipAddress: "192.0.2.10", port: 40000),
            connectionID: 1)
        var scanner = SIPScanner(contact)
        let uri = try SIPNameAddress.parseSingle(&scanner, header: "Contact")
        return LocationBinding(
            addressOfRecord: "alice", contact: uri, instance: nil, regID: nil, expiresAt: expiresAt, callID: "c1", cseq: 1, flow: flow, principal: "user:alice")
    }

    @Test("Registrations restored from a tampered state file: an expiry that is not a time, or further ahead than a day, is not restored (was: a trap in the 200 OK's expires)")
    func restoredBindingsAreChecked() throws {
        let now = 1_000.0
        var location = LocationService()
        location.restore([
            try Self.binding(expiresAt: .infinity, contact: "sip:a@192.0.2.1"), try Self.binding(expiresAt: .nan, contact: "sip:b@192.0.2.2"),
            try Self.binding(expiresAt: 1e300, contact: "sip:c@192.0.2.3"), try Self.binding(expiresAt: -.infinity, contact: "sip:d@192.0.2.4"),
            try Self.binding(expiresAt: now + 3600, contact: "sip:ok@192.0.2.5"),
        ], now: now)
        let live = location.lookup("alice", now: now)
        #expect(live.count == 1 && live.first?.contact.uri.description == "sip:ok@192.0.2.5")
    }

    @Test("Names longer than any directory name are not looked up (they would fill the caches): users, devices, callables, rules, digest")
    func longNamesAreNotLookedUp() throws {
        let directory = try Directory(path: nil, realm: "symphony")
        try directory.createCompany("acme")
        try directory.createProject("hq", company: "acme")
        try directory.createSite("lobby", company: "acme", project: "hq")
        try directory.createUser("alice", site: "lobby", password: "secret")
        let long = String(repeating: "a", count: 8000)
        #expect(!directory.userExists(long) && !directory.deviceExists(long))
        #expect(try directory.callable(named: long) == nil && directory.forwardingRules(user: long).isEmpty)
        #expect(directory.ha1(user: long, algorithm: .md5) == nil && directory.ha1(user: "", algorithm: .md5) == nil)
        #expect(directory.userExists("alice") && directory.ha1(user: "alice", algorithm: .md5) != nil)
    }
}
