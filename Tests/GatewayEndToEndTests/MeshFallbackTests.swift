import Foundation
import Gateway
import PeerTestSupport
import MeshTestSupport
import Testing

/// The mesh fallback on a LAN made of network namespaces (`MeshNetwork`): a cloud-core host and
/// two gateway hosts, each gateway with baresip legacy stations beside it. The daemons are the
/// built binaries; the cloud link is cut with tc netem.
@Suite("Mesh fallback", .serialized)
struct MeshFallbackTests {
    /// What `station` decoded in its latest call is `frequency`, loud enough, for at least 3 s.
    static func expectTone(_ station: Baresip, _ frequency: Double, from peer: String, latest: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let pcm = try await station.decodedAudio(latest: latest)
        #expect(pcm.count >= 16000 * 3, "\(station.name) decoded at least 3 s from \(peer): \(pcm.count) samples", sourceLocation: sourceLocation)
        let middle = pcm.dropFirst(16000).prefix(16000 * 2)
        let measured = ToneMeasurement.frequency(middle, sampleRate: 16000)
        #expect(abs(measured - frequency) < 15, "\(station.name) hears \(peer)'s \(Int(frequency)) Hz tone: \(measured) Hz", sourceLocation: sourceLocation)
        #expect(ToneMeasurement.level(middle) > -20, "\(station.name) hears it loud enough: \(ToneMeasurement.level(middle)) dBFS", sourceLocation: sourceLocation)
    }

    /// Both gateways claimed, registered, and each seeing the other on the mesh.
    struct Site {
        let network: MeshNetwork
        let gw1: PeerProcess
        let gw1State: String
        let gw2: PeerProcess
        let gw2State: String
        let coreConfig: String
        let caFile: String
        let answering: Baresip
        let ringing: Baresip
        /// gw1's broker (in its namespace) and a subscriber to all of gw1's topics since start.
        let broker: Mosquitto
        let topics: PeerProcess

        /// The messages gw1 published on `topic` so far, as payload texts.
        func published(_ topic: String) -> [String] {
            topics.text.split(separator: "\n").compactMap { line in
                line.hasPrefix("symphony-bridge/gw1/\(topic) ") ? String(line.dropFirst("symphony-bridge/gw1/\(topic) ".count)) : nil
            }
        }
    }

    /// gw1 channel 1 (`101`): cloud target gw2-ch1, mesh target 201; channel 2 (`102`): mesh
    /// targets 202 then 201 as a chain, 5 s each. gw2 channel 1 (`201`) rings station `b`
    /// (answers, 1200 Hz), channel 2 (`202`) rings station `b2` (never answers).
    static func startSite(_ network: MeshNetwork) async throws -> Site {
        let (coreConfig, caFile) = try await network.startCore()
        let tone = network.scratch.path("b.wav"), tone2 = network.scratch.path("b2.wav")
        try await Baresip.tone(tone, frequency: 1200, seconds: 200, rate: 16000, channels: 1)
        try await Baresip.tone(tone2, frequency: 1000, seconds: 200, rate: 16000, channels: 1)
        let answering = try network.station("b", beside: "gw2", tone: tone)
        let ringing = try network.station("b2", beside: "gw2", tone: tone2, answer: false)
        try answering.start(seconds: 240)
        try ringing.start(seconds: 240)
        let broker = try Mosquitto(in: network.scratch, namespace: network.host("gw1"))
        try await broker.start()
        let topics = try broker.startSubscriber("symphony-bridge/gw1/#")
        let gw1 = try network.startGateway("gw1", channels: [
            .init(index: 1, number: "101", cloudTarget: "gw2-ch1", legacyTargets: ["sip:a@127.0.0.1:9"], meshTargets: ["201"]),
            .init(index: 2, number: "102", cloudTarget: "gw2-ch1", legacyTargets: ["sip:a@127.0.0.1:9"], meshTargets: ["202", "201"], ring: .chain, ringSeconds: 5),
            .init(index: 3, number: "103", cloudTarget: "gw2-ch1", legacyTargets: ["sip:a@127.0.0.1:9"], meshTargets: ["309"]),
        ], claimCode: try await network.claimCode("gw1", coreConfig: coreConfig), caFile: caFile,
        extra: "[mqtt]\nhost = \"127.0.0.1\"\nport = \(broker.port)\n")
        let gw2 = try network.startGateway("gw2", channels: [
            .init(index: 1, number: "201", cloudTarget: "gw1-ch1", legacyTargets: ["sip:b@127.0.0.1:\(answering.sipPort)"]),
            .init(index: 2, number: "202", cloudTarget: "gw1-ch1", legacyTargets: ["sip:b2@127.0.0.1:\(ringing.sipPort)"]),
        ], claimCode: try await network.claimCode("gw2", coreConfig: coreConfig), caFile: caFile)
        try await network.eventually("both gateways registered at the cloud", timeout: .seconds(30)) {
            gw1.process.text.contains("cloud uplink registered") && gw2.process.text.contains("cloud uplink registered")
        }
        try await network.eventually("gw1 sees gw2 on the mesh", timeout: .seconds(15)) {
            gw1.process.text.contains("mesh peers: gw2@") && gw2.process.text.contains("mesh peers: gw1@")
        }
        return Site(
            network: network, gw1: gw1.process, gw1State: gw1.state, gw2: gw2.process, gw2State: gw2.state, coreConfig: coreConfig, caFile: caFile,
            answering: answering, ringing: ringing, broker: broker, topics: topics)
    }

