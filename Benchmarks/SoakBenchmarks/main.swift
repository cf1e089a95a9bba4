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
defer {
    let umount = Process()
    umount.executableURL = URL(fileURLWithPath: "/usr/bin/umount")
    umount.arguments = ["-l", scratch + "/gateway"]
    try? umount.run()
    umount.waitUntilExit()
}

func freePort(udp: Bool = false) throws -> Int {
    let channel = try (udp ? DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        : ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait())
    defer { try? channel.close().wait() }
    return channel.localAddress!.port!
}
let (sipsPort, claimPort, legacyPort) = (try freePort(), try freePort(), try freePort(udp: true))
var seed = "[[company]]\nname = \"soak\"\n[[project]]\ncompany = \"soak\"\nname = \"p\"\n[[site]]\ncompany = \"soak\"\nproject = \"p\"\nname = \"s\"\n"
for n in 1...14 { seed += "[[user]]\nname = \"u\(n)\"\nsite = \"s\"\npassword = \"pw-\(n)\"\n" }
seed += "[[device]]\nname = \"gw1\"\nsite = \"s\"\nchannels = 14\n"
try seed.write(toFile: scratch + "/seed.toml", atomically: true, encoding: .utf8)
try """
    [core]
    domain = "soak.local"
    state_dir = "\(scratch)/core"
    log_level = "error"
    seed_file = "\(scratch)/seed.toml"
    [sip]
    tls_listen = ["127.0.0.1:\(sipsPort)"]
    advertise = "127.0.0.1"
    [claiming]
    listen = "127.0.0.1:\(claimPort)"
    [calls]
    ring_s = 20
    """.write(toFile: scratch + "/core.toml", atomically: true, encoding: .utf8)

func spawn(_ tool: String, _ arguments: [String], log: String) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool.hasPrefix("/") ? tool : "\(buildDirectory)/\(tool)")
    process.arguments = arguments
    if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
    let handle = FileHandle(forWritingAtPath: log)
    handle?.seekToEndOfFile()
    process.standardError = handle
    process.standardOutput = handle
    try process.run()
    return process
}
func waitFor(_ what: String, seconds: Double = 30, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return }
        usleep(50_000)
    }
    throw DemoError("soak: timed out waiting for \(what)")
}
func fileContains(_ path: String, _ text: String) -> Bool { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").contains(text) }
func occurrences(_ path: String, _ text: String) -> Int { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").components(separatedBy: text).count - 1 }

var core = try spawn("symphony-cloud-core", ["run", "--config", scratch + "/core.toml"], log: scratch + "/core.log")
try waitFor("the core's CA") { FileManager.default.fileExists(atPath: scratch + "/core/ca.pem") }
usleep(500_000)
let codeTool = Process()
codeTool.executableURL = URL(fileURLWithPath: "\(buildDirectory)/symphony-cloud-core")
codeTool.arguments = ["admin", "claim-code", "--config", scratch + "/core.toml", "gw1"]
let codePipe = Pipe()
codeTool.standardOutput = codePipe
try codeTool.run()
codeTool.waitUntilExit()
let code = String(decoding: codePipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""

let brokerScratch = try ScratchDirectory()
let broker = try Mosquitto(in: brokerScratch)
try await broker.start()
let doorPort = try freePort(udp: true)
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
try waitFor("the gateway's registration") { fileContains(scratch + "/gateway.log", "cloud uplink registered") }

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
func residentMB(_ pid: Int32) -> Double {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return 0 }
    return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
}
func threads(_ pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Threads:") })
    else { return 0 }
    return Int(line.split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "") ?? 0
}
func descriptors(_ pid: Int32) -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0 }
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
let stopAt = Date().addingTimeInterval(duration)

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

let load = Task {
    await withTaskGroup(of: Void.self) { workers in
        for n in 1...14 {
            workers.addTask {
                var k = 0
                while Date() < stopAt {
                    // Cloud → legacy on one channel at a time (the one door station answers them all).
                    let fromLegacy = k % 2 == 0 || n % 3 != 0 || (await tally.coreDown)
                    await oneCall(channel: n, fromLegacy: fromLegacy, checkTone: k % 10 == 0)
                    k += 1
                }
            }
        }
    }
}

// MARK: The faults, and the samples

// A warm baseline as well: every channel has carried calls (codec state, SQLite's page caches).
try await Task.sleep(for: .seconds(min(60, duration / 8)))
samples.append(sample(core: core))

var faults: [String] = []
var nextSample = Date().addingTimeInterval(sampleEvery)
var fault = 0
while Date() < stopAt {
    try await Task.sleep(for: .seconds(1))
    let elapsed = Date().timeIntervalSince(started)
    if fault == 0, elapsed > duration / 4 {
        fault = 1
        await tally.setCoreDown(true)
        try await Task.sleep(for: .seconds(callSeconds + 6))  // the clients' calls placed before have ended
        core.terminate()
        core.waitUntilExit()
        core = try spawn("symphony-cloud-core", ["run", "--config", scratch + "/core.toml"], log: scratch + "/core.log")
        let registeredBefore = occurrences(scratch + "/gateway.log", "cloud uplink registered")
        try waitFor("the gateway registered again", seconds: 60) { occurrences(scratch + "/gateway.log", "cloud uplink registered") > registeredBefore }
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

let contents = try GatewayCallRecordFile.read(scratch + "/gateway/calls.sqlite", since: nil)
let summarised = contents.summaries.reduce(0) { $0 + $1.calls }
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
say("| summarised (disk full past the queue) | \(summarised) |")
say("| records + summarised − placed | \(contents.records.count + summarised - placed) |")
say("| tone checks heard | \(toneHeard) / \(toneChecked) |")
let (first, warm, last) = (samples[0], samples[1], samples[samples.count - 1])
let rssGrowth = last.gatewayRSS - first.gatewayRSS, fdGrowth = last.gatewayFDs - first.gatewayFDs
say(String(format: "| gateway RSS end − start (idle, before any call) | %+.1f MB (aim ≤ 2) |", rssGrowth))
say(String(format: "| gateway RSS end − warm baseline (at %.0f s, under load) | %+.1f MB |", warm.at, last.gatewayRSS - warm.gatewayRSS))
say("| gateway descriptors end − start | \(fdGrowth >= 0 ? "+" : "")\(fdGrowth) (aim ≤ 5) |")
say(String(format: "| core RSS end − start (restarted at 1/4) | %+.1f MB |", last.coreRSS - first.coreRSS))
let accounted = contents.records.count + summarised == placed && byStatus["in-progress", default: 0] == 0
say(accounted ? "result: every call accounted for" : "result: MISMATCH between calls placed and records")
gateway.terminate()
core.terminate()
gateway.waitUntilExit()
core.waitUntilExit()
broker.stop()
if environment["BENCH_KEEP"] == nil { try? FileManager.default.removeItem(atPath: scratch + "/core") } else { say("kept: \(scratch)") }
exit(accounted ? 0 : 1)
