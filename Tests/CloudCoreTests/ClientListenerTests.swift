import CloudCore
import Foundation
import PeerTestSupport
import SIPTransport
import Testing
import X509

/// Real client apps at the core (issue 19): devices and clients each have a SIPS listener; the
/// clients' never sends a TLS CertificateRequest (liblinphone turns one into a key-password
/// prompt and waits), and the core's own certificate names the domain clients dial.
@Suite("Clients' listener", .serialized)
struct ClientListenerTests {
    static func core() async throws -> CoreHarness {
        try await CoreHarness.start { c in
            c.clientTLSListen = [.init("127.0.0.1:0")!]
            c.domain = "symphony.example"
        }
    }

    /// Whether the server at `port` sent a CertificateRequest in the handshake (openssl's trace).
    static func requestsACertificate(port: Int, caFile: String) async throws -> Bool {
        let peer = try PeerProcess("openssl", ["s_client", "-msg", "-connect", "127.0.0.1:\(port)", "-CAfile", caFile, "-servername", "localhost"])
        _ = try? await peer.wait(timeout: .seconds(10))
        let trace = peer.text
        guard trace.contains("Verify return code: 0 (ok)") else { throw PeerError("no verified handshake with port \(port):\n\(trace.suffix(2000))") }
        return trace.contains("CertificateRequest")
    }

    @Test func theDevicesListenerAsksForACertificateTheClientsListenerDoesNot() async throws {
        let core = try await Self.core()
        let ca = core.server.configuration.resolvedCACertificateFile
        let clientPort = try #require(core.server.clientTLSAddresses.first?.port)
        #expect(try await Self.requestsACertificate(port: core.port(.tls), caFile: ca), "devices present their certificate: the handshake asks for it")
        #expect(try await !Self.requestsACertificate(port: clientPort, caFile: ca), "the clients' listener asks for none")
        await core.stop()
    }

    /// liblinphone registers on the clients' listener without a prompt; on the devices' it asks
    /// for a key password (why the clients need a listener of their own).
    @Test func linphoneRegistersOnTheClientsListenerWithoutAPrompt() async throws {
        let core = try await Self.core()
        let ca = core.server.configuration.resolvedCACertificateFile
        let clientPort = try #require(core.server.clientTLSAddresses.first?.port)
        let scratch = try ScratchDirectory()
        let phone = try Linphone(
            scratch: scratch, identity: "sip:alice@symphony.example", proxy: "sip:localhost:\(clientPort);transport=tls",
            username: "alice", password: "alice-pw", realm: core.server.configuration.realm, caFile: ca)
        defer { phone.stop() }
        try await phone.waitUntilRegistered()
        #expect(!phone.askedForAPassword, "no key-password prompt:\n\(phone.peer.text.suffix(2000))")
        try await core.eventually("alice's binding at the core") { await !core.server.proxy.contacts(of: "alice").isEmpty }
        phone.stop()

        let devicesScratch = try ScratchDirectory()
        let onDevices = try Linphone(
            scratch: devicesScratch, identity: "sip:carol@symphony.example", proxy: "sip:localhost:\(core.port(.tls));transport=tls",
            username: "carol", password: "carol-pw", realm: core.server.configuration.realm, caFile: ca)
        defer { onDevices.stop() }
        let deadline = ContinuousClock.now + .seconds(15)
        while !onDevices.askedForAPassword, ContinuousClock.now < deadline {
            onDevices.send("status register")
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(onDevices.askedForAPassword, "liblinphone prompts on a certificate request:\n\(onDevices.peer.text.suffix(2000))")
        onDevices.stop()
        await core.stop()
    }

    /// Clients check the name they dial as a DNS name: the certificate the core issues itself
    /// names the domain and the advertised name; one that names neither is issued again.
    @Test func theServerCertificateNamesTheDomainClientsDial() async throws {
        let core = try await CoreHarness.start { c in
            c.domain = "symphony.example"
            c.advertise = "sip.symphony.example"
        }
        let pem = try String(contentsOfFile: core.server.configuration.resolvedCertificateFile, encoding: .utf8)
        let certificate = try Certificate(pemEncoded: pem)
        let names = try #require(try certificate.extensions.subjectAlternativeNames)
        let dns = names.compactMap { name -> String? in if case .dnsName(let text) = name { text } else { nil } }
        #expect(Set(dns).isSuperset(of: ["symphony.example", "sip.symphony.example", "localhost"]), "\(dns)")
        await core.stop()
    }
}
