import BenchDaemons
import DurableState
import Foundation
import Gateway
import Logging
import NIOCore
import NIOPosix
import PeerTestSupport
import SIP
import SIPTransport
import SIPUserAgent

// `make bench` (docs/RELIABILITY.md "A day in an hour"): a busy site's day of calls through the
// release daemons as separate processes — 14 channel workers, each placing short calls one after
// another, alternating legacy → cloud and cloud → legacy; every 10th call's tone checked. On the
// way: the core restarted (at 1/4), the MQTT broker restarted (at 1/2), the gateway's disk full
// for a minute (at 3/4; a tmpfs, root). RSS, descriptors, threads and database sizes sampled at the
// start, every SOAK_SAMPLE_S and at the end (after 30 s idle). Finally every call placed must be
// in the gateway's records (answered, failed or interrupted; one by one or summarised).
// SOAK_SECONDS (default 3600), SOAK_CALL_S (default 3), SOAK_SAMPLE_S (default 300).

let environment = ProcessInfo.processInfo.environment
let duration = Double(environment["SOAK_SECONDS"] ?? "") ?? 3600
let callSeconds = Double(environment["SOAK_CALL_S"] ?? "") ?? 3
let sampleEvery = Double(environment["SOAK_SAMPLE_S"] ?? "") ?? 300
let buildDirectory = ".build/" + (environment["BENCH_BUILD"] ?? "release")
let quiet: Logger = {
    var logger = Logger(label: "soak")
    logger.logLevel = .critical
    return logger
}()
let group = MultiThreadedEventLoopGroup.singleton
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
guard getuid() == 0 else {
    say("soak: needs root (the full disk is a small tmpfs mounted under the gateway's state)")
    exit(1)
}

let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("soak-\(getpid())").path
try FileManager.default.createDirectory(atPath: scratch + "/gateway", withIntermediateDirectories: true)
let mount = Process()
mount.executableURL = URL(fileURLWithPath: "/usr/bin/mount")
mount.arguments = ["-t", "tmpfs", "-o", "size=256m", "tmpfs", scratch + "/gateway"]
try mount.run()
mount.waitUntilExit()
/// The tmpfs goes before the exit (`exit` skips top-level `defer`s: every run used to leave its
/// 256 MiB mount behind), unless BENCH_KEEP keeps the state for a look.
func unmountGateway() {
    let umount = Process()
    umount.executableURL = URL(fileURLWithPath: "/usr/bin/umount")
    umount.arguments = ["-l", scratch + "/gateway"]
    try? umount.run()
    umount.waitUntilExit()
    try? FileManager.default.removeItem(atPath: scratch)
}

let (sipsPort, claimPort, legacyPort) = (try BenchDaemons.freePort(), try BenchDaemons.freePort(), try BenchDaemons.freePort(udp: true))
try BenchDaemons.seed(company: "soak", users: 1...14).write(toFile: scratch + "/seed.toml", atomically: true, encoding: .utf8)
try BenchDaemons.coreConfig(domain: "soak.local", scratch: scratch, sipsPort: sipsPort, claimPort: claimPort, ringSeconds: 20)
    .write(toFile: scratch + "/core.toml", atomically: true, encoding: .utf8)

func spawn(_ tool: String, _ arguments: [String], log: String) throws -> Process {
    try BenchDaemons.spawn(tool, arguments, log: log, buildDirectory: buildDirectory)
}

var core = try spawn("symphony-cloud-core", ["run", "--config", scratch + "/core.toml"], log: scratch + "/core.log")
try BenchDaemons.waitFor("the core's CA") { FileManager.default.fileExists(atPath: scratch + "/core/ca.pem") }
usleep(500_000)
let code = try BenchDaemons.claimCode(config: scratch + "/core.toml", buildDirectory: buildDirectory)

let brokerScratch = try ScratchDirectory()
let broker = try Mosquitto(in: brokerScratch)
try await broker.start()
let doorPort = try BenchDaemons.freePort(udp: true)
let doors = try await DemoPhone.start(.legacyStation(listen: try SocketAddress(ipAddress: "127.0.0.1", port: doorPort)), frequency: 800, group: group, logger: quiet)
var bridge = """
    [gateway]
    id = "gw1"
    state_dir = "\(scratch)/gateway"
    log_level = "notice"
    [legacy]
    listen = "127.0.0.1:\(legacyPort)"
    [cloud]
    server = "127.0.0.1:\(sipsPort)"
    ca_file = "\(scratch)/core/ca.pem"
    claim_url = "https://127.0.0.1:\(claimPort)/v1/claim"
    claim_code = "\(code)"
    [mqtt]
    host = "127.0.0.1"
    port = \(broker.port)

    """
