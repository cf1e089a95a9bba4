import CloudCore
import Crypto
import Foundation
import PeerTestSupport
import SIP
import SIPTransport
import Testing

/// The cloud core against sipp (Debian's sip-tester): registration with digest and with client
/// tokens, calls forked to several contacts, busy, no answer, the duration limit, a flood from
/// one source. Over UDP and TCP (the lab listeners) and over TLS through stunnel4 (Debian's sipp
/// has no TLS), as in ../shared/PEERS.md.
@Suite("Cloud core with sipp", .serialized)
struct CloudCoreSippTests {
    enum Path: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case udp, tcp, tls
        var testDescription: String { self == .tls ? "TLS via stunnel4" : rawValue.uppercased() }
        var sippTransport: String { self == .udp ? "u1" : "t1" }
    }

    /// Runs one sipp, scenario text written to the scratch directory.
    final class Sipp: @unchecked Sendable {
        let process: PeerProcess
        let name: String
        let scratch: ScratchDirectory

        init(_ name: String, scenario: String, transport: String, localPort: Int, remote: String, keys: [String: String] = [:],
             extra: [String] = [], scratch: ScratchDirectory, ip: String = "127.0.0.1") throws {
            self.name = name
            self.scratch = scratch
            try scratch.write("\(name).xml", scenario)
            var arguments = ["-sf", scratch.path("\(name).xml"), "-t", transport, "-i", ip, "-p", String(localPort), "-m", "1",
                             "-timeout", "30s", "-timeout_error", "-nostdin", "-trace_err", "-trace_msg"]
            for (key, value) in keys.sorted(by: { $0.key < $1.key }) { arguments += ["-key", key, value] }
            arguments += extra
            if !remote.isEmpty { arguments.append(remote) }
            process = try PeerProcess("sipp", arguments, directory: scratch.url)
        }

        /// sipp on a free local port, made by `make`: a port checked free can be taken before sipp
        /// binds it (the other suites run in parallel), and sipp then exits at once with -2,
        /// "fatal error binding a socket". Such a start is tried again on another port.
        static func onFreePort(udp: Bool, _ make: (Int) async throws -> Sipp) async throws -> Sipp {
            var attempt = 0
            while true {
                attempt += 1
                let sipp = try await make(try freePort(udp: udp))
                try await Task.sleep(for: .milliseconds(300))
                guard attempt < 3, !sipp.process.process.isRunning, sipp.process.process.terminationStatus == 254 else { return sipp }
            }
        }

        func expectSuccess(timeout: Duration = .seconds(40)) async throws {
            let status = try await process.wait(timeout: timeout)
            #expect(status == 0, "sipp \(name) failed (exit \(status)):\n\(log("_errors.log"))\n\(log("_messages.log").suffix(4000))\n\(process.text.suffix(1500))")
        }

        func log(_ suffix: String) -> String {
            ((try? FileManager.default.contentsOfDirectory(atPath: scratch.url.path)) ?? [])
                .filter { $0.hasPrefix(name) && $0.hasSuffix(suffix) }
                .compactMap { try? String(contentsOfFile: scratch.path($0), encoding: .utf8) }
                .joined(separator: "\n")
        }
    }

    /// The core, and what a test's peers need to reach it over `path`.
    final class Setup: @unchecked Sendable {
        let core: CoreHarness
        let path: Path
        var tunnels: [PeerProcess] = []
        var scratch: ScratchDirectory { core.scratch }

        init(core: CoreHarness, path: Path) {
            self.core = core
            self.path = path
        }

        func stop() async {
            tunnels.forEach { $0.stop() }
            await core.stop()
        }

        /// Where a sipp client sends: the lab listener, or a stunnel client in front of the TLS one.
        func clientTarget() async throws -> String {
            switch path {
            case .udp: return "127.0.0.1:\(core.port(.udp))"
            case .tcp: return "127.0.0.1:\(core.port(.tcp))"
            case .tls:
                let (tunnel, port) = try await Stunnel.client(
                    connect: core.port(.tls), caFile: core.server.configuration.resolvedCACertificateFile, in: scratch)
                tunnels.append(tunnel)
                return "127.0.0.1:\(port)"
            }
        }

        /// Starts a sipp callee for `aor` and registers it (digest, over the UDP lab listener:
        /// from the callee's own port for UDP, as a third-party registration of its TCP or TLS
        /// Contact otherwise). For TLS a stunnel server with a certificate of the core's CA
        /// stands in front of sipp.
        func callee(_ aor: String, _ behaviour: SippScenario.CalleeBehaviour, index: Int) async throws -> Sipp {
            let sippPort = try freePort(udp: path == .udp)
            var contact = "sip:\(aor)@127.0.0.1:\(sippPort);transport=\(path.rawValue)"
            if path == .tls {
                let key = P256.Signing.PrivateKey()
                let certificate = try core.server.authority.issueServer(
                    commonName: "callee", publicKey: .init(key.publicKey), ipAddresses: ["127.0.0.1"], validDays: 1)
                try scratch.write("callee-\(index).pem", try certificate.serializeAsPEM().pemString + "\n")
                try scratch.write("callee-\(index).key", key.pemRepresentation + "\n")
                let (tunnel, port) = try await Stunnel.server(
                    connect: sippPort, certificate: scratch.path("callee-\(index).pem"), key: scratch.path("callee-\(index).key"), in: scratch)
                tunnels.append(tunnel)
                contact = "sip:\(aor)@127.0.0.1:\(port);transport=tls"
            }
            // UDP: from the callee's own port, which the registering sipp lets go of before the
            // callee binds it.
            try await register(aor, contact: contact, fromPort: path == .udp ? sippPort : try freePort(udp: true), viaUDP: true)
            let sipp = try Sipp(
                "callee-\(aor)-\(index)", scenario: SippScenario.callee(behaviour), transport: path.sippTransport, localPort: sippPort,
                remote: "", keys: ["aor": aor], scratch: scratch)
            try await waitUntilListening(port: sippPort, udp: path == .udp)
            return sipp
        }

        func register(_ aor: String, contact: String, fromPort: Int, viaUDP: Bool) async throws {
            let remote = viaUDP ? "127.0.0.1:\(core.port(.udp))" : try await clientTarget()
            let sipp = try Sipp(
                "register-\(aor)-\(fromPort)", scenario: SippScenario.registerDigest, transport: viaUDP ? "u1" : path.sippTransport,
                localPort: fromPort, remote: remote, keys: ["aor": aor, "contact_uri": contact],
                extra: ["-au", aor, "-ap", "\(aor)-pw"], scratch: scratch)
            try await sipp.expectSuccess()
        }

        func caller(_ end: SippScenario.CallerEnd, callee: String, as caller: String = "bob", extraHeaders: String = "") async throws -> Sipp {
            let remote = try await clientTarget()
            return try await Sipp.onFreePort(udp: path == .udp) { port in
                try Sipp(
                    "caller-\(callee)", scenario: SippScenario.caller(end, extraHeaders: extraHeaders), transport: path.sippTransport,
                    localPort: port, remote: remote,
                    keys: ["caller": caller, "callee": callee], extra: ["-au", caller, "-ap", "\(caller)-pw"], scratch: scratch)
            }
        }
    }

    static func setUp(_ path: Path, configure: (inout CloudCoreConfiguration) -> Void = { _ in }) async throws -> Setup {
        Setup(core: try await CoreHarness.start(configure: configure), path: path)
    }

    // MARK: Registration

    @Test(arguments: Path.allCases)
    func registerWithDigest(_ path: Path) async throws {
        let setup = try await Self.setUp(path)
        let remote = try await setup.clientTarget()
        var contact = ""
        let sipp = try await Sipp.onFreePort(udp: path == .udp) { port in
            contact = "sip:alice@127.0.0.1:\(port);transport=\(path.rawValue)"
            return try Sipp(
                "register", scenario: SippScenario.registerDigest, transport: path.sippTransport, localPort: port,
                remote: remote, keys: ["aor": "alice", "contact_uri": contact],
                extra: ["-au", "alice", "-ap", "alice-pw"], scratch: setup.scratch)
        }
        try await sipp.expectSuccess()
        let bindings = await setup.core.server.proxy.contacts(of: "alice")
        #expect(bindings.map(\.contact.uri.description) == [contact])
        #expect(bindings.first?.principal == "user:alice")
        await setup.stop()
    }

    @Test func registerWithAWrongPasswordIsChallengedAgain() async throws {
        let setup = try await Self.setUp(.udp)
        let port = try freePort(udp: true)
        let sipp = try Sipp(
            "register", scenario: SippScenario.registerDigest, transport: "u1", localPort: port, remote: try await setup.clientTarget(),
            keys: ["aor": "alice", "contact_uri": "sip:alice@127.0.0.1:\(port)"], extra: ["-au", "alice", "-ap", "wrong"], scratch: setup.scratch)
        let status = try await sipp.process.wait(timeout: .seconds(40))
        #expect(status != 0, "a wrong password must not register")
        #expect(sipp.log("_messages.log").contains("SIP/2.0 401"))
        #expect(await setup.core.server.proxy.contacts(of: "alice").isEmpty)
        await setup.stop()
    }

    enum TokenCase: String, CaseIterable, Sendable { case good, expired, wrongKey, algNone, otherUser }

    @Test(arguments: TokenCase.allCases)
    func registerWithABearerToken(_ tokenCase: TokenCase) async throws {
        let setup = try await Self.setUp(.tls)
        let token: String
        switch tokenCase {
        case .good: token = try setup.core.token(for: "alice")
        case .expired: token = try setup.core.token(for: "alice", lifetime: -120)
        case .wrongKey:
            let now = Int(Date().timeIntervalSince1970)
            token = try ClientTokenSigner(key: P256.Signing.PrivateKey()).token(for: ClientTokenClaims(
                subject: "alice", audience: setup.core.server.configuration.tokenAudience, issuedAt: now, expiresAt: now + 300))
        case .algNone:
            let header = Data(#"{"alg":"none","typ":"JWT"}"#.utf8).base64URL
            let payload = Data(#"{"sub":"alice","aud":"symphony-cloud-core","iat":1,"exp":4102444800}"#.utf8).base64URL
            token = "\(header).\(payload)."
        case .otherUser: token = try setup.core.token(for: "bob")
        }
        let remote = try await setup.clientTarget()
        let sipp = try await Sipp.onFreePort(udp: false) { port in
            try Sipp(
                "register", scenario: SippScenario.registerBearer(expecting: tokenCase == .good ? 200 : 403), transport: "t1", localPort: port,
                remote: remote, keys: ["aor": "alice", "contact_uri": "sip:alice@127.0.0.1:\(port);transport=tls", "token": token],
                scratch: setup.scratch)
        }
        try await sipp.expectSuccess()
        let registered = !(await setup.core.server.proxy.contacts(of: "alice")).isEmpty
        #expect(registered == (tokenCase == .good))
        await setup.stop()
    }

    @Test func aFloodFromOneSourceDoesNotStopAnotherFromRegistering() async throws {
        let setup = try await Self.setUp(.udp) {
            $0.unauthenticatedPerSecond = 20
            $0.unauthenticatedBurst = 20
        }
        // 127.0.0.2 sends 3000 REGISTERs without credentials at 1000/s.
        let flood = try PeerProcess("sipp", [
            "-sf", { try! setup.scratch.write("flood.xml", SippScenario.registerFlood); return setup.scratch.path("flood.xml") }(),
            "-t", "u1", "-i", "127.0.0.2", "-p", String(try freePort(udp: true)), "-m", "3000", "-r", "1000", "-l", "3000",
            "-key", "aor", "alice", "-key", "contact_uri", "sip:alice@127.0.0.2", "-nostdin", "-timeout", "20s",
            "127.0.0.1:\(setup.core.port(.udp))",
        ], directory: setup.scratch.url)
        try await Task.sleep(for: .milliseconds(800))
        try await setup.register("carol", contact: "sip:carol@127.0.0.1:5999", fromPort: try freePort(udp: true), viaUDP: true)
        _ = try? await flood.wait(timeout: .seconds(30))
        let statistics = await setup.core.server.proxy.statistics
        // Dropped by flood control, or once the source holds its 512 transactions, at the endpoint.
        let refusedAtTheEndpoint = await setup.core.server.endpoint.statistics.transactionsRefused
        #expect(statistics.rateLimited + refusedAtTheEndpoint > 1000, "most of the flood was dropped: \(statistics), \(refusedAtTheEndpoint) at the endpoint")
        #expect(statistics.challenges < 200, "only the allowance was challenged: \(statistics)")
        #expect(await setup.core.server.proxy.contacts(of: "carol").count == 1)
        await setup.stop()
    }

    // MARK: Calls

    @Test(arguments: Path.allCases)
    func aCallForkedToThreeContactsCancelsTheLosersWithReason200(_ path: Path) async throws {
        let setup = try await Self.setUp(path)
        let winner = try await setup.callee("alice", .answer(afterMilliseconds: 600), index: 0)
        let losers = [
            try await setup.callee("alice", .ringUntilCancelled(reasonPattern: "SIP;cause=200"), index: 1),
            try await setup.callee("alice", .ringUntilCancelled(reasonPattern: "SIP;cause=200"), index: 2),
        ]
        #expect(await setup.core.server.proxy.contacts(of: "alice").count == 3)
        let caller = try await setup.caller(.hangUp(holdMilliseconds: 300), callee: "alice")
        try await caller.expectSuccess()
        try await winner.expectSuccess()
        for loser in losers { try await loser.expectSuccess() }
        let records = try await setup.core.records()
        #expect(records.count == 1)
        #expect(records.first?.status == .answered)
        #expect(records.first?.caller == "bob" && records.first?.callee == "alice")
        await setup.stop()
    }

    /// RFC 3325: the core asserts who called (the directory's display name and the user it
    /// authenticated) and drops the identities the caller claimed for itself.
    @Test(arguments: [Path.udp, .tls])
    func theCoreAssertsTheCallersIdentityAndDropsForgedOnes(_ path: Path) async throws {
        let setup = try await Self.setUp(path)
        let callee = try await setup.callee("alice", .answerCheckingIdentity(pattern: "&quot;Bob Builder&quot; &lt;sips:bob@symphony\\.local&gt;"), index: 0)
        let caller = try await setup.caller(.hangUp(holdMilliseconds: 200), callee: "alice")
        try await caller.expectSuccess()
        try await callee.expectSuccess()
        await setup.stop()
    }

    /// RFC 4028 §8.1: a session interval below 90 s is refused by the core with its Min-SE.
    @Test func aSessionIntervalBelowTheMinimumIs422() async throws {
        let setup = try await Self.setUp(.udp)
        let caller = try await setup.caller(.failure(422), callee: "alice", extraHeaders: "Supported: timer\n      Session-Expires: 60")
        try await caller.expectSuccess()
        await setup.stop()
    }

    @Test(arguments: [Path.udp, .tls])
    func busyEverywhereGivesBusy(_ path: Path) async throws {
        let setup = try await Self.setUp(path)
        let callee = try await setup.callee("carol", .reject("486 Busy Here"), index: 0)
        let caller = try await setup.caller(.failure(486), callee: "carol")
        try await caller.expectSuccess()
        try await callee.expectSuccess()
        #expect(try await setup.core.records().map(\.status) == [.busy])
        await setup.stop()
    }

    @Test func noAnswerEndsWith480AfterTheRingTime() async throws {
        let setup = try await Self.setUp(.tcp) { $0.ringSeconds = 5 }
        let callee = try await setup.callee("carol", .ringUntilCancelled(reasonPattern: "cause=480"), index: 0)
        let started = ContinuousClock.now
        let caller = try await setup.caller(.failure(480), callee: "carol")
        try await caller.expectSuccess()
        try await callee.expectSuccess()
        #expect(ContinuousClock.now - started >= .seconds(5))
        #expect(try await setup.core.records().map(\.status) == [.missed])
        await setup.stop()
    }

    @Test func nobodyRegisteredGives480AndUnknownGives404() async throws {
        let setup = try await Self.setUp(.udp)
        let first = try await setup.caller(.failure(480), callee: "carol")
        try await first.expectSuccess()
        let second = try await setup.caller(.failure(404), callee: "nobody")
        try await second.expectSuccess()
        await setup.stop()
    }

    @Test(arguments: [Path.udp, .tls])
    func theDurationLimitEndsTheCallWithByeToBothSides(_ path: Path) async throws {
        let setup = try await Self.setUp(path) { $0.maxCallSeconds = 2 }
        let callee = try await setup.callee("carol", .answerThenByeFromCore(reasonPattern: "cause=102"), index: 0)
        let started = ContinuousClock.now
        let caller = try await setup.caller(.byeFromCore(reasonPattern: "cause=102"), callee: "carol")
        try await caller.expectSuccess()
        try await callee.expectSuccess()
        #expect(ContinuousClock.now - started >= .seconds(2))
        let records = try await setup.core.records()
        #expect(records.map(\.status) == [.answered])
        #expect(records.first?.reason == "duration limit")
        #expect((records.first?.durationSeconds ?? 0) >= 1.9)
        #expect(await setup.core.server.proxy.statistics.callsEndedByLimit == 1)
        await setup.stop()
    }

    @Test func aRingGroupRingsItsMembersInParallel() async throws {
        let setup = try await Self.setUp(.udp)
        let alice = try await setup.callee("alice", .ringUntilCancelled(reasonPattern: "cause=200"), index: 0)
        let carol = try await setup.callee("carol", .answer(afterMilliseconds: 300), index: 1)
        let caller = try await setup.caller(.hangUp(holdMilliseconds: 200), callee: "desk")
        try await caller.expectSuccess()
        try await alice.expectSuccess()
        try await carol.expectSuccess()
        let records = try await setup.core.records()
        #expect(records.first?.target == "ring-group:desk" && records.first?.answeredBy == "carol")
        await setup.stop()
    }
}

extension Data {
    var base64URL: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
