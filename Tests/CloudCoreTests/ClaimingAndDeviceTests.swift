@testable import CloudCore
import DeviceTrust
import Foundation
import GRDB
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PeerTestSupport
import SIP
import SIPTransport
import Testing
import X509

/// Claiming over HTTPS (curl as the client), then the claimed gateway on mutual TLS: its
/// registration with RFC 5626 flows, keepalive pongs, a call arriving over its own flow; refusals
/// for certificates of another CA and for deleted devices; registrations kept across a restart;
/// malformed requests.
@Suite("Claiming and devices", .serialized)
struct ClaimingAndDeviceTests {
    /// POSTs a claim with curl (a real HTTPS client verifying the core's certificate).
    static func claim(_ core: CoreHarness, code: String, csr: String) async throws -> (status: Int, body: [String: String]) {
        let body = try JSONEncoder().encode(ClaimRequest(code: code, csr: csr))
        let file = core.scratch.path("claim-\(UUID().uuidString).json")
        try body.write(to: URL(fileURLWithPath: file))
        let port = core.server.claiming?.localAddress?.port ?? 0
        let output = try await runCommand("curl", [
            "-sS", "--cacert", core.server.configuration.resolvedCACertificateFile, "-X", "POST", "-H", "Content-Type: application/json",
            "--data-binary", "@\(file)", "-w", "\n%{http_code}", "https://127.0.0.1:\(port)/v1/claim",
        ])
        let lines = output.split(separator: "\n")
        let status = Int(lines.last ?? "") ?? 0
        let json = lines.dropLast().joined(separator: "\n")
        let decoded = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: String] ?? [:]
        return (status, decoded)
    }

    /// A P-256 key and CSR made by openssl, as a gateway would.
    static func makeCSR(in scratch: ScratchDirectory, name: String = "device") async throws -> (key: String, csr: String) {
        let key = scratch.path("\(name).key"), csr = scratch.path("\(name).csr")
        _ = try await runCommand("openssl", [
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=ignored-by-the-core",
            "-keyout", key, "-out", csr,
        ])
        return (key, try String(contentsOfFile: csr, encoding: .utf8))
    }

    @Test func claimingWithGoodUsedExpiredAndForgedCodes() async throws {
        let core = try await CoreHarness.start()
        let (_, csr) = try await Self.makeCSR(in: core.scratch)
        let code = try core.directory.createClaimingCode(device: "gw1", lifetime: 600)

        let good = try await Self.claim(core, code: code, csr: csr)
        #expect(good.status == 200, "\(good)")
        #expect(good.body["device"] == "gw1")
        #expect(good.body["sip_server"] == "sips:127.0.0.1:\(core.port(.tls))")
        let certificate = try NIOSSLCertificate(bytes: Array((good.body["certificate"] ?? "").utf8), format: .pem)
        #expect(DeviceCertificateName.deviceName(of: certificate) == "gw1", "the name comes from the code, not from the CSR")
        // The certificate chains to the CA the core sent along.
        try core.scratch.write("device.pem", good.body["certificate"] ?? "")
        try core.scratch.write("ca-from-claim.pem", good.body["ca"] ?? "")
        let verified = try await runCommand("openssl", ["verify", "-CAfile", core.scratch.path("ca-from-claim.pem"), core.scratch.path("device.pem")])
        #expect(verified.contains("OK"))

        // The same code with the same key (an answer lost on the way): the same certificate.
        let again = try await Self.claim(core, code: code, csr: csr)
        #expect(again.status == 200 && again.body["certificate"] == good.body["certificate"], "\(again)")
        // With another key: spent.
        let (_, otherCSR) = try await Self.makeCSR(in: core.scratch, name: "other")
        let used = try await Self.claim(core, code: code, csr: otherCSR)
        #expect(used.status == 410 && used.body["error"] == "claiming code already used")

        let forged = try await Self.claim(core, code: "ABCD-EFGH-JKLM-NPQR", csr: csr)
        #expect(forged.status == 403 && forged.body["error"] == "unknown claiming code")

        let shortLived = try core.directory.createClaimingCode(device: "gw1", lifetime: 1, now: Date().addingTimeInterval(-5))
        let expired = try await Self.claim(core, code: shortLived, csr: csr)
        #expect(expired.status == 410 && expired.body["error"] == "claiming code expired")

        let fresh = try core.directory.createClaimingCode(device: "gw1", lifetime: 600)
        let badCSR = try await Self.claim(core, code: fresh, csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
        #expect(badCSR.status == 400)
        // A CSR that parses but whose signature does not verify (its last byte changed).
        let lines = csr.split(separator: "\n").filter { !$0.hasPrefix("-----") }
        var der = [UInt8](Data(base64Encoded: lines.joined()) ?? Data())
        der[der.count - 1] ^= 0x01
        let forgedCSR = "-----BEGIN CERTIFICATE REQUEST-----\n" + Data(der).base64EncodedString(options: .lineLength64Characters) + "\n-----END CERTIFICATE REQUEST-----\n"
        let badSignature = try await Self.claim(core, code: fresh, csr: forgedCSR)
        #expect(badSignature.status == 400 && badSignature.body["error"]?.contains("signature") == true, "\(badSignature)")
        #expect(try await Self.claim(core, code: fresh, csr: otherCSR).status == 200, "neither broken CSR burnt the code")
        await core.stop()
    }

    @Test func claimingIsRateLimitedPerSource() async throws {
        let core = try await CoreHarness.start { $0.claimingAttemptsPerMinute = 3 }
        let (_, csr) = try await Self.makeCSR(in: core.scratch)
        var statuses: [Int] = []
        for _ in 0..<5 { statuses.append(try await Self.claim(core, code: "WRONG-CODE", csr: csr).status) }
        #expect(statuses == [403, 403, 403, 429, 429])
        await core.stop()
    }

    // MARK: The gateway on mutual TLS

    /// A SIP client endpoint with a TLS identity, and the requests that reach it.
    final class Client: @unchecked Sendable {
        let endpoint: SIPEndpoint
        let requests: AsyncStream<SIPIncomingRequest>

        /// `answer`: the final status it gives an INVITE (a 200 carries a Contact); a BYE gets 200.
        init(tls: SIPTLSSettings?, answer: Int = 486) async throws {
            var configuration = SIPEndpoint.Configuration()
            configuration.tls = tls
            endpoint = try SIPEndpoint(eventLoop: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration)
            let (stream, continuation) = AsyncStream.makeStream(of: SIPIncomingRequest.self)
            requests = stream
            try await endpoint.listen(.udp, on: SocketAddress(ipAddress: "127.0.0.1", port: 0))
            await endpoint.setRequestHandler { endpoint, request in
                continuation.yield(request)
                guard case .transaction(let key) = request.kind else { return }
                if request.message.method == .invite {
                    var response = SIPResponseFactory.response(to: request.message, status: answer, toTag: "gw")
                    if answer == 200 { response.headers.add(.contact, "<sips:gw1-ch3@127.0.0.1:5999;transport=tls;ob>") }
                    endpoint.respond(response, to: key)
                } else if request.message.method == .bye {
                    endpoint.respond(SIPResponseFactory.response(to: request.message, status: 200, toTag: nil), to: key)
                }
            }
        }

        /// Sends a request and returns its final response (or the failure as 408/503).
        func send(_ request: SIPMessage, to destination: SIPDestination) async throws -> (SIPMessage?, SIPFlow?) {
            let flow = try await endpoint.flow(to: destination)
            return await withCheckedContinuation { continuation in
                endpoint.eventLoop.execute {
                    self.endpoint.assumeIsolated { endpoint in
                        _ = endpoint.sendRequest(request, on: flow) { _, event in
                            switch event {
                            case .response(let response, _) where (response.statusCode ?? 0) >= 200: continuation.resume(returning: (response, flow))
                            case .response: break
                            case .timedOut, .transportFailed: continuation.resume(returning: (nil, flow))
                            }
                        }
                    }
                }
            }
        }
    }

    static func register(_ aor: String, instance: String?, expires: Int = 300, callID: String? = nil, cseq: Int = 1) throws -> SIPMessage {
        var request = SIPMessage.request(.register, .sip(try SIPURIParser.parseSIP("sips:symphony.local")))
        request.headers.add(.from, "<sips:\(aor)@symphony.local>;tag=\(SIPIdentifiers.tag())")
        request.headers.add(.to, "<sips:\(aor)@symphony.local>")
        request.headers.add(.callID, callID ?? SIPIdentifiers.callID(host: "gw"))
        request.headers.add(.cseq, "\(cseq) REGISTER")
        request.headers.add(.maxForwards, "70")
        let outbound = instance.map { ";+sip.instance=\"<urn:uuid:\($0)>\";reg-id=1" } ?? ""
        request.headers.add(.contact, "<sips:\(aor)@127.0.0.1:5999;transport=tls;ob>\(outbound)")
        request.headers.add(.supported, "outbound, path")
        request.headers.add(.expires, String(expires))
        return request
    }

    static func deviceTLS(_ core: CoreHarness) async throws -> SIPTLSSettings {
        let (keyFile, csr) = try await makeCSR(in: core.scratch, name: "gw1")
        let code = try core.directory.createClaimingCode(device: "gw1", lifetime: 600)
        let claimed = try await claim(core, code: code, csr: csr)
        try #require(claimed.status == 200)
        try core.scratch.write("gw1.pem", claimed.body["certificate"]!)
        try core.scratch.write("gw1-ca.pem", claimed.body["ca"]!)
        return try SIPTLSSettings(certificateFile: core.scratch.path("gw1.pem"), keyFile: keyFile, caFile: core.scratch.path("gw1-ca.pem"))
    }

    @Test func aClaimedGatewayRegistersItsChannelsOverAnOutboundFlowAndGetsCallsOnIt() async throws {
        let core = try await CoreHarness.start()
        let client = try await Client(tls: try await Self.deviceTLS(core))
        let destination = SIPDestination(transport: .tls, host: "127.0.0.1", port: core.port(.tls))
        let (response, flow) = try await client.send(try Self.register("gw1-ch3", instance: "6c4b1f7e-0000-4000-8000-000000000001"), to: destination)
        #expect(response?.statusCode == 200)
        // RFC 5626 §6: the registrar kept the flow and says so.
        #expect(response?.tokens(.require).contains("outbound") == true)
        let bindings = await core.server.proxy.contacts(of: "gw1-ch3")
        #expect(bindings.count == 1 && bindings.first?.isOutbound == true && bindings.first?.principal == "device:gw1")
        // A device cannot register another device's channels, nor a user.
        #expect(try await client.send(try Self.register("gw2-ch1", instance: nil), to: destination).0?.statusCode == 403)
        #expect(try await client.send(try Self.register("alice", instance: nil), to: destination).0?.statusCode == 403)

        // Keepalive (RFC 5626 §4.4.1): our ping gets the core's pong, so the flow stays up.
        let flowUp = try #require(flow)
        await client.endpoint.startKeepAlive(on: flowUp, every: .milliseconds(300))
        try await Task.sleep(for: .milliseconds(1200))
        #expect(await client.endpoint.isAlive(flowUp))

        // A call to the channel reaches the gateway over its own TLS flow (its Contact is not
        // even listening), and the gateway's 486 goes back to the caller.
        let setup = CloudCoreSippTests.Setup(core: core, path: .udp)
        let caller = try await setup.caller(.failure(486), callee: "gw1-ch3")
        var iterator = client.requests.makeAsyncIterator()
        let invite = await iterator.next()
        #expect(invite?.message.method == .invite && invite?.flow == flowUp)
        #expect(invite?.message.headers.values(.recordRoute).count == 2, "double Record-Route: UDP in, TLS out")
        try await caller.expectSuccess()
        #expect(try await core.records().first?.channel == "gw1-ch3")
        await client.endpoint.shutdown()
        await core.stop()
    }

    /// A gateway whose flow was replaced (its NAT changed address) registers again, the same
    /// instance and reg-id, the same REGISTER Call-ID, over a new flow: a BYE in its call goes
    /// there. A registration of the same instance and reg-id with another Call-ID (another boot
    /// of the box, or a name's new holder reading the old one's instance from a REGISTER 200)
    /// takes the binding but not the dialog: the BYE stays on the call's own flow.
    @Test func aDialogFollowsItsUAsNewFlowButNotAnotherRegistrationOfTheSameInstance() async throws {
        let core = try await CoreHarness.start()
        let tls = try await Self.deviceTLS(core)
        let destination = SIPDestination(transport: .tls, host: "127.0.0.1", port: core.port(.tls))
        let instance = "6c4b1f7e-0000-4000-8000-000000000009"
        let setup = CloudCoreSippTests.Setup(core: core, path: .udp)
        for sameUA in [false, true] {
            let first = try await Client(tls: tls, answer: 200)
            let second = try await Client(tls: tls, answer: 200)
            let (firstSaw, secondSaw) = (Self.methods(reaching: first), Self.methods(reaching: second))
            let callID = SIPIdentifiers.callID(host: "gw")
            #expect(try await first.send(try Self.register("gw1-ch3", instance: instance, callID: callID), to: destination).0?.statusCode == 200)
            let caller = try await setup.caller(.hangUp(holdMilliseconds: 3000), callee: "gw1-ch3")
            try await Self.eventually("the call reached the first flow") { firstSaw.withLockedValue { $0.contains(.invite) } }
            // While the call is up, the registration moves to a second flow.
            let moved = try Self.register("gw1-ch3", instance: instance, callID: sameUA ? callID : SIPIdentifiers.callID(host: "gw"), cseq: 2)
            #expect(try await second.send(moved, to: destination).0?.statusCode == 200)
            try await caller.expectSuccess()
            let (onFirst, onSecond) = (firstSaw.withLockedValue { $0.contains(.bye) }, secondSaw.withLockedValue { $0.contains(.bye) })
            if sameUA {
                #expect(onSecond && !onFirst, "the same UA's new flow gets the BYE")
            } else {
                #expect(onFirst && !onSecond, "another registration of the instance does not get the dialog's BYE; it stays on the call's own flow")
            }
            await first.endpoint.shutdown()
            await second.endpoint.shutdown()
        }
        await core.stop()
    }

    /// The methods of the requests that reach `client`, as they come.
    static func methods(reaching client: Client) -> NIOLockedValueBox<[SIPMethod]> {
        let seen = NIOLockedValueBox<[SIPMethod]>([])
        let requests = client.requests
        Task {
            for await request in requests {
                if let method = request.message.method { seen.withLockedValue { $0.append(method) } }
            }
        }
        return seen
    }

    static func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw PeerError("timed out waiting for \(what)")
    }

    @Test func certificatesOfAnotherCAAndDeletedDevicesAreRefused() async throws {
        let core = try await CoreHarness.start()
        let destination = SIPDestination(transport: .tls, host: "127.0.0.1", port: core.port(.tls))
        // Another CA: the handshake fails (the client trusts the core, the core not the client).
        let foreign = try await TestCertificates.make(in: core.scratch, name: "gw1")
        let stranger = try await Client(tls: SIPTLSSettings(
            certificateChain: try NIOSSLCertificate.fromPEMFile(foreign.certificateFile), privateKey: try NIOSSLPrivateKey(file: foreign.keyFile, format: .pem),
            trustRoots: .file(core.server.configuration.resolvedCACertificateFile)))
        let refused = try? await stranger.send(try Self.register("gw1-ch1", instance: nil), to: destination)
        #expect(refused?.0 == nil, "no response over a refused handshake")
        #expect(await core.server.proxy.contacts(of: "gw1-ch1").isEmpty)
        await stranger.endpoint.shutdown()

        // A genuine certificate of a device that was deleted since: 403.
        let client = try await Client(tls: try await Self.deviceTLS(core))
        try core.directory.delete(.device, name: "gw1")
        #expect(try await client.send(try Self.register("gw1-ch1", instance: nil), to: destination).0?.statusCode == 403)
        #expect(await core.server.proxy.statistics.forbidden == 1)
        await client.endpoint.shutdown()
        await core.stop()
    }

    /// A request to the claiming service with curl, presenting a device certificate (`cert`).
    static func service(
        _ core: CoreHarness, _ path: String, body: String? = nil, cert: (String, String)? = nil
    ) async throws -> (status: Int, body: [String: Any]) {
        var arguments = ["-sS", "--cacert", core.server.configuration.resolvedCACertificateFile, "-w", "\n%{http_code}"]
        if let cert { arguments += ["--cert", cert.0, "--key", cert.1] }
        if let body {
            let file = core.scratch.path("body-\(UUID().uuidString).json")
            try body.write(toFile: file, atomically: true, encoding: .utf8)
            arguments += ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@\(file)"]
        }
        let output = try await runCommand("curl", arguments + ["https://127.0.0.1:\(core.server.claiming?.localAddress?.port ?? 0)\(path)"])
        let lines = output.split(separator: "\n")
        let json = lines.dropLast().joined(separator: "\n")
        return (Int(lines.last ?? "") ?? 0, (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] ?? [:])
    }

    static func serial(_ pem: String) throws -> String {
        DeviceCertificateName.serial(of: try Certificate(pemEncoded: pem))
    }

    @Test("Only a device's current certificate works: re-claimed and renewed ones are refused at the core and listed as revoked; a renewal whose answer was lost is answered again")
    func reclaimedAndRenewedCertificatesStopWorkingAndAreListed() async throws {
        let core = try await CoreHarness.start()
        let destination = SIPDestination(transport: .tls, host: "127.0.0.1", port: core.port(.tls))
        func registers(_ tls: SIPTLSSettings) async throws -> Int? {
            let client = try await Client(tls: tls)
            defer { Task { await client.endpoint.shutdown() } }
            return try await client.send(try Self.register("gw1-ch1", instance: nil), to: destination).0?.statusCode
        }
        let caFile = core.server.configuration.resolvedCACertificateFile
        let first = try await Self.deviceTLS(core)
        let firstPEM = try String(contentsOfFile: core.scratch.path("gw1.pem"), encoding: .utf8)
        #expect(try await registers(first) == 200)
        // The old hardware stays connected and registered through the re-claim below.
        let oldHardware = try await Client(tls: first)
        #expect(try await oldHardware.send(try Self.register("gw1-ch2", instance: "6c4b1f7e-0000-4000-8000-0000000000aa"), to: destination).0?.statusCode == 200)

        // Claimed again (a replaced gateway): the first certificate stops working.
        let (key2, csr2) = try await Self.makeCSR(in: core.scratch, name: "second")
        let second = try await Self.claim(core, code: try core.directory.createClaimingCode(device: "gw1", lifetime: 600), csr: csr2)
        try #require(second.status == 200)
        try core.scratch.write("second.pem", second.body["certificate"]!)
        #expect(try await registers(first) == 403, "the certificate of before the re-claim")
        let secondTLS = try SIPTLSSettings(certificateFile: core.scratch.path("second.pem"), keyFile: key2, caFile: caFile)
        #expect(try await registers(secondTLS) == 200)
        // A call for the channel the old hardware registered reaches it no more.
        let alice = try HandPhone("alice", core: core)
        let invite = try alice.request(.invite, to: "sip:gw1-ch2@symphony.local", toUser: "gw1-ch2", headers: [(.proxyAuthorization, "Bearer \(alice.token)")])
        alice.send(invite)
        // (Reached, the old hardware would answer 486: see `Client`.)
        #expect(try await alice.response(to: invite).statusCode == 480, "nothing to ring but the replaced certificate's flow")
        await oldHardware.endpoint.shutdown()

        // Renewed over mutual TLS: a new certificate for a new key; asked again (the answer lost),
        // the same one; the second certificate is refused from then on.
        let (key3, csr3) = try await Self.makeCSR(in: core.scratch, name: "third")
        let body = String(decoding: try JSONEncoder().encode(["csr": csr3]), as: UTF8.self)
        let renewed = try await Self.service(core, "/v1/renew", body: body, cert: (core.scratch.path("second.pem"), key2))
        #expect(renewed.status == 200, "\(renewed)")
        let thirdPEM = try #require(renewed.body["certificate"] as? String)
        let again = try await Self.service(core, "/v1/renew", body: body, cert: (core.scratch.path("second.pem"), key2))
        #expect(again.status == 200 && again.body["certificate"] as? String == thirdPEM, "a retry gets the same certificate")
        let (_, csr4) = try await Self.makeCSR(in: core.scratch, name: "fourth")
        let otherKey = try await Self.service(
            core, "/v1/renew", body: String(decoding: try JSONEncoder().encode(["csr": csr4]), as: UTF8.self), cert: (core.scratch.path("second.pem"), key2))
        #expect(otherKey.status == 403, "the replaced certificate renews nothing else: \(otherKey)")
        try core.scratch.write("third.pem", thirdPEM)
        #expect(try await registers(secondTLS) == 403)
        #expect(try await registers(try SIPTLSSettings(certificateFile: core.scratch.path("third.pem"), keyFile: key3, caFile: caFile)) == 200)
        #expect(try await Self.service(core, "/v1/renew", body: body).status == 403, "no certificate, no renewal")

        // The revocation list, for the current certificate only.
        let list = try await Self.service(core, "/v1/revoked", cert: (core.scratch.path("third.pem"), key3))
        let serials = Set(list.body["serials"] as? [String] ?? [])
        let (firstSerial, secondSerial, thirdSerial) = (try Self.serial(firstPEM), try Self.serial(second.body["certificate"]!), try Self.serial(thirdPEM))
        #expect(list.status == 200 && serials.contains(firstSerial) && serials.contains(secondSerial), "\(list)")
        #expect(!serials.contains(thirdSerial))
        #expect(try await Self.service(core, "/v1/revoked", cert: (core.scratch.path("second.pem"), key2)).status == 403)

        // Deleted: its last certificate is revoked too.
        try core.directory.delete(.device, name: "gw1")
        #expect(try core.directory.revokedSerials(now: Date()).contains(thirdSerial))

        // A device certificate names no host: a device called like the core cannot pose as it.
        try core.directory.createDevice("symphony.local", site: "lobby", channels: 1)
        let (_, csr5) = try await Self.makeCSR(in: core.scratch, name: "lookalike")
        let lookalike = try await Self.claim(core, code: try core.directory.createClaimingCode(device: "symphony.local", lifetime: 600), csr: csr5)
        try core.scratch.write("lookalike.pem", lookalike.body["certificate"] ?? "")
        let check = try await runCommand("openssl", ["x509", "-in", core.scratch.path("lookalike.pem"), "-noout", "-checkhost", "symphony.local", "-ext", "subjectAltName"])
        #expect(check.contains("does NOT match certificate") && check.contains("URI:symphony-device:acme/lobby/symphony.local") && !check.contains("DNS:"), "\(check)")
        await core.stop()
    }

    @Test("The core renews its own server certificate while it runs, when a third of its life (or 30 days) is left: new connections get the new one")
    func theServerCertificateIsRenewedWhileRunning() async throws {
        let offset = NIOLockedValueBox<TimeInterval>(0)
        let core = try await CoreHarness.start(clock: { Date().addingTimeInterval(offset.withLockedValue { $0 }) }, serverCertificateCheck: .milliseconds(200))
        @Sendable func served(_ port: Int) async throws -> String {
            // The certificate a new TLS connection is shown (verified or not: its serial is what counts).
            let script = "openssl s_client -connect 127.0.0.1:\(port) </dev/null 2>/dev/null | openssl x509 -noout -serial"
            return try await runCommand("bash", ["-c", script]).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let sipPort = core.port(.tls), claimingPort = core.server.claiming?.localAddress?.port ?? 0
        let before = try await served(sipPort)
        #expect(before.hasPrefix("serial="), "\(before)")
        #expect(try await served(claimingPort) == before)
        try await Task.sleep(for: .milliseconds(600))
        #expect(try await served(sipPort) == before, "not due with 825 days left")
        offset.withLockedValue { $0 = 800 * 86400 }  // 25 days left
        try await core.eventually("a new server certificate served", timeout: .seconds(10)) { try await served(sipPort) != before }
        #expect(try await served(claimingPort) != before, "the claiming listener too")
        let file = try Certificate(pemEncoded: try String(contentsOfFile: core.server.configuration.resolvedCertificateFile, encoding: .utf8))
        #expect(file.notValidAfter.timeIntervalSinceNow > 800 * 86400, "issued on the core's clock")
        let usage = try file.extensions.extendedKeyUsage
        #expect(usage?.contains(.serverAuth) == true && usage?.contains(.clientAuth) == false, "server use only")
        await core.stop()
    }

    @Test func registrationsAreKeptAcrossARestart() async throws {
        let core = try await CoreHarness.start()
        let setup = CloudCoreSippTests.Setup(core: core, path: .udp)
        try await setup.register("alice", contact: "sip:alice@127.0.0.1:5998", fromPort: try freePort(udp: true), viaUDP: true)
        try await core.eventually("write-back") { (try? core.directory.loadRegistrations().count) == 1 }
        await core.stop()
        let restarted = try await CloudCoreServer.start(core.server.configuration, logger: .init(label: "restart"))
        let contacts = await restarted.proxy.contacts(of: "alice")
        #expect(contacts.map(\.contact.uri.description) == ["sip:alice@127.0.0.1:5998"])
        #expect(contacts.first?.principal == "user:alice")
        await restarted.shutdown()
    }

    /// The periodic job runs on the core's clock: 175 days ahead, a call from 10 days ago is
    /// past the 180 days and goes; one from yesterday stays.
    @Test func theRetentionJobPurgesOnTheCoresClock() async throws {
        let now = Date().timeIntervalSince1970
        let core = try await CoreHarness.start(configure: { $0.purgeIntervalSeconds = 1 }, clock: { Date(timeIntervalSince1970: now + 175 * 86400) }, before: { directory in
            for (id, age) in [("old", 10.0), ("recent", 1.0)] {
                let start = now - age * 86400
                try directory.recordCalls([CallRecord(
                    callId: id, caller: "bob", callee: "alice", target: "user:alice", channel: nil, answeredBy: nil,
                    startedAt: start, answeredAt: nil, endedAt: start + 30, status: .missed, reason: nil)])
            }
        })
        try await core.eventually("the purge") { (try? core.directory.callRecords().map(\.callId)) == ["recent"] }
        await core.stop()
    }

    @Test func malformedRequestsGet400AndTheCoreKeepsServing() async throws {
        let core = try await CoreHarness.start()
        let garbage = "REGISTER sip:symphony.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5555;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: one REGISTER\r\nContent-Length: 0\r\n\r\n"
        let answer = try await runCommand("python3", ["-c", """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
            s.sendto(bytes(\(Array(garbage.utf8))), ("127.0.0.1", \(core.port(.udp))))
            print(s.recv(4096).decode().split("\\r\\n")[0])
            """])
        #expect(answer.hasPrefix("SIP/2.0 400"))
        let setup = CloudCoreSippTests.Setup(core: core, path: .udp)
        try await setup.register("bob", contact: "sip:bob@127.0.0.1:5997", fromPort: try freePort(udp: true), viaUDP: true)
        #expect(await core.server.proxy.contacts(of: "bob").count == 1)
        await core.stop()
    }
}