    /// A legacy call from a fresh station `name` beside gw1 to `number`, lasting `seconds`
    /// (the station hangs up then); returns when it is over.
    static func call(_ site: Site, _ name: String, number: String, seconds: Int) async throws -> Baresip {
        let tone = site.network.scratch.path("\(name).wav")
        try await Baresip.tone(tone, frequency: 800, seconds: seconds + 5, rate: 16000, channels: 1)
        let station = try site.network.station(name, beside: "gw1", tone: tone)
        try station.start(seconds: seconds, command: "/dial sip:\(number)@127.0.0.1:5060")
        _ = try await station.process?.wait(timeout: .seconds(Double(seconds + 20)))
        return station
    }

    static func withNetwork(gateways: [String] = ["gw1", "gw2"], _ body: (MeshNetwork) async throws -> Void) async throws {
        let network = try await MeshNetwork.create(gateways: gateways)
        do {
            try await body(network)
        } catch {
            Issue.record("\(error)\n\(network.logs())")
        }
        await network.destroy()
    }

    @Test func callsGoOverTheMeshWhileTheCloudIsCutAndBackToTheCloudAfter() async throws {
        try await Self.withNetwork { network in
            let site = try await Self.startSite(network)

            // 1. The cloud is up: the call goes through it.
            let first = try await Self.call(site, "a1", number: "101", seconds: 8)
            try await network.eventually("the first call recorded") { try network.records(site.gw1State).count == 1 }
            var records = try network.records(site.gw1State)
            #expect(records.last?.direction == .legacyToCloud && records.last?.status == .answered, "\(records)")
            #expect(try network.records(site.gw2State).last?.direction == .cloudToLegacy)
            try await Self.expectTone(first, 1200, from: "b over the cloud")

            // 2. The cloud link is cut; a call right after it, before the outage is noticed,
            // waits fallback_after_ms for the cloud and then goes over the mesh.
            try await network.cutCloud()
            let second = try await Self.call(site, "a2", number: "101", seconds: 10)
            #expect(site.gw1.text.contains("mesh fallback: no answer from the cloud"), "\(site.gw1.text.suffix(3000))")
            try await network.eventually("the second call recorded") { try network.records(site.gw1State).count == 2 }
            records = try network.records(site.gw1State)
            #expect(records.last?.direction == .legacyToMesh && records.last?.status == .answered && records.last?.codec == "g722", "\(records)")
            let gw2Records = try network.records(site.gw2State)
            #expect(gw2Records.last?.direction == .meshToLegacy && gw2Records.last?.status == .answered, "\(gw2Records)")
            try await Self.expectTone(second, 1200, from: "b over the mesh")
            try await Self.expectTone(site.answering, 800, from: "a2 over the mesh", latest: true)

            // 3. The uplink has noticed: calls go to the mesh at once. A chain rings 202 (which
            // does not answer) for its 5 s, then 201.
            try await network.eventually("gw1 noticed the outage") { site.gw1.text.contains("cloud health down") }
            let third = try await Self.call(site, "a3", number: "102", seconds: 14)
            #expect(site.gw1.text.contains("cloud down: the call goes to the mesh at once"))
            #expect(site.gw1.text.contains("chain: ringing 201"))
            #expect(site.ringing.output.contains("Incoming call") && site.ringing.output.contains("session closed"), "b2 rang and was cancelled:\n\(site.ringing.output.suffix(2000))")
            #expect(!site.ringing.output.contains("Call established"))
            try await network.eventually("the chain call recorded") { try network.records(site.gw1State).count == 3 }
            records = try network.records(site.gw1State)
            let chained = try #require(records.last)
            #expect(chained.direction == .legacyToMesh && chained.status == .answered && chained.channel == 2 && chained.peer == "201", "\(chained)")
            let waited = (chained.answeredAt ?? 0) - chained.startedAt
            #expect(waited >= 5 && waited < 9, "answered by the second target after the first's ring_s: \(waited) s")
            try await Self.expectTone(third, 1200, from: "b at the chain's second step")

            // 4. The link comes back: the uplink registers again and the next call takes the cloud.
            try await network.restoreCloud()
            // Both: a call while gw2 is not registered again yet would get the core's 500 and
            // (rightly) go to the mesh.
            try await network.eventually("both gateways registered again", timeout: .seconds(40)) {
                [site.gw1, site.gw2].allSatisfy { gateway in
                    gateway.text.components(separatedBy: "cloud uplink registered").count >= 3 && gateway.text.hasSuffixAfter("cloud health up", "cloud health down")
                }
            }
            let fourth = try await Self.call(site, "a4", number: "101", seconds: 8)
            try await network.eventually("the fourth call recorded") { try network.records(site.gw1State).count == 4 }
            records = try network.records(site.gw1State)
            #expect(records.last?.direction == .legacyToCloud && records.last?.status == .answered, "\(records)")
            try await Self.expectTone(fourth, 1200, from: "b over the cloud again")
            // No call placed in the test was lost.
            #expect(records.count == 4 && records.allSatisfy { $0.status == .answered }, "\(records)")

            // MQTT told the story: the mesh topic standby → active (with gw2 among the peers) →
            // standby, channel 1 in state `mesh` during the mesh call, failover and failback events.
            try await network.eventually("the mesh back in standby on MQTT") { site.published("mesh").last?.contains(#""state":"standby""#) == true }
            let mesh = site.published("mesh")
            #expect(mesh.contains { $0.contains(#""state":"active""#) && $0.contains(#""device":"gw2""#) && $0.contains(#""201""#) }, "\(mesh)")
            #expect(site.published("channel/1").contains { $0.contains(#""state":"mesh""#) && $0.contains(#""via":"mesh""#) }, "\(site.published("channel/1"))")
            let events = site.published("event")
            for type in ["failover", "failback", "mesh_fallback"] {
                #expect(events.contains { $0.contains(#""type":"\#(type)""#) }, "event \(type) published: \(events)")
            }
            #expect(site.published("cloud").contains { $0.contains(#""health":"down""#) })
            site.topics.stop()
            site.broker.stop()
        }
    }
}

extension MeshFallbackTests {
    /// Speaks SIPS to `address` (gw2's mesh listener) from gw1's host with openssl s_client: an
    /// offerless INVITE for 201 with the given client certificate (or none); returns what came back.
    static func probe(
        _ network: MeshNetwork, _ address: String, caFile: String, certificate: (cert: String, key: String)?, tag: String, from host: String = "gw1", number: String = "201"
    ) async throws -> String {
        let request = network.scratch.path("invite-\(tag).txt")
        try [
            "INVITE sips:\(number)@[\(address)]:5061 SIP/2.0",
            "Via: SIP/2.0/TLS [fe80::1]:5061;branch=z9hG4bK-\(tag)",
            "Max-Forwards: 70",
            "From: <sips:probe@example.invalid>;tag=\(tag)",
            "To: <sips:\(number)@[\(address)]:5061>",
            "Call-ID: probe-\(tag)",
            "CSeq: 1 INVITE",
            "Contact: <sips:probe@[fe80::1]:5061>",
            "Content-Length: 0", "", "",
        ].joined(separator: "\r\n").write(toFile: request, atomically: true, encoding: .utf8)
        var arguments = ["s_client", "-connect", "[\(address)%eth0]:5061", "-CAfile", caFile, "-quiet"]
        if let certificate { arguments += ["-cert", certificate.cert, "-key", certificate.key] }
        // Stopped from here after 3 s: `timeout` relies on SIGALRM, which the test runner blocks.
        let command = "exec openssl \(arguments.map { "'\($0)'" }.joined(separator: " ")) < '\(request)'"
        let process = try network.start("probe-\(tag)", in: network.host(host), "bash", ["-c", command])
        try await Task.sleep(for: .seconds(3))
        process.stop()
        return process.text
    }

    @Test func meshPeersWithACertificateOfAnotherCAOrNoneCannotCall() async throws {
        try await Self.withNetwork { network in
            let site = try await Self.startSite(network)
            let address = try await network.linkLocalAddress(network.host("gw2"))
            // The control: gw1's own device certificate from the site CA gets a SIP answer (the
            // offerless INVITE is refused with 488, but it reached gw2's router).
            let genuine = try await Self.probe(
                network, address, caFile: site.caFile, certificate: (site.gw1State + "/device.pem", site.gw1State + "/device-key.pem"), tag: "genuine")
            #expect(genuine.contains("SIP/2.0 488"), "a site device reaches the mesh listener:\n\(genuine)")

            // A certificate naming gw1 but signed by another CA, and no certificate at all: the
            // handshake fails, nothing reaches SIP, no station rings.
            let impostor = try await TestCertificates.make(in: network.scratch, name: "gw1")
            let foreign = try await Self.probe(network, address, caFile: site.caFile, certificate: (impostor.certificateFile, impostor.keyFile), tag: "foreign")
            #expect(!foreign.contains("SIP/2.0"), "another CA's certificate gets no SIP answer:\n\(foreign)")
            #expect(foreign.lowercased().contains("alert"), "refused in the TLS handshake:\n\(foreign)")
            let anonymous = try await Self.probe(network, address, caFile: site.caFile, certificate: nil, tag: "none")
            #expect(!anonymous.contains("SIP/2.0"), "no certificate gets no SIP answer:\n\(anonymous)")
            #expect(anonymous.lowercased().contains("alert"), "refused in the TLS handshake:\n\(anonymous)")
            try await Task.sleep(for: .milliseconds(500))
            #expect(site.gw2.text.components(separatedBy: "call refused: the INVITE carries no SDP offer").count == 2,
                    "only the genuine INVITE reached gw2's router:\n\(site.gw2.text.suffix(3000))")
            #expect(!site.answering.output.contains("Incoming call") && !site.ringing.output.contains("Incoming call"))
            #expect(site.gw2.text.contains("CERTIFICATE_VERIFY_FAILED") && site.gw2.text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE"),
                    "gw2 logged why it refused each handshake:\n\(site.gw2.text.suffix(3000))")
            site.topics.stop()
            site.broker.stop()
        }
    }
}