for n in 1...14 { bridge += "[[channel]]\nindex = \(n)\nnumber = \"\(100 + n)\"\ncloud_target = \"u\(n)\"\nlegacy_targets = [\"sip:door@127.0.0.1:\(doorPort)\"]\nring_s = 10\n" }
try bridge.write(toFile: scratch + "/bridge.toml", atomically: true, encoding: .utf8)
let gateway = try spawn("symphony-bridge", ["run", "--config", scratch + "/bridge.toml"], log: scratch + "/gateway.log")
try BenchDaemons.waitFor("the gateway's registration") { BenchDaemons.fileContains(scratch + "/gateway.log", "cloud uplink registered") }

let coreDestination = SIPDestination(transport: .tls, host: "127.0.0.1", port: sipsPort)
let gatewayDestination = SIPDestination(transport: .udp, host: "127.0.0.1", port: legacyPort)
var clients: [DemoPhone] = []
for n in 1...14 {
    clients.append(try await DemoPhone.start(
        .cloudClient(server: coreDestination, caFile: scratch + "/core/ca.pem", user: "u\(n)", password: "pw-\(n)", domain: "soak.local"),
        frequency: 1000, group: group, logger: quiet))
}

let phones = clients

// MARK: Samples

struct Sample {
    var at: Double
    var gatewayRSS: Double, coreRSS: Double
    var gatewayFDs: Int, coreFDs: Int
    var gatewayThreads: Int, coreThreads: Int
    var callsKB: Int, directoryKB: Int
}
let (residentMB, threads, descriptors) = (BenchDaemons.residentMB, BenchDaemons.threads, BenchDaemons.descriptors)
func kilobytes(_ path: String) -> Int {
    ["", "-wal"].reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: path + $1)[.size] as? Int) ?? 0) } / 1024
}
let started = Date()
func sample(core: Process) -> Sample {
    Sample(
        at: Date().timeIntervalSince(started), gatewayRSS: residentMB(gateway.processIdentifier), coreRSS: residentMB(core.processIdentifier),
        gatewayFDs: descriptors(gateway.processIdentifier), coreFDs: descriptors(core.processIdentifier),
        gatewayThreads: threads(gateway.processIdentifier), coreThreads: threads(core.processIdentifier),
        callsKB: kilobytes(scratch + "/gateway/calls.sqlite"), directoryKB: kilobytes(scratch + "/core/directory.sqlite"))
}
try await Task.sleep(for: .seconds(20))  // settled: registered, status published, first heartbeat
var samples = [sample(core: core)]

// MARK: The load

actor Tally {
    /// While the core restarts, cloud clients place no calls (a call that cannot reach the cloud
    /// is nobody's record); the stations go on (the gateway answers and records those).
    var coreDown = false
    func setCoreDown(_ down: Bool) { coreDown = down }
    var placed = 0, answered = 0, unanswered = 0, toneChecked = 0, toneHeard = 0
    var byDirection: [String: Int] = [:]
    func place(_ direction: String) { placed += 1; byDirection[direction, default: 0] += 1 }
    func outcome(answered a: Bool) { if a { answered += 1 } else { unanswered += 1 } }
    func tone(_ heard: Bool) { toneChecked += 1; if heard { toneHeard += 1 } }
}
let tally = Tally()

func oneCall(channel n: Int, fromLegacy: Bool, checkTone: Bool) async {
    let phone = fromLegacy ? doors : phones[n - 1]
    let target = fromLegacy ? SIPURI(user: "\(100 + n)", host: "127.0.0.1", port: legacyPort) : SIPURI(secure: true, user: "gw1-ch\(n)", host: "soak.local")
    await tally.place(fromLegacy ? "legacy-to-cloud" : "cloud-to-legacy")
    guard let handle = try? await phone.call(target, via: fromLegacy ? gatewayDestination : coreDestination) else {
        await tally.outcome(answered: false)
        return
    }
    let deadline = Date().addingTimeInterval(12)
    while Date() < deadline, await !phone.isAnswered(handle), await !phone.hasEnded(handle) { try? await Task.sleep(for: .milliseconds(50)) }
    let answered = await phone.isAnswered(handle)
    await tally.outcome(answered: answered)
    if answered {
        try? await Task.sleep(for: .seconds(callSeconds))
        if checkTone, let measurement = await phone.measurement(handle) { await tally.tone(measurement.heard(fromLegacy ? 1000 : 800)) }
    }
    if await !phone.hasEnded(handle) { await phone.hangUp(handle) }
    let ending = Date().addingTimeInterval(5)
    while Date() < ending, await !phone.hasEnded(handle) { try? await Task.sleep(for: .milliseconds(50)) }
    try? await Task.sleep(for: .milliseconds(300))
}

