import CloudCore
import CloudUplink
import Crypto
import DeviceTrust
import Foundation
import Gateway
import NIOConcurrencyHelpers
import NIOSSL
import PeerTestSupport
import Testing
import X509

/// The device identity for the life of a gateway (issue 17): site-bound certificates and who
/// may join the mesh, renewal on the gateway's clock, claims that survive a lost answer and a
/// kill -9 in the middle of writing, broken identity files named.
@Suite("Device identity", .serialized)
struct IdentityTests {
    @Test("Mesh trust: only a device certificate of our company and site, not revoked, and the device discovery announced")
    func meshTrustNeedsOurSite() throws {
        let scratch = try ScratchDirectory()
        let authority = try DeviceCertificateAuthority.loadOrCreate(certificateFile: scratch.path("ca.pem"), keyFile: scratch.path("ca-key.pem"))
        func device(_ company: String, _ site: String, _ name: String) throws -> (NIOSSLCertificate, String) {
            let certificate = try authority.issueDevice(
                DeviceBinding(company: company, site: site, device: name), publicKey: .init(P256.Signing.PrivateKey().publicKey), validDays: 1)
            return (try NIOSSLCertificate(bytes: Array(try certificate.serializeAsPEM().pemString.utf8), format: .pem), DeviceCertificateName.serial(of: certificate))
        }
        let ours = DeviceBinding(company: "acme", site: "lobby", device: "gw1")
        let (peer, peerSerial) = try device("acme", "lobby", "gw2")
        var trust = MeshTrust(site: ours)
        #expect(trust.refusal(of: peer) == nil)
        #expect(trust.refusal(of: peer, expecting: "gw2") == nil)
        #expect(trust.refusal(of: peer, expecting: "gw3") != nil, "not the device discovery announced")
        #expect(trust.refusal(of: try device("acme", "garage", "gw2").0) != nil, "another site of the company")
        #expect(trust.refusal(of: try device("globex", "lobby", "gw2").0) != nil, "a site of the same name of another company")
        #expect(trust.refusal(of: nil) != nil)
        let server = try authority.issueServer(commonName: "gw2", publicKey: .init(P256.Signing.PrivateKey().publicKey), dnsNames: ["gw2"], validDays: 1)
        #expect(trust.refusal(of: try NIOSSLCertificate(bytes: Array(try server.serializeAsPEM().pemString.utf8), format: .pem)) != nil, "no site binding")
        trust.revoked = [peerSerial]
        #expect(trust.refusal(of: peer)?.contains("revoked") == true)
        #expect(MeshTrust(site: nil).refusal(of: peer) != nil, "without a binding of our own, nobody")

        // The binding survives any company or site name (percent-encoded in the URI).
        let odd = DeviceBinding(company: "Acme & Söhne/GmbH", site: "Haus 2: Süd%", device: "gw-1.a_b")
        #expect(DeviceBinding(uri: odd.uri) == odd && !odd.uri.contains(" ") && odd.uri.split(separator: "/").count == 3, "\(odd.uri)")
        for bad in ["symphony-device:a/b", "symphony-device:a/b/c/d", "symphony-device:a/b/bad name", "symphony-device:%zz/b/c", "other:a/b/c"] {
            #expect(DeviceBinding(uri: bad) == nil, "\(bad)")
        }
    }