extension MeshFallbackTests {
    /// A device of another company's site — claimed at the same core, so its certificate chains to
    /// the same CA — on our LAN: its own announcements are ignored, its calls into our mesh are
    /// refused, and announcing our site and a number of ours gets it no call. A device deleted and
    /// claimed again: its old certificate is refused on the mesh once the revocation list says so.
    @Test func devicesOfAnotherSiteOrWithARevokedCertificateCannotTakePart() async throws {
        try await Self.withNetwork(gateways: ["gw1", "gw2", "gw3"]) { network in
            let site = try await Self.startSite(network)
            let gw3 = try network.startGateway("gw3", channels: [
                .init(index: 1, number: "309", cloudTarget: "gw3-ch2", legacyTargets: ["sip:c@127.0.0.1:9"]),
            ], claimCode: try await network.claimCode("gw3", coreConfig: site.coreConfig), caFile: site.caFile)
            try await network.eventually("gw3 registered and on the mesh", timeout: .seconds(30)) {
                gw3.process.text.contains("cloud uplink registered") && gw3.process.text.contains("mesh on eth0")
            }
            try await Task.sleep(for: .seconds(3))
            #expect(!site.gw1.text.contains("gw3@") && !site.gw2.text.contains("gw3@"), "gw3's announcements (its own site) are ignored:\n\(site.gw1.text.suffix(2000))")
            #expect(!gw3.process.text.contains("mesh peers: gw"), "and ours by gw3:\n\(gw3.process.text.suffix(2000))")

            // 1. Its genuine certificate calling into our mesh: the handshake passes (same CA), the
            // site check refuses the INVITE with 403; nothing rings.
            let gw2Address = try await network.linkLocalAddress(network.host("gw2"))
            let intruder = try await Self.probe(
                network, gw2Address, caFile: site.caFile, certificate: (gw3.state + "/device.pem", gw3.state + "/device-key.pem"), tag: "other-site", from: "gw3")
            #expect(intruder.contains("SIP/2.0 403"), "a device of another site is refused:\n\(intruder)")
            #expect(site.gw2.text.contains("mesh call refused: the caller is not a device of our site"), "\(site.gw2.text.suffix(2000))")
            #expect(!site.answering.output.contains("Incoming call") && !site.ringing.output.contains("Incoming call"))

            // 2. It announces our site and number 309 (gw1's channel 3 rings 309 on the mesh) and
            // listens with its genuine certificate: gw1 checks the certificate and sends nothing.
            gw3.process.stop()
            let gw3Address = try await network.linkLocalAddress(network.host("gw3"))
            let listener = try network.start("forger", in: network.host("gw3"), "python3", [
                "-c", Self.tlsListener, gw3.state + "/device.pem", gw3.state + "/device-key.pem", site.caFile,
            ])
            try await Task.sleep(for: .milliseconds(500))
            try await Self.announce(network, from: "gw3", device: "gw3", address: gw3Address, txt: ["txtvers=1", "device=gw3", "site=acme/lobby", "numbers=309", "transport=tls"])
            try await network.eventually("gw1 learned the forged announcement", timeout: .seconds(10)) { site.gw1.text.contains("gw3@") }
            try await network.cutCloud()
            _ = try await Self.call(site, "a9", number: "103", seconds: 6)
            #expect(site.gw1.text.contains("(announced as gw3) is not one of our site"), "\(site.gw1.text.suffix(3000))\n---- forger:\n\(listener.text)")
            #expect(!listener.text.contains("INVITE"), "no INVITE reached the forger:\n\(listener.text)")
            listener.stop()
            try await network.restoreCloud()

            // 3. gw2 deleted and claimed again (a replaced gateway): its old certificate is revoked;
            // gw1 learns it with its next revocation list (asked for now with SIGUSR1) and refuses it.
            let old = (network.scratch.path("gw2-old.pem"), network.scratch.path("gw2-old-key.pem"))
            try FileManager.default.copyItem(atPath: site.gw2State + "/device.pem", toPath: old.0)
            try FileManager.default.copyItem(atPath: site.gw2State + "/device-key.pem", toPath: old.1)
            let admin = try builtExecutable("symphony-cloud-core")
            _ = try await runCommand(admin, ["admin", "delete", "device", "gw2", "--config", site.coreConfig])
            _ = try await runCommand(admin, ["admin", "create", "device", "gw2", "--site", "lobby", "--channels", "2", "--config", site.coreConfig])
            site.gw2.stop()
            let gw2 = try network.startGateway("gw2", channels: [
                .init(index: 1, number: "201", cloudTarget: "gw1-ch1", legacyTargets: ["sip:b@127.0.0.1:\(site.answering.sipPort)"]),
            ], claimCode: try await network.claimCode("gw2", coreConfig: site.coreConfig), caFile: site.caFile, stateDirectory: network.scratch.path("gw2-new"))
            try await network.eventually("the new gw2 registered", timeout: .seconds(30)) { gw2.process.text.contains("cloud uplink registered") }
            try await network.eventually("gw1 registered again", timeout: .seconds(40)) { site.gw1.text.hasSuffixAfter("cloud health up", "cloud health down") }
            kill(site.gw1.process.processIdentifier, SIGUSR1)
            try await network.eventually("gw1 renewed and fetched the revocation list", timeout: .seconds(20)) {
                site.gw1.text.contains("device certificate renewed")
            }
            try await Task.sleep(for: .seconds(2))
            let gw1Address = try await network.linkLocalAddress(network.host("gw1"))
            let revoked = try await Self.probe(network, gw1Address, caFile: site.caFile, certificate: old, tag: "revoked", from: "gw2", number: "101")
            #expect(revoked.contains("SIP/2.0 403"), "the old certificate is refused:\n\(revoked)")
            #expect(site.gw1.text.contains("is revoked"), "\(site.gw1.text.suffix(3000))")
            let current = try await Self.probe(
                network, gw1Address, caFile: site.caFile, certificate: (network.scratch.path("gw2-new") + "/device.pem", network.scratch.path("gw2-new") + "/device-key.pem"),
                tag: "current", from: "gw2", number: "101")
            #expect(current.contains("SIP/2.0 488"), "the new one reaches the router (an offerless INVITE: 488):\n\(current)")
            site.topics.stop()
            site.broker.stop()
        }
    }

