import BenchDaemons
import Foundation
import Gateway
import Logging
import Media
import NIOCore
import NIOPosix
import SIP
import SIPTransport
import SIPUserAgent

// `make bench`: the gateway's figures for docs/PERFORMANCE.md, with the release daemons as
// separate processes (symphony-cloud-core and symphony-bridge from .build/release):
//  1. call setup: legacy INVITE sent → the cloud client's 180 (it rings the moment the INVITE
//     arrives), through gateway and core; baseline in the same run: the same client called by
//     another client through the core alone;
//  2. the gateway process with 14 transcoded calls (G.722 RTP ↔ Opus SRTP, complexity 5): CPU
//     share of one core and resident memory, against the codec work alone (14 calls' encode and
//     decode both ways, in-process, same complexity).
// BENCH_CALLS (default 500) setup samples; BENCH_SECONDS (default 20) CPU window.

let calls = Int(ProcessInfo.processInfo.environment["BENCH_CALLS"] ?? "") ?? 500
let window = Int(ProcessInfo.processInfo.environment["BENCH_SECONDS"] ?? "") ?? 20
let quiet: Logger = {
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    return logger
}()
let group = MultiThreadedEventLoopGroup.singleton
/// Where the daemons are built (`release` for the figures; `debug` to try the bench itself).
let buildDirectory = ".build/" + (ProcessInfo.processInfo.environment["BENCH_BUILD"] ?? "release")

func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

// MARK: The daemons

let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-bench-\(getpid())").path
try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
let (sipsPort, claimPort, legacyPort) = (try BenchDaemons.freePort(), try BenchDaemons.freePort(), try BenchDaemons.freePort(udp: true))
try BenchDaemons.seed(company: "bench", users: 0...14).write(toFile: scratch + "/seed.toml", atomically: true, encoding: .utf8)
try BenchDaemons.coreConfig(domain: "bench.local", scratch: scratch, sipsPort: sipsPort, claimPort: claimPort, ringSeconds: 60)
    .write(toFile: scratch + "/core.toml", atomically: true, encoding: .utf8)

func spawn(_ tool: String, _ arguments: [String], log: String) throws -> Process {
    try BenchDaemons.spawn(tool, arguments, log: log, buildDirectory: buildDirectory)
}

let core = try spawn("symphony-cloud-core", ["run", "--config", scratch + "/core.toml"], log: scratch + "/core.log")
defer { core.terminate() }
try BenchDaemons.waitFor("the core's CA") { FileManager.default.fileExists(atPath: scratch + "/core/ca.pem") }
usleep(300_000)
let code = try BenchDaemons.claimCode(config: scratch + "/core.toml", buildDirectory: buildDirectory)

var bridge = """
    [gateway]
    id = "gw1"
    state_dir = "\(scratch)/gateway"
    log_level = "info"
    [legacy]
    listen = "127.0.0.1:\(legacyPort)"
    [cloud]
    server = "127.0.0.1:\(sipsPort)"
    ca_file = "\(scratch)/core/ca.pem"
    claim_url = "https://127.0.0.1:\(claimPort)/v1/claim"
    claim_code = "\(code)"
    [media]
    opus_complexity = 5

    """
for n in 1...14 { bridge += "[[channel]]\nindex = \(n)\nnumber = \"\(100 + n)\"\ncloud_target = \"u\(n)\"\nlegacy_targets = [\"sip:nobody@127.0.0.1:9\"]\n" }
try bridge.write(toFile: scratch + "/bridge.toml", atomically: true, encoding: .utf8)
let gateway = try spawn("symphony-bridge", ["run", "--config", scratch + "/bridge.toml"], log: scratch + "/gateway.log")
defer { gateway.terminate() }
try BenchDaemons.waitFor("the gateway's registration") { BenchDaemons.fileContains(scratch + "/gateway.log", "cloud uplink registered") }

say("# Gateway benchmarks — \(ProcessInfo.processInfo.processorCount) CPUs; release daemons; gateway pid \(gateway.processIdentifier)")

// MARK: 1. Call setup

/// A cloud client that rings (180 at once) and then declines, noting when each INVITE arrived.
actor RingingClient {
    let agent: SIPUserAgent
    nonisolated var unownedExecutor: UnownedSerialExecutor { agent.endpoint.unownedExecutor }
    var arrivals: [ContinuousClock.Instant] = []

    init(_ agent: SIPUserAgent) { self.agent = agent }

    func listen() {
        Task {
            for await event in agent.events {
                if case .incomingCall(let handle, _) = event { self.rang(handle) }
            }
        }
    }

    private func rang(_ handle: SIPCallHandle) {
        arrivals.append(.now)
        agent.assumeIsolated { $0.reject(handle, status: 486) }
    }

    var count: Int { arrivals.count }
    func arrival(_ index: Int) -> ContinuousClock.Instant { arrivals[index] }
}