    @Test("A 1-day certificate is renewed at two thirds of its life on the gateway's clock; the core then takes only the new one and the gateway registers with it")
    func renewalOnTheGatewaysClock() async throws {
        let offset = NIOLockedValueBox<TimeInterval>(0)
        var upkeep = GatewayServer.IdentityUpkeep()
        upkeep.clock = { Date().addingTimeInterval(offset.withLockedValue { $0 }) }
        upkeep.checkEvery = .milliseconds(200)
        let scratch = try ScratchDirectory()
        let broker = try Mosquitto(in: scratch)
        try await broker.start()
        let path = try await GatewayPath.start(configure: { config in
            config.mqtt.host = "127.0.0.1"
            config.mqtt.port = broker.port
        }, coreConfigure: { $0.deviceCertificateDays = 1 }, upkeep: upkeep)
        let state = path.gateway.configuration.stateDirectory
        let before = try #require(try DeviceIdentity.load(from: state))
        #expect(before.binding == DeviceBinding(company: "acme", site: "lobby", device: "gw1"))
        #expect(before.notAfter.timeIntervalSince(before.notBefore) < 2 * 86400)

        // MQTT: the end in `info` (the alarm in `status`: `CertificateAlarmTests`).
        let prefix = "symphony-bridge/gw1"
        try await path.eventually("the certificate's end on MQTT") {
            let info = MQTTStatusTests.json(try await broker.retained("\(prefix)/info")["\(prefix)/info"])
            return (info["certificate_expires_at"] as? Int).map { abs(Double($0) / 1000 - before.notAfter.timeIntervalSince1970) < 2 } ?? false
        }
        offset.withLockedValue { $0 = 10 * 3600 }
        try await Task.sleep(for: .seconds(1))
        #expect(try DeviceIdentity.load(from: state)?.serial == before.serial, "not due at 10 h of 24")

        offset.withLockedValue { $0 = 17 * 3600 }
        try await path.eventually("renewed", timeout: .seconds(15)) { (try? DeviceIdentity.load(from: state))?.serial != before.serial }
        let after = try #require(try DeviceIdentity.load(from: state))
        #expect(after.notAfter > before.notAfter && after.binding == before.binding)
        #expect(path.core.directory.isCurrentCertificate(device: "gw1", serial: after.serial))
        #expect(!path.core.directory.isCurrentCertificate(device: "gw1", serial: before.serial), "the old one is revoked")
        #expect(try path.core.directory.revokedSerials(now: Date()).contains(before.serial))
        try await path.eventually("registered again with the new certificate", timeout: .seconds(15)) {
            path.logs.contains("cloud uplink reconnecting") && path.logs.count("cloud uplink registered") >= 2
        }
        #expect(!FileManager.default.fileExists(atPath: state + "/device-key.next.pem"), "the next key moved into place")
        #expect(FileManager.default.fileExists(atPath: state + "/revoked.json"), "the revocation list kept for the mesh")
        await path.stop()
        broker.stop()
    }

    @Test("A claim whose answer is lost on the way (the core committed) succeeds when retried with the same code: the same key, the same certificate")
    func aClaimWhoseAnswerIsLostSucceedsOnRetry() async throws {
        let relayState = NIOLockedValueBox<(PeerProcess?, String)>((nil, ""))
        let path = try await GatewayPath.start(configure: { config in
            // The claim goes through a TLS relay (a certificate of the core's CA for 127.0.0.1) that
            // passes the request on, reads the core's answer and drops the first one.
            guard let url = config.claimURL, let target = URL(string: url)?.port, let caFile = config.cloudCAFile, let port = try? freePort() else { return }
            let directory = (caFile as NSString).deletingLastPathComponent
            let scratch = NSTemporaryDirectory() + "/relay-\(UUID().uuidString)"
            try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            guard let authority = try? DeviceCertificateAuthority.loadOrCreate(certificateFile: caFile, keyFile: directory + "/ca-key.pem") else { return }
            let key = P256.Signing.PrivateKey()
            guard let certificate = try? authority.issueServer(commonName: "relay", publicKey: .init(key.publicKey), ipAddresses: ["127.0.0.1"], validDays: 1),
                let pem = try? certificate.serializeAsPEM().pemString
            else { return }
            try? pem.write(toFile: scratch + "/relay.pem", atomically: true, encoding: .utf8)
            try? key.pemRepresentation.write(toFile: scratch + "/relay.key", atomically: true, encoding: .utf8)
            let relay = try? PeerProcess(
                "python3", ["-c", Self.answerDroppingRelay, String(port), String(target), scratch + "/relay.pem", scratch + "/relay.key", scratch + "/relay.log"])
            relayState.withLockedValue { $0 = (relay, scratch + "/relay.log") }
            config.claimURL = "https://127.0.0.1:\(port)/v1/claim"
        })
        let (relay, log) = relayState.withLockedValue { $0 }
        defer { relay?.stop() }
        let relayed = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(relayed.contains("dropped answer 1"), "the first answer was lost: \(relayed)")
        #expect(path.logs.contains("claiming failed"), "the gateway saw no answer and retried:\n\(path.logs.text.suffix(2000))")
        let identity = try #require(try DeviceIdentity.load(from: path.gateway.configuration.stateDirectory))
        #expect(path.core.directory.isCurrentCertificate(device: "gw1", serial: identity.serial), "the certificate of the first (committed) claim")
        #expect(try path.core.directory.revokedSerials(now: Date()).isEmpty, "one certificate issued, none replaced")
        await path.stop()
    }

