import Foundation
import Gateway
import Mesh
import Media
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PeerTestSupport
import SIP
import SIPTransport
import SIPUserAgent
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The daemons as an attacker meets them (docs/RELIABILITY.md, the abuse suite): the built
/// `symphony-cloud-core` and `symphony-bridge` as processes on loopback, the gateway claimed and
/// registered, its mesh on one end of a veth pair whose other end sits in a network namespace of
/// its own (the "LAN host" that sends mDNS), and in this process the attackers' tools: a LAN SIP
/// agent over UDP, a cloud user (bob, digest over TLS through the core), raw UDP and TLS sockets.
/// `healthy` says whether both daemons still run and neither printed a crash report.
final class HostileSite: @unchecked Sendable {
    let scratch: ScratchDirectory
    let tag = String(UInt32.random(in: 0..<0xFFFF), radix: 16)
    var lanNamespace: String { "sbh\(tag)-lan" }
    var meshInterface: String { "sbh\(tag)m" }
    let corePort: Int
    let claimPort: Int
    let legacyPort: Int
    let meshPort: Int
    let caFile: String
    let core: PeerProcess
    private(set) var gateway: PeerProcess!
    let door: Baresip
    /// Channel 2's station: rung only by the last, normal call (cloud → legacy).
    let door2: Baresip
    private(set) var lan: SIPUserAgent!
    private(set) var bob: SIPUserAgent!
    let lanEvents = EventLog()
    let bobEvents = EventLog()
    /// What bob answers with per incoming call: the SDP and its own SRTP key for that call.
    let bobAnswers = NIOLockedValueBox<[SIPCallHandle: (offer: SDPSession, answer: SDPSession, negotiated: SDPNegotiatedAudio)]>([:])
    /// When false, bob lets incoming calls ring (cloud → legacy cases need him quiet).
    let bobAnswersCalls = NIOLockedValueBox(true)

    static let crashMarkers = ["Fatal error", "crashed with", "Program crashed", "Backtracing", "Swift runtime failure", "Segmentation fault", "Illegal instruction"]

    private init(scratch: ScratchDirectory, core: PeerProcess, corePort: Int, claimPort: Int, legacyPort: Int, meshPort: Int, caFile: String, door: Baresip, door2: Baresip) {
        self.scratch = scratch
        self.core = core
        self.corePort = corePort
        self.claimPort = claimPort
        self.legacyPort = legacyPort
        self.meshPort = meshPort
        self.caFile = caFile
        self.door = door
        self.door2 = door2
    }

    static func start() async throws -> HostileSite {
        guard getuid() == 0 else { throw PeerError("the abuse suite makes a network namespace for the mDNS cases and needs root (CI runs as root)") }
        let scratch = try ScratchDirectory()
        let (corePort, claimPort, legacyPort, meshPort) = (try freePort(), try freePort(), try freePort(udp: true), try freePort())
        let seed = scratch.path("seed.toml")
        try """
            [[company]]
            name = "acme"
            [[project]]
            company = "acme"
            name = "hq"
            [[site]]
            company = "acme"
            project = "hq"
            name = "lobby"
            time_zone = "Europe/Berlin"
            [[user]]
            name = "alice"
            site = "lobby"
            password = "alice-pw"
            [[user]]
            name = "bob"
            site = "lobby"
            password = "bob-pw"
            [[device]]
            name = "gw1"
            site = "lobby"
            channels = 3
            """.write(toFile: seed, atomically: true, encoding: .utf8)
        let coreConfig = scratch.path("core.toml")
        try """
            [core]
            domain = "symphony.local"
            state_dir = "\(scratch.path("core"))"
            log_level = "notice"
            seed_file = "\(seed)"
            [sip]
            tls_listen = ["127.0.0.1:\(corePort)"]
            advertise = "127.0.0.1"
            digest_algorithms = ["MD5"]
            [claiming]
            listen = "127.0.0.1:\(claimPort)"
            """.write(toFile: coreConfig, atomically: true, encoding: .utf8)
        let core = try PeerProcess(try builtExecutable("symphony-cloud-core"), ["run", "--config", coreConfig])
        try await waitUntilListening(port: corePort, udp: false, timeout: .seconds(20))
        try await waitUntilListening(port: claimPort, udp: false, timeout: .seconds(20))
        let codeText = try await runCommand(try builtExecutable("symphony-cloud-core"), ["admin", "claim-code", "--config", coreConfig, "gw1"])
        guard let code = codeText.split(whereSeparator: \.isWhitespace).last else { throw PeerError("no claiming code in: \(codeText)") }

        let doorTone = scratch.path("door.wav")
        try await Baresip.tone(doorTone, frequency: 800, seconds: 900, rate: 16000, channels: 1)
        let door = try Baresip(
            "door", in: scratch, modules: ["g722.so", "g711.so"], account: "<sip:door@127.0.0.1>;regint=0;audio_codecs=G722/16000/1;answermode=auto",
            tone: doorTone, rtpPorts: 33000...33499)
        try door.start(seconds: 900)
        let door2Tone = scratch.path("door2.wav")
        try await Baresip.tone(door2Tone, frequency: 800, seconds: 900, rate: 16000, channels: 1)
        let door2 = try Baresip(
            "door2", in: scratch, modules: ["g722.so"], account: "<sip:door2@127.0.0.1>;regint=0;audio_codecs=G722/16000/1;answermode=auto",
            tone: door2Tone, rtpPorts: 31000...31499)
        try door2.start(seconds: 900)
        let site = HostileSite(
            scratch: scratch, core: core, corePort: corePort, claimPort: claimPort, legacyPort: legacyPort, meshPort: meshPort,
            caFile: scratch.path("core") + "/ca.pem", door: door, door2: door2)
        do {
            try await site.makeLAN()
            try await site.startGateway(claimCode: String(code))
            try await site.startAgents()
        } catch {
            await site.stop()
            throw error
        }
        return site
    }