func cloudAgent(_ user: String) async throws -> SIPUserAgent {
    var endpointConfiguration = SIPEndpoint.Configuration()
    endpointConfiguration.tls = SIPTLSSettings(trustingCAFile: scratch + "/core/ca.pem")
    let endpoint = try SIPEndpoint(eventLoop: group.next(), configuration: endpointConfiguration, logger: quiet)
    var configuration = SIPUserAgent.Configuration()
    configuration.user = user
    configuration.domain = "bench.local"
    configuration.credentials = (user, "pw-\(user.dropFirst())")
    configuration.role = .softphone(answerAfter: nil)
    let agent = SIPUserAgent(endpoint: endpoint, configuration: configuration, logger: quiet)
    await agent.attach()
    let status = try await agent.register(at: SIPDestination(transport: .tls, host: "127.0.0.1", port: sipsPort))
    guard status == 200 else { throw DemoError("\(user) registration: \(status)") }
    return agent
}

/// Places `count` calls one after another and returns the setup times (ms): send → 180 at the callee.
func setupTimes(count: Int, callee: RingingClient, place: (Int) async throws -> Void, ended: () async -> Int) async throws -> [Double] {
    var samples: [Double] = []
    for i in 0..<count {
        let before = await callee.count
        let sent = ContinuousClock.now
        try await place(i)
        let deadline = ContinuousClock.now + .seconds(5)
        while await callee.count == before, ContinuousClock.now < deadline { await Task.yield() }
        guard await callee.count > before else { throw DemoError("call \(i) never rang") }
        let arrived = await callee.arrival(before)
        let elapsed = arrived - sent
        samples.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
        while await ended() <= i, ContinuousClock.now < deadline { try await Task.sleep(for: .microseconds(200)) }
    }
    return samples.sorted()
}

func percentile(_ sorted: [Double], _ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }

let u1 = RingingClient(try await cloudAgent("u1"))
await u1.listen()
let caller = try await cloudAgent("u0")
let callerEnded = Counter()
Task { for await event in caller.events { if case .ended = event { await callerEnded.increment() } } }

let legacyEndpoint = try SIPEndpoint(eventLoop: group.next(), logger: quiet)
_ = try await legacyEndpoint.listen(.udp, on: try SocketAddress(ipAddress: "127.0.0.1", port: 0))
var legacyConfiguration = SIPUserAgent.Configuration()
legacyConfiguration.user = "door"
legacyConfiguration.domain = "127.0.0.1"
legacyConfiguration.role = .softphone(answerAfter: nil)
let legacy = SIPUserAgent(endpoint: legacyEndpoint, configuration: legacyConfiguration, logger: quiet)
await legacy.attach()
let legacyEnded = Counter()
Task { for await event in legacy.events { if case .ended = event { await legacyEnded.increment() } } }

actor Counter {
    var value = 0
    func increment() { value += 1 }
}

let offer = SIPMessageBody(contentType: "application/sdp", text: "v=0\r\no=door 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n")
let srtpOffer = SDPOfferAnswer.makeOffer(
    policy: SDPAudioPolicy(codecs: [.opus, .g722], srtp: .required, cryptoSuites: [("AES_CM_128_HMAC_SHA1_80", 30)]),
    address: "127.0.0.1", port: 40002, sessionID: "1", makeKey: { _ in [UInt8](repeating: 7, count: 30) })
let srtpBody = SIPMessageBody(contentType: "application/sdp", text: srtpOffer.serialized)
let gatewayTarget = SIPURI(user: "101", host: "127.0.0.1", port: legacyPort)
let gatewayDestination = SIPDestination(transport: .udp, host: "127.0.0.1", port: legacyPort)
let coreDestination = SIPDestination(transport: .tls, host: "127.0.0.1", port: sipsPort)

// Warm-up, then gateway and baseline in turn (the machine's noise hits both alike).
_ = try await setupTimes(count: 20, callee: u1, place: { _ in _ = try await legacy.call(gatewayTarget, via: gatewayDestination, body: offer) }, ended: { await legacyEnded.value })
var viaGateway: [Double] = [], viaCore: [Double] = []
let rounds = 5
for _ in 0..<rounds {
    let ended = await legacyEnded.value
    viaGateway += try await setupTimes(count: calls / rounds, callee: u1, place: { _ in
        _ = try await legacy.call(gatewayTarget, via: gatewayDestination, body: offer)
    }, ended: { await legacyEnded.value - ended })
    let coreEnded = await callerEnded.value
    viaCore += try await setupTimes(count: calls / rounds, callee: u1, place: { _ in
        _ = try await caller.call(SIPURI(secure: true, user: "u1", host: "bench.local"), via: coreDestination, body: srtpBody)
    }, ended: { await callerEnded.value - coreEnded })
}
viaGateway.sort()
viaCore.sort()
say("\n## 1. Call setup: INVITE sent → 180 at the cloud client (\(viaGateway.count) calls each, in \(rounds) alternating rounds)")
say("| path | p50 ms | p99 ms | max ms |")
say("|---|---|---|---|")
say(String(format: "| legacy UA → gateway → core → client | %.2f | %.2f | %.2f |", percentile(viaGateway, 0.5), percentile(viaGateway, 0.99), viaGateway.last!))
say(String(format: "| baseline: client → core → client (TLS both legs) | %.2f | %.2f | %.2f |", percentile(viaCore, 0.5), percentile(viaCore, 0.99), viaCore.last!))
say(String(format: "gateway's share at p50: %.2f ms (legacy UDP leg, routing, two media sockets, offer/answer, the TLS leg to the core)", percentile(viaGateway, 0.5) - percentile(viaCore, 0.5)))