// Warm-up: one call each way on every channel, then 30 s idle (the daemons' one-time state —
// codec and SRTP libraries, buffer pools, SQLite pages — is made): the baseline the end is
// compared with, taken in the same idle condition as the end.
await withTaskGroup(of: Void.self) { warmUp in
    for n in 1...14 {
        warmUp.addTask {
            await oneCall(channel: n, fromLegacy: true, checkTone: true)
            await oneCall(channel: n, fromLegacy: false, checkTone: true)
        }
    }
}
try await Task.sleep(for: .seconds(30))
samples.append(sample(core: core))
let stopAt = Date().addingTimeInterval(duration)
let load = Task {
    await withTaskGroup(of: Void.self) { workers in
        for n in 1...14 {
            workers.addTask {
                var k = 0
                while Date() < stopAt {
                    // Cloud → legacy on one channel at a time (the one door station answers them all).
                    let coreDown = await tally.coreDown
                    let fromLegacy = k % 2 == 0 || n % 3 != 0 || coreDown
                    await oneCall(channel: n, fromLegacy: fromLegacy, checkTone: k % 10 == 0)
                    k += 1
                }
            }
        }
    }
}

// MARK: The faults, and the samples


var faults: [String] = []
var nextSample = Date().addingTimeInterval(sampleEvery)
var fault = 0
while Date() < stopAt {
    try await Task.sleep(for: .seconds(1))
    let elapsed = duration - stopAt.timeIntervalSinceNow
    if fault == 0, elapsed > duration / 4 {
        fault = 1
        await tally.setCoreDown(true)
        try await Task.sleep(for: .seconds(callSeconds + 6))  // the clients' calls placed before have ended
        core.terminate()
        core.waitUntilExit()
        core = try spawn("symphony-cloud-core", ["run", "--config", scratch + "/core.toml"], log: scratch + "/core.log")
        let registeredBefore = BenchDaemons.occurrences(scratch + "/gateway.log", "cloud uplink registered")
        try BenchDaemons.waitFor("the gateway registered again", seconds: 60) { BenchDaemons.occurrences(scratch + "/gateway.log", "cloud uplink registered") > registeredBefore }
        for client in clients { _ = try? await client.agent.register(at: coreDestination, expires: 3600) }
        await tally.setCoreDown(false)
        faults.append(String(format: "%.0f s: core restarted (SIGTERM), gateway and clients registered again", elapsed))
    } else if fault == 1, elapsed > duration / 2 {
        fault = 2
        broker.stop()
        try await Task.sleep(for: .seconds(5))
        try await broker.start()
        faults.append(String(format: "%.0f s: MQTT broker stopped for 5 s", elapsed))
    } else if fault == 2, elapsed > duration * 3 / 4 {
        fault = 3
        let filler = scratch + "/gateway/filler"
        _ = FileManager.default.createFile(atPath: filler, contents: nil)
        if let handle = FileHandle(forWritingAtPath: filler) {
            let block = Data(repeating: 0x55, count: 1 << 20)
            while (try? handle.write(contentsOf: block)) != nil {}
            let small = Data(repeating: 0x55, count: 512)
            while (try? handle.write(contentsOf: small)) != nil {}
            try? handle.close()
        }
        try await Task.sleep(for: .seconds(min(60, duration / 10)))
        try? FileManager.default.removeItem(atPath: filler)
        faults.append(String(format: "%.0f s: the gateway's disk full for %.0f s", elapsed, min(60, duration / 10)))
    }
    if Date() >= nextSample {
        samples.append(sample(core: core))
        nextSample = Date().addingTimeInterval(sampleEvery)
    }
}
await load.value
try await Task.sleep(for: .seconds(45))  // idle: the writer's retries, the memory trim (15 s), timers
samples.append(sample(core: core))