    /// A TLS listener on [::]:5061 requiring a client certificate of the CA: prints what it gets.
    static let tlsListener = """
        import socket, ssl, sys
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
        context.load_verify_locations(sys.argv[3])
        context.verify_mode = ssl.CERT_REQUIRED
        server = socket.socket(socket.AF_INET6)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(('::', 5061)); server.listen(8)
        print('listening', flush=True)
        while True:
            connection, peer = server.accept()
            try:
                tls = context.wrap_socket(connection, server_side=True)
                print('handshake with', peer[0], flush=True)
                while True:
                    data = tls.recv(65536)
                    if not data: break
                    print(data.decode(errors='replace'), flush=True)
                print('closed by the peer', flush=True)
            except Exception as error:
                print('error', error, flush=True)
        """

    /// An mDNS announcement of `device` at `address` (its AAAA), sent from `host`'s eth0.
    static func announce(_ network: MeshNetwork, from host: String, device: String, address: String, txt: [String]) async throws {
        var bytes = in6_addr()
        guard inet_pton(AF_INET6, address, &bytes) == 1 else { throw PeerError("not an IPv6 address: \(address)") }
        let packet = HostileInputTests.announcement(device: device, txt: txt, address: withUnsafeBytes(of: bytes) { Array($0) })
        let script = """
            import socket, sys
            index = socket.if_nametoindex('eth0')
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            for _ in range(3): s.sendto(bytes.fromhex(sys.argv[1]), ('ff02::fb', 5353, 0, index))
            """
        _ = try await network.run(in: network.host(host), "python3", ["-c", script, packet.map { String(format: "%02x", $0) }.joined()])
    }
}

extension String {
    /// Whether `marker` occurs after the last `other` (a state reached again).
    func hasSuffixAfter(_ marker: String, _ other: String) -> Bool {
        guard let last = range(of: marker, options: .backwards) else { return false }
        guard let before = range(of: other, options: .backwards) else { return true }
        return last.lowerBound > before.lowerBound
    }
}