    /// The namespace of the LAN host and the veth between it and the gateway's mesh interface.
    private func makeLAN() async throws {
        try await runCommand("ip", ["netns", "add", lanNamespace])
        try await runCommand("ip", ["link", "add", meshInterface, "type", "veth", "peer", "name", "eth0", "netns", lanNamespace])
        try await runCommand("sysctl", ["-qw", "net.ipv6.conf.\(meshInterface).accept_dad=0"])
        try await runCommand("ip", ["netns", "exec", lanNamespace, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])
        try await runCommand("ip", ["link", "set", meshInterface, "up"])
        try await runCommand("ip", ["-n", lanNamespace, "link", "set", "eth0", "up"])
        try await runCommand("ip", ["-n", lanNamespace, "link", "set", "lo", "up"])
        try await eventually("a link-local address on \(meshInterface)") {
            (try? await runCommand("ip", ["-6", "-o", "addr", "show", "dev", self.meshInterface, "scope", "link"]))?.contains("fe80:") == true
        }
    }

    private func startGateway(claimCode: String) async throws {
        let config = scratch.path("bridge.toml")
        try """
            [gateway]
            id = "gw1"
            site = "lobby"
            state_dir = "\(scratch.path("gateway"))"
            log_level = "info"
            [legacy]
            listen = "127.0.0.1:\(legacyPort)"
            options_interval_s = 0
            # Any loopback address may call: the flood case sends from 127.0.0.2, a station of the LAN.
            allow = ["127.0.0.0/8"]
            [cloud]
            server = "127.0.0.1:\(corePort)"
            ca_file = "\(caFile)"
            claim_url = "https://127.0.0.1:\(claimPort)/v1/claim"
            claim_code = "\(claimCode)"
            keepalive_s = 5
            [[channel]]
            index = 1
            number = "101"
            cloud_target = "bob"
            legacy_targets = ["sip:door@127.0.0.1:\(door.sipPort)"]
            ring_s = 10
            [[channel]]
            index = 2
            number = "102"
            cloud_target = "alice"
            legacy_targets = ["sip:door2@127.0.0.1:\(door2.sipPort)"]
            ring_s = 10
            [[channel]]
            index = 3
            number = "103"
            cloud_target = "bob"
            legacy_targets = ["sip:door@127.0.0.1:\(door.sipPort)"]
            ring_s = 10
            [mesh]
            enabled = true
            interfaces = ["\(meshInterface)"]
            port = \(meshPort)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        gateway = try PeerProcess(try builtExecutable("symphony-bridge"), ["run", "--config", config])
        try await eventually("the gateway registered at the core", timeout: .seconds(30)) { self.gateway.text.contains("cloud uplink registered") }
        try await eventually("the gateway's mesh listening", timeout: .seconds(15)) { self.gateway.text.contains("mDNS") || self.gateway.text.contains("mesh") }
    }

    private func startAgents() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let lanEndpoint = try SIPEndpoint(eventLoop: loop)
        _ = try await lanEndpoint.listen(.udp, on: try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        var lanConfiguration = SIPUserAgent.Configuration()
        lanConfiguration.user = "intruder"
        lanConfiguration.domain = "127.0.0.1"
        lanConfiguration.role = .softphone(answerAfter: nil)
        lan = SIPUserAgent(endpoint: lanEndpoint, configuration: lanConfiguration)
        await lan.attach()
        lanEvents.follow(lan.events)

        var endpointConfiguration = SIPEndpoint.Configuration()
        endpointConfiguration.tls = SIPTLSSettings(trustingCAFile: caFile)
        let bobEndpoint = try SIPEndpoint(eventLoop: loop, configuration: endpointConfiguration)
        var bobConfiguration = SIPUserAgent.Configuration()
        bobConfiguration.user = "bob"
        bobConfiguration.domain = "symphony.local"
        bobConfiguration.credentials = ("bob", "bob-pw")
        bobConfiguration.role = .softphone(answerAfter: nil)
        let bob = SIPUserAgent(endpoint: bobEndpoint, configuration: bobConfiguration)
        self.bob = bob
        await bob.attach()
        // bob answers what the gateway offers, with SDES-SRTP and Opus, as a cloud client does.
        let (answers, answering) = (bobAnswers, bobAnswersCalls)
        bobEvents.follow(bob.events) { event in
            guard case .incomingCall(let handle, _) = event, answering.withLockedValue({ $0 }) else { return }
            guard let body = await bob.remoteBody(of: handle), let offer = try? SDPParser.parse(body.text) else {
                await bob.reject(handle, status: 488)
                return
            }
            let policy = SDPAudioPolicy(codecs: [.opus, .g722, .pcma, .pcmu], srtp: .required, cryptoSuites: [("AES_CM_128_HMAC_SHA1_80", 30)])
            let port = 34000 + handle.value % 500 * 2
            guard let (answer, negotiated) = try? SDPOfferAnswer.answer(
                offer: offer, policy: policy, address: "127.0.0.1", port: port, sessionID: "1",
                makeKey: { SRTPKeyMaterial.random(SRTPCryptoSuite(rawValue: $0) ?? .aesCM128HMACSHA1_80).bytes })
            else {
                await bob.reject(handle, status: 488)
                return
            }
            answers.withLockedValue { $0[handle] = (offer, answer, negotiated) }
            await bob.answer(handle, body: SIPMessageBody(contentType: "application/sdp", text: answer.serialized))
        }
        let status = try await bob.register(at: coreDestination, expires: 600)
        guard status == 200 else { throw PeerError("bob's REGISTER got \(status)") }
    }

    var coreDestination: SIPDestination { SIPDestination(transport: .tls, host: "127.0.0.1", port: corePort) }

    func stop() async {
        await lan?.hangUpAll()
        await bob?.hangUpAll()
        gateway?.stop()
        core.stop()
        door.stop()
        door2.stop()
        _ = try? await runCommand("ip", ["netns", "del", lanNamespace])
        _ = try? await runCommand("ip", ["link", "del", meshInterface])
    }

    // MARK: Calls

    enum Outcome: Equatable, Sendable {
        case answered(SIPCallHandle)
        case failed(Int)
        case ended
        case nothing
    }

    /// A LAN caller dials `number` at the gateway with `sdp`; what became of it within `timeout`.
    func lanCall(_ sdp: String, number: String = "101", timeout: Duration = .seconds(8)) async throws -> Outcome {
        let handle = try await lan.call(
            SIPURI(user: number, host: "127.0.0.1", port: legacyPort), via: SIPDestination(transport: .udp, host: "127.0.0.1", port: legacyPort),
            body: SIPMessageBody(contentType: "application/sdp", text: sdp))
        return await outcome(of: handle, in: lanEvents, timeout: timeout)
    }

    /// bob calls gw1-ch1 through the core with `sdp` (the door station answers if the gateway rings it).
    func cloudCall(_ sdp: String, timeout: Duration = .seconds(8)) async throws -> Outcome {
        let handle = try await bob.call(
            SIPURI(secure: true, user: "gw1-ch1", host: "symphony.local"), via: coreDestination,
            body: SIPMessageBody(contentType: "application/sdp", text: sdp))
        let result = await outcome(of: handle, in: bobEvents, timeout: timeout)
        if case .answered = result { try await Task.sleep(for: .milliseconds(600)) }
        return result
    }

    private func outcome(of handle: SIPCallHandle, in log: EventLog, timeout: Duration) async -> Outcome {
        let event = await log.wait(for: handle, timeout: timeout) { event in
            switch event {
            case .answered, .failed, .ended: true
            default: false
            }
        }
        // A refused call is reported ended, then failed with the status (the agent's order).
        if case .ended = event, let failed = await log.wait(for: handle, timeout: .milliseconds(300), { if case .failed = $0 { true } else { false } }) {
            if case .failed(_, let status) = failed { return .failed(status) }
        }
        switch event {
        case .answered: return .answered(handle)
        case .failed(_, let status): return .failed(status)
        case .ended: return .ended
        default: return .nothing
        }
    }

    /// An answered LAN → bob call: where the gateway takes each leg's media, and bob's SRTP side.
    final class MediaCall: @unchecked Sendable {
        let lanHandle: SIPCallHandle
        let gatewayLegacyPort: Int
        let gatewayCloudPort: Int
        let bobSession: SRTPSession
        let socket: UDPSocket
        var sequence: UInt16 = 7000
        var timestamp: UInt32 = 48000

        init(lanHandle: SIPCallHandle, gatewayLegacyPort: Int, gatewayCloudPort: Int, bobSession: SRTPSession) throws {
            self.lanHandle = lanHandle
            self.gatewayLegacyPort = gatewayLegacyPort
            self.gatewayCloudPort = gatewayCloudPort
            self.bobSession = bobSession
            socket = try UDPSocket()
        }
    }

    func mediaCall(formats: String) async throws -> MediaCall {
        let before = Set(bobAnswers.withLockedValue { Array($0.keys) })
        guard case .answered(let handle) = try await lanCall(HostileInputTests.legacyOffer(formats: formats)) else {
            throw PeerError("a call with formats \(formats) was not answered:\n\(gateway.text.suffix(3000))")
        }
        guard let body = await lan.remoteBody(of: handle), let answer = try? SDPParser.parse(body.text), let legacyPort = answer.media.first?.port else {
            throw PeerError("the gateway answered without usable SDP")
        }
        guard let entry = bobAnswers.withLockedValue({ $0.first { !before.contains($0.key) }?.value }), let srtp = entry.negotiated.srtp,
            let cloudPort = entry.offer.media.first?.port, let suite = SRTPCryptoSuite(rawValue: srtp.suite)
        else {
            throw PeerError("bob answered no call with SRTP")
        }
        let key = try SRTPKeyMaterial(suite: suite, bytes: srtp.localKey)
        return try MediaCall(lanHandle: handle, gatewayLegacyPort: legacyPort, gatewayCloudPort: cloudPort, bobSession: try SRTPSession(key: key, direction: .outbound))
    }

    /// Packets on the cloud leg as bob sends them: protected with his key unless told not to.
    func sendCloud(_ call: MediaCall, _ packets: [(payloadType: UInt8, payload: [UInt8], protect: Bool)]) throws {
        for (payloadType, payload, protect) in packets {
            call.sequence &+= 1
            call.timestamp &+= 960
            var bytes = HostileInputTests.rtp(pt: payloadType, sequence: call.sequence, timestamp: call.timestamp, ssrc: 0xB0B, payload: payload)
            let length = bytes.count
            bytes += [UInt8](repeating: 0, count: SRTPSession.maxTrailer + 16)
            var sendLength = length
            if protect { sendLength = try bytes.withUnsafeMutableBytes { try call.bobSession.protect($0, length: length) } }
            call.socket.send(Array(bytes[..<sendLength]), to: call.gatewayCloudPort)
        }
    }

    /// A legacy station calls alice (a baresip cloud client: TLS, Opus, SRTP) and alice calls the
    /// door station: each end hears the other's tone.
    func normalCallsEachWay() async throws {
        let aliceTone = scratch.path("alice.wav")
        try await Baresip.tone(aliceTone, frequency: 1200, seconds: 60, rate: 48000, channels: 2)
        let alice = try Baresip(
            "alice", in: scratch, modules: ["opus.so", "g722.so", "srtp.so"],
            account: "<sip:alice@symphony.local;transport=tls>;auth_pass=alice-pw;outbound=\"sip:127.0.0.1:\(corePort);transport=tls\";regint=300;mediaenc=srtp-mand;audio_codecs=opus/48000/2;answermode=auto",
            tone: aliceTone, caFile: caFile, rtpPorts: 32000...32499)
        try alice.start(seconds: 60)
        defer { alice.stop() }
        try await Task.sleep(for: .seconds(3))  // registered (her REGISTER is the first thing she does)

        // Legacy → cloud: a station dials channel 2's number.
        let callerTone = scratch.path("caller.wav")
        try await Baresip.tone(callerTone, frequency: 700, seconds: 20, rate: 16000, channels: 1)
        let caller = try Baresip(
            "caller", in: scratch, modules: ["g722.so"], account: "<sip:caller@127.0.0.1>;regint=0;audio_codecs=G722/16000/1;answermode=auto",
            tone: callerTone, rtpPorts: 33500...33999)
        try caller.start(seconds: 9, command: "/dial sip:102@127.0.0.1:\(legacyPort)")
        _ = try await caller.process?.wait(timeout: .seconds(30))
        try await Self.expectTone(caller, 1200, from: "alice (cloud, through the gateway)")

        // Cloud → legacy: alice dials gw1-ch2, door2 answers.
        try await alice.command("dial", "sip:gw1-ch2@symphony.local")
        try await Task.sleep(for: .seconds(8))
        try await alice.command("hangup")
        try await Task.sleep(for: .seconds(1))
        try await Self.expectTone(door2, 1200, from: "alice (cloud → legacy)")
        // alice heard the caller in one call and door2 in the other (whichever dump is which).
        let heard = try await [alice.decodedAudio(latest: false), alice.decodedAudio(latest: true)].map { pcm in
            ToneMeasurement.frequency(pcm.dropFirst(16000).prefix(16000 * 2), sampleRate: 16000)
        }
        #expect(heard.contains { abs($0 - 700) < 15 } && heard.contains { abs($0 - 800) < 15 }, "alice heard the caller (700 Hz) and door2 (800 Hz): \(heard)")
    }

    static func expectTone(_ phone: Baresip, _ frequency: Double, from peer: String, latest: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let pcm = try await phone.decodedAudio(latest: latest)
        #expect(pcm.count >= 16000 * 3, "\(phone.name) decoded at least 3 s from \(peer): \(pcm.count) samples", sourceLocation: sourceLocation)
        let middle = pcm.dropFirst(16000).prefix(16000 * 2)
        let measured = ToneMeasurement.frequency(middle, sampleRate: 16000)
        #expect(abs(measured - frequency) < 15, "\(phone.name) hears \(peer)'s \(Int(frequency)) Hz tone: \(measured) Hz", sourceLocation: sourceLocation)
        #expect(ToneMeasurement.level(middle) > -20, "\(phone.name) hears it loud enough: \(ToneMeasurement.level(middle)) dBFS", sourceLocation: sourceLocation)
    }

    /// The gateway's call records (its SQLite file, read-only while it runs); ended calls only
    /// unless `open` (a call's record is written at its start too).
    func gatewayRecords(open: Bool = false) throws -> [GatewayCallRecord] {
        try GatewayCallRecordFile.read(scratch.path("gateway") + "/calls.sqlite", since: nil).records.filter { open || $0.endedAt != nil }
    }

    /// kill -9 of the gateway (a crash, a power cut), then a start on the same config and state.
    func killAndRestartGateway() async throws {
        gateway.stop()  // SIGKILL
        _ = try? await gateway.wait(timeout: .seconds(5))
        gateway = try PeerProcess(try builtExecutable("symphony-bridge"), ["run", "--config", scratch.path("bridge.toml")])
        try await eventually("the gateway registered again", timeout: .seconds(30)) { self.gateway.text.contains("cloud uplink registered") }
    }

    // MARK: Health

    /// Both daemons run, neither printed a crash report, and each still answers: the gateway an
    /// OPTIONS on its legacy port, the core a TLS handshake. Nil when healthy, else why not.
    func unhealthy() async -> String? {
        for (name, process) in [("core", core), ("gateway", gateway!)] {
            guard process.process.isRunning else { return "\(name) is not running:\n\(process.text.suffix(3000))" }
            let text = process.text
            if let marker = Self.crashMarkers.first(where: { text.contains($0) }) {
                return "\(name) printed '\(marker)':\n\(text.suffix(3000))"
            }
        }
        guard let reply = try? await udpExchange(options(), to: legacyPort, wait: .seconds(3)), reply.hasPrefix("SIP/2.0 200") else {
            return "the gateway does not answer OPTIONS on its legacy port:\n\(gateway.text.suffix(3000))"
        }
        guard (try? await tlsExchange(port: corePort, bytes: Array(options(transport: "TLS").utf8), wait: .milliseconds(1500)))?.hasPrefix("SIP/2.0") == true else {
            return "the core does not answer over TLS:\n\(core.text.suffix(3000))"
        }
        return nil
    }

    func options(transport: String = "UDP") -> String {
        let branch = "z9hG4bK\(UInt32.random(in: 0...UInt32.max))"
        return "OPTIONS sip:101@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/\(transport) 127.0.0.1:9;branch=\(branch);rport\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\n"
            + "To: <sip:101@127.0.0.1>\r\nCall-ID: \(branch)\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    }

    // MARK: Raw sockets

    /// One datagram to 127.0.0.1:`port` from a fresh socket; the first answer within `wait` as text.
    func udpExchange(_ text: String, to port: Int, wait: Duration) async throws -> String? {
        let answer = try await udpExchange(Array(text.utf8), to: port, wait: wait)
        return answer.map { String(decoding: $0, as: UTF8.self) }
    }

    func udpExchange(_ bytes: [UInt8], to port: Int, wait: Duration?) async throws -> [UInt8]? {
        let socket = try UDPSocket()
        socket.send(bytes, to: port)
        guard let wait else { return nil }
        return try await socket.receive(timeout: wait)
    }

    /// TLS to 127.0.0.1:`port` trusting the core's CA, no client certificate: `bytes` sent in
    /// `chunks` (each its own write), then what arrives within `wait`.
    func tlsExchange(port: Int, bytes: [UInt8], chunks: Int = 1, wait: Duration) async throws -> String {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(caFile)
        configuration.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: configuration)
        let collected = NIOLockedValueBox<[UInt8]>([])
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHandler(Collector(collected))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        let size = max(1, bytes.count / max(1, chunks))
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + size)
            try? await channel.writeAndFlush(ByteBuffer(bytes: bytes[offset..<end])).get()
            offset = end
        }
        try await Task.sleep(for: wait)
        try? await channel.close()
        return String(decoding: collected.withLockedValue { $0 }, as: UTF8.self)
    }

    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let box: NIOLockedValueBox<[UInt8]>
        init(_ box: NIOLockedValueBox<[UInt8]>) { self.box = box }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            box.withLockedValue { $0 += Array(buffer.readableBytesView) }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// An mDNS datagram multicast from the LAN host onto the gateway's mesh link (python3 in the
    /// namespace: the test process has no socket there).
    func multicastFromLAN(_ packets: [[UInt8]]) async throws {
        let script = """
            import socket, sys
            index = socket.if_nametoindex('eth0')
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            for hexed in sys.argv[1:]:
                s.sendto(bytes.fromhex(hexed), ('ff02::fb', 5353, 0, index))
            """
        let hexed = packets.map { $0.map { String(format: "%02x", $0) }.joined() }
        for batch in stride(from: 0, to: hexed.count, by: 40) {
            _ = try await runCommand("ip", ["netns", "exec", lanNamespace, "python3", "-c", script] + Array(hexed[batch..<min(hexed.count, batch + 40)]))
        }
    }

    func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: @escaping @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw PeerError("timed out waiting for \(what)\n---- gateway:\n\(gateway?.text.suffix(4000) ?? "")\n---- core:\n\(core.text.suffix(2000))")
    }
}

/// The events an agent reported, kept for waiting on.
final class EventLog: @unchecked Sendable {
    private let events = NIOLockedValueBox<[SIPUserAgentEvent]>([])

    /// Reads `stream` (an agent's only reader) and keeps every event; `then` sees each after.
    func follow(_ stream: AsyncStream<SIPUserAgentEvent>, then: (@Sendable (SIPUserAgentEvent) async -> Void)? = nil) {
        Task {
            for await event in stream {
                self.events.withLockedValue { $0.append(event) }
                await then?(event)
            }
        }
    }

    var all: [SIPUserAgentEvent] { events.withLockedValue { $0 } }

    /// Waits up to `timeout` for an event about `handle` that `matches`; returns it.
    func wait(for handle: SIPCallHandle, timeout: Duration, _ matches: @escaping (SIPUserAgentEvent) -> Bool) async -> SIPUserAgentEvent? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let event = all.first(where: { $0.callHandle == handle && matches($0) }) { return event }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }
}