// MARK: The account

// Read after the gateway's graceful stop: it closes the open windows of tallied refusals and
// flushes its record writer, so the last minute's calls are on disk too.
gateway.terminate()
gateway.waitUntilExit()
let contents = try GatewayCallRecordFile.read(scratch + "/gateway/calls.sqlite", since: nil)
// Refusals of one kind within a minute are one record with a count (issue 16's RefusalTally:
// "refused with 503 N more times in the last minute"): the N calls it stands for are counted.
let tallied = contents.records.reduce(0) { total, record in
    guard let reason = record.reason, let range = reason.range(of: #"refused with \d+ (\d+) more time"#, options: .regularExpression) else { return total }
    let words = reason[range].split(separator: " ")
    return total + (words.count > 3 ? Int(words[3]) ?? 0 : 0)
}
let summarised = contents.summaries.reduce(0) { $0 + $1.calls } + tallied
var byStatus: [String: Int] = [:]
for record in contents.records { byStatus[record.status.rawValue, default: 0] += 1 }
let placed = await tally.placed, answered = await tally.answered, unanswered = await tally.unanswered
let (toneChecked, toneHeard) = (await tally.toneChecked, await tally.toneHeard)
let machine = "\(ProcessInfo.processInfo.processorCount) CPUs, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB"
say("# A day in an hour — \(machine); release daemons; \(Int(duration)) s, calls of \(callSeconds) s on 14 channels")
say("\n## Samples")
say("| t (s) | gateway RSS MB | core RSS MB | gateway fds | core fds | gateway threads | core threads | calls.sqlite KB | directory.sqlite KB |")
say("|---|---|---|---|---|---|---|---|---|")
for s in samples {
    say(String(format: "| %.0f | %.1f | %.1f | %d | %d | %d | %d | %d | %d |", s.at, s.gatewayRSS, s.coreRSS, s.gatewayFDs, s.coreFDs, s.gatewayThreads, s.coreThreads, s.callsKB, s.directoryKB))
}
say("\n## Faults on the way")
for line in faults { say("- \(line)") }
say("\n## Every call accounted for")
say("| figure | value |")
say("|---|---|")
say("| calls placed (load generator) | \(placed) (\(await tally.byDirection.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))) |")
say("| answered / not answered (load generator) | \(answered) / \(unanswered) |")
say("| gateway records | \(contents.records.count) (\(byStatus.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))) |")
say("| summarised (disk full past the queue; refusals tallied per minute) | \(summarised - tallied); \(tallied) |")
say("| records + summarised − placed | \(contents.records.count + summarised - placed) |")
say("| tone checks heard | \(toneHeard) / \(toneChecked) |")
let (first, warm, last) = (samples[0], samples[1], samples[samples.count - 1])
let rssGrowth = last.gatewayRSS - warm.gatewayRSS, fdGrowth = last.gatewayFDs - warm.gatewayFDs
say(String(format: "| gateway RSS end − start (both idle, the start after the warm-up) | %+.1f MB (aim ≤ 2) |", rssGrowth))
say(String(format: "| gateway RSS warm-up's one-time share (start − before any call) | %+.1f MB |", warm.gatewayRSS - first.gatewayRSS))
say("| gateway descriptors end − start | \(fdGrowth >= 0 ? "+" : "")\(fdGrowth) (aim ≤ 5) |")
say("| gateway threads end − start | \(last.gatewayThreads - warm.gatewayThreads) |")
say(String(format: "| core RSS end − start (restarted at 1/4) | %+.1f MB |", last.coreRSS - warm.coreRSS))
let accounted = contents.records.count + summarised == placed && byStatus["in-progress", default: 0] == 0
let withinAims = rssGrowth <= 2 && fdGrowth <= 5
say(withinAims ? "result: RSS and descriptors back within the aims" : "result: RSS or descriptors past the aims")
say(accounted ? "result: every call accounted for" : "result: MISMATCH between calls placed and records")
core.terminate()
core.waitUntilExit()
broker.stop()
if environment["BENCH_KEEP"] == nil { unmountGateway() } else { say("kept: \(scratch) (the gateway's state on a tmpfs: umount \(scratch)/gateway when done)") }
exit(accounted ? 0 : 1)