    @Test("kill -9 at any moment of a claim leaves no empty or partial identity file, and the same code completes the claim with one certificate; a broken device.json is named in the log and on the status topic")
    func killNineDuringTheClaimAndABrokenIdentityFile() async throws {
        let scratch = try ScratchDirectory()
        var c = CloudCoreConfiguration()
        c.stateDirectory = scratch.path("core")
        c.tlsListen = [.init("127.0.0.1:0")!]
        c.claimingListen = .init("127.0.0.1:0")
        let directory = try Directory(path: c.directoryFile, realm: c.realm)
        try directory.createCompany("acme")
        try directory.createProject("hq", company: "acme")
        try directory.createSite("lobby", company: "acme", project: "hq")
        try directory.createDevice("gw1", site: "lobby", channels: 1)
        let core = try await CloudCoreServer.start(c, logger: GatewayPath.quietLogger("core"))
        let code = try core.directory.createClaimingCode(device: "gw1", lifetime: 600)
        let broker = try Mosquitto(in: scratch)
        try await broker.start()
        let state = scratch.path("gateway"), config = scratch.path("bridge.toml")
        func write(mqtt: Bool) throws {
            try """
                [gateway]
                id = "gw1"
                state_dir = "\(state)"
                [legacy]
                listen = "127.0.0.1:\(try freePort(udp: true))"
                [cloud]
                server = "127.0.0.1:\(core.sipAddresses[.tls]!.port!)"
                ca_file = "\(c.resolvedCACertificateFile)"
                claim_url = "https://127.0.0.1:\(core.claiming!.localAddress!.port!)/v1/claim"
                claim_code = "\(code)"
                [[channel]]
                index = 1
                number = "101"
                cloud_target = "alice"
                legacy_targets = ["sip:door@127.0.0.1:9"]
                \(mqtt ? "[mqtt]\nhost = \"127.0.0.1\"\nport = \(broker.port)\n" : "")
                """.write(toFile: config, atomically: true, encoding: .utf8)
        }
        let files = DeviceIdentity.files(in: state)
        func expectWholeFiles(_ round: Int) throws {
            for file in [files.key, files.nextKey] where FileManager.default.fileExists(atPath: file) {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                #expect((try? P256.Signing.PrivateKey(pemRepresentation: text)) != nil, "round \(round): \(file) is a whole key: \(text.count) bytes")
            }
            for file in [files.certificate, files.ca] where FileManager.default.fileExists(atPath: file) {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                #expect((try? Certificate(pemEncoded: text)) != nil, "round \(round): \(file) is a whole certificate: \(text.count) bytes")
            }
            if FileManager.default.fileExists(atPath: files.metadata) {
                #expect(throws: Never.self, "round \(round): a stored identity loads whole") { _ = try DeviceIdentity.load(from: state) }
            }
        }
        // Killed at moments spread over the claim: from before the request to after the store.
        let binary = try builtExecutable("symphony-bridge")
        for round in 0..<12 {
            try write(mqtt: false)
            let gateway = try PeerProcess(binary, ["run", "--config", config])
            try await gateway.waitForOutput("legacy trunk listening", timeout: .seconds(20))
            try await Task.sleep(for: .milliseconds(round * 12))
            gateway.stop()
            try expectWholeFiles(round)
        }
        try write(mqtt: false)
        let gateway = try PeerProcess(binary, ["run", "--config", config])
        try await gateway.waitForOutput("cloud uplink registered", timeout: .seconds(30))
        let identity = try #require(try DeviceIdentity.load(from: state))
        #expect(core.directory.isCurrentCertificate(device: "gw1", serial: identity.serial))
        #expect(try core.directory.revokedSerials(now: Date()).isEmpty, "one certificate for all the attempts: each retry asked for the same key")
        gateway.stop()

        // A broken device.json: named in the log and on `status`; the gateway runs unclaimed.
        try "{\"device\": ".write(toFile: files.metadata, atomically: true, encoding: .utf8)
        try write(mqtt: true)
        let broken = try PeerProcess(binary, ["run", "--config", config])
        try await broken.waitForOutput("legacy trunk listening", timeout: .seconds(20))
        #expect(broken.text.contains("identity file \(files.metadata) is broken"), "\(broken.text)")
        #expect(!broken.text.contains("claiming code already used"), "not reported as a spent code")
        let prefix = "symphony-bridge/gw1"
        var status: [String: Any] = [:]
        for _ in 0..<50 {
            status = MQTTStatusTests.json(try await broker.retained("\(prefix)/status")["\(prefix)/status"])
            if status["problems"] != nil { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(status["state"] as? String == "degraded" && (status["problems"] as? [String])?.first?.contains("device.json is broken") == true, "\(status)")
        let table = try await runCommand(binary, ["status", "--broker", "127.0.0.1:\(broker.port)", "--prefix", "symphony-bridge", "--id", "gw1"])
        #expect(table.contains("PROBLEM  identity file \(files.metadata) is broken"), "`symphony-bridge status` shows it:\n\(table)")
        broken.stop()
        broker.stop()
        await core.shutdown()
    }

    /// A TLS relay `listen` → the core's claiming port `target`: it forwards one request per
    /// connection and reads the whole answer; the first answer it drops (the client sees the
    /// connection close), later ones it passes on.
    static let answerDroppingRelay = """
        import socket, ssl, sys, threading
        listen, target, cert, key, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
        inbound = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); inbound.load_cert_chain(cert, key)
        outbound = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); outbound.check_hostname = False; outbound.verify_mode = ssl.CERT_NONE
        server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(('127.0.0.1', listen)); server.listen(16)
        def note(text):
            with open(log, 'a') as f: f.write(text + '\\n')
        def handle(raw, number):
            try:
                client = inbound.wrap_socket(raw, server_side=True)
                data = b''
                while b'\\r\\n\\r\\n' not in data:
                    chunk = client.recv(65536)
                    if not chunk: return
                    data += chunk
                head, _, body = data.partition(b'\\r\\n\\r\\n')
                length = 0
                for line in head.split(b'\\r\\n'):
                    if line.lower().startswith(b'content-length:'): length = int(line.split(b':')[1])
                while len(body) < length: body += client.recv(65536)
                upstream = outbound.wrap_socket(socket.create_connection(('127.0.0.1', target)))
                upstream.sendall(head + b'\\r\\n\\r\\n' + body)
                answer = b''
                while True:
                    chunk = upstream.recv(65536)
                    if not chunk: break
                    answer += chunk
                if number == 1: note('dropped answer 1 (%d bytes)' % len(answer))
                else: client.sendall(answer); note('passed answer %d' % number)
                client.close()
            except Exception as error:
                note('connection %d: %s' % (number, error))
        count = 0
        while True:
            raw, _ = server.accept(); count += 1
            threading.Thread(target=handle, args=(raw, count), daemon=True).start()
        """
}