// MARK: 2. 14 transcoded calls

let (processCPUSeconds, residentMB) = (BenchDaemons.processCPUSeconds, BenchDaemons.residentMB)

// The ringing client leaves; u1 … u14 answer with a tone from here on.
_ = try await u1.agent.register(at: coreDestination, expires: 0)
var clients: [DemoPhone] = []
for n in 1...14 {
    clients.append(try await DemoPhone.start(
        .cloudClient(server: coreDestination, caFile: scratch + "/core/ca.pem", user: "u\(n)", password: "pw-\(n)", domain: "bench.local"),
        frequency: 1000, group: group, logger: quiet))
}
let doors = try await DemoPhone.start(.legacyStation(listen: try SocketAddress(ipAddress: "127.0.0.1", port: 0)), frequency: 800, group: group, logger: quiet)
let idleRSS = residentMB(gateway.processIdentifier)
var handles: [SIPCallHandle] = []
for n in 1...14 {
    handles.append(try await doors.call(SIPURI(user: "\(100 + n)", host: "127.0.0.1", port: legacyPort), via: gatewayDestination))
}
let answerDeadline = Date().addingTimeInterval(20)
var answeredCount = 0
while Date() < answerDeadline {
    answeredCount = 0
    for handle in handles where await doors.isAnswered(handle) { answeredCount += 1 }
    if answeredCount == 14 { break }
    try await Task.sleep(for: .milliseconds(100))
}
guard answeredCount == 14 else { throw DemoError("only \(answeredCount) of 14 calls were answered") }
try await Task.sleep(for: .seconds(3))
let cpuBefore = processCPUSeconds(gateway.processIdentifier)
let wallBefore = Date()
try await Task.sleep(for: .seconds(window))
let cpuShare = (processCPUSeconds(gateway.processIdentifier) - cpuBefore) / Date().timeIntervalSince(wallBefore) * 100
let busyRSS = residentMB(gateway.processIdentifier)
var heard = 0
for handle in handles { if let m = await doors.measurement(handle), m.heard(1000) { heard += 1 } }
for handle in handles { await doors.hangUp(handle) }

// The codec work alone: 14 calls × (G.722 decode + Opus encode) + (Opus decode + G.722 encode), 20 ms frames.
func codecFloor(seconds: Int) throws -> Double {
    let options = AudioCodecOptions(opusComplexity: 5)
    var pcm = [Int16](repeating: 0, count: 320)
    for i in 0..<320 { pcm[i] = Int16(sin(Double(i) * 2 * .pi * 800 / 16000) * 12000) }
    let chains = try (0..<14).map { _ in
        (try AudioCodecKind.g722.makeEncoder(), try AudioCodecKind.g722.makeDecoder(), try AudioCodecKind.opus.makeEncoder(sampleRate: 16000, options: options),
         try AudioCodecKind.opus.makeDecoder(sampleRate: 16000))
    }
    var payload = [UInt8](repeating: 0, count: 1500)
    var out = [Int16](repeating: 0, count: 960)
    let start = processCPUSeconds(getpid())
    for _ in 0..<(seconds * 50) {
        for (g722e, g722d, opuse, opusd) in chains {
            try pcm.withUnsafeBufferPointer { input in
                try payload.withUnsafeMutableBytes { bytes in
                    try out.withUnsafeMutableBufferPointer { output in
                        let g = try g722e.encode(input, into: bytes)
                        _ = try g722d.decode(UnsafeRawBufferPointer(rebasing: bytes[..<g]), into: output)
                        let o = try opuse.encode(input, into: bytes)
                        _ = try opusd.decode(UnsafeRawBufferPointer(rebasing: bytes[..<o]), into: output)
                    }
                }
            }
        }
    }
    return (processCPUSeconds(getpid()) - start) / Double(seconds) * 100
}
let floor = try codecFloor(seconds: 10)
say("\n## 2. The gateway with 14 transcoded calls (G.722 RTP ↔ Opus SRTP, complexity 5), \(window) s window")
say("| figure | value |")
say("|---|---|")
say(String(format: "| gateway CPU, share of one core | %.1f %% |", cpuShare))
say(String(format: "| codec work alone (in-process, same frames) | %.1f %% |", floor))
say(String(format: "| gateway resident memory, idle → 14 calls | %.1f MB → %.1f MB |", idleRSS, busyRSS))
say("| legacy ends hearing the cloud tone | \(heard) / 14 |")
gateway.terminate()
core.terminate()
gateway.waitUntilExit()
core.waitUntilExit()
if ProcessInfo.processInfo.environment["BENCH_KEEP"] == nil { try? FileManager.default.removeItem(atPath: scratch) } else { say("kept: \(scratch)") }
exit(0)
