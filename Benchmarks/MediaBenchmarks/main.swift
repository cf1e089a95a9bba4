import Foundation
import Media

// `make bench`: media figures for docs/PERFORMANCE.md. Each figure has its baseline measured in
// the same run (the machines are noisy):
//  1. codec floor vs the bridge, in-process: µs per channel-second (a channel is one call, both
//     directions, 50 packets a second each way) and their ratio;
//  2. CPU per packet over real sockets, ours vs rtpengine (userspace, same traffic, same Opus
//     complexity);
//  3. one-way latency added by the bridge, p50/p99;
//  4. capacity: the most channels with under 0.1 % lost or late (> 20 ms) packets;
//  5. the core's embedded anchor (SRTP re-keyed per leg): its cost against libsrtp's alone, in
//     process, and its capacity over sockets on one thread.
// Our relay runs on one event-loop thread; the load generator takes the other core.
// BENCH_SECONDS (default 10) sets the length of the socket runs; BENCH_SECTIONS (default
// "1234") picks sections ("S" adds libsrtp's own cost per protect/unprotect, by session count
// and thread); BENCH_RTPENGINE=0 leaves rtpengine out (for profiling our side).

raiseFileLimit()
let seconds = Int(ProcessInfo.processInfo.environment["BENCH_SECONDS"] ?? "") ?? 10
let rtpengineComplexity = 10  // rtpengine encodes Opus through ffmpeg's libopus wrapper, whose default is 10
let productComplexity = AudioCodecOptions().opusComplexity
let sections = ProcessInfo.processInfo.environment["BENCH_SECTIONS"] ?? "12345"

say("# Media benchmarks — \(ProcessInfo.processInfo.processorCount) CPUs, \(seconds) s socket runs")

if sections.contains("1") {
say("\n## 1. Codec floor vs bridge (in-process, no sockets; median of 7 runs each, floor and bridge in turn, of \(CPUBenchmarks.seconds) s of audio)")
say("| path | floor µs/channel-s | bridge µs/channel-s | ratio | our work µs/packet |")
say("|---|---|---|---|---|")
for (name, figures) in [
    ("passthrough G.722 RTP ↔ G.722 SRTP", try CPUBenchmarks.passthrough()),
] + (try [1, 3, productComplexity, rtpengineComplexity].map { complexity in
    ("transcoding G.722 RTP ↔ Opus SRTP (complexity \(complexity))", try CPUBenchmarks.transcoding(opusComplexity: complexity))
}) {
    say("| \(name) | \(format(figures.floorMicrosecondsPerChannelSecond)) | \(format(figures.bridgeMicrosecondsPerChannelSecond)) | \(format(figures.ratio, 2)) | \(format(figures.overheadMicrosecondsPerPacket, 2)) |")
}

}

if sections.contains("2") {
say("\n## 2. CPU per packet over UDP sockets, ours vs rtpengine (20 calls, \(seconds) s, Opus complexity \(rtpengineComplexity))")
say("| traffic | ours µs/packet | rtpengine µs/packet | ratio | ours lost % | rtpengine returned % |")
say("|---|---|---|---|---|---|")
for scenario in RelayScenario.allCases {
    let ours = try await OurRelay.run(scenario, channels: 20, seconds: seconds, opusComplexity: rtpengineComplexity)
    let theirs: RelayRun
    guard ProcessInfo.processInfo.environment["BENCH_RTPENGINE"] != "0" else {
        say("| \(scenario.rawValue) | \(format(ours.cpuMicrosecondsPerPacket, 2)) | (skipped) | | \(format(ours.result.lostOrLatePercent, 3)) | |")
        continue
    }
    do {
        theirs = try RTPEngine.run(scenario, channels: 20, seconds: seconds, opusComplexity: rtpengineComplexity)
    } catch {
        say("| \(scenario.rawValue) | \(format(ours.cpuMicrosecondsPerPacket, 2)) | rtpengine failed: \(error) | | | |")
        continue
    }
    let returned = Double(theirs.result.received) * 100 / Double(max(1, theirs.result.expected))
    say("| \(scenario.rawValue) | \(format(ours.cpuMicrosecondsPerPacket, 2)) | \(format(theirs.cpuMicrosecondsPerPacket, 2)) | \(format(ours.cpuMicrosecondsPerPacket / theirs.cpuMicrosecondsPerPacket, 2)) | \(format(ours.result.lostOrLatePercent, 3)) | \(format(returned, 1)) |")
}

}

if sections.contains("3") {
say("\n## 3. One-way latency through the bridge (10 calls, \(seconds) s; includes the generator's own send/receive)")
say("| path | p50 µs | p99 µs | max µs |")
say("|---|---|---|---|")
for scenario in [RelayScenario.rtpToSRTP, .transcoding] {
    let run = try await OurRelay.run(scenario, channels: 10, seconds: seconds, opusComplexity: productComplexity)
    let l = run.result.latenciesMicroseconds
    say("| \(scenario.rawValue) | \(format(percentile(l, 0.5))) | \(format(percentile(l, 0.99))) | \(format(l.last ?? .nan)) |")
}

}

if sections.contains("4") {
say("\n## 4. Capacity on one relay thread (under 0.1 % lost or late > 20 ms counts as carried)")
say("| path | calls | lost+late % | p99 latency µs | relay CPU µs/packet |")
say("|---|---|---|---|---|")
for (scenario, complexity, counts) in [
    (RelayScenario.rtpToSRTP, productComplexity, [100, 200, 300, 400, 500, 750, 1000]),
    (.transcoding, productComplexity, [20, 30, 40, 50, 75, 100, 150]),
    (.transcoding, 1, [40, 60, 80, 100, 150]),
] {
    var carried = 0
    let name = scenario == .transcoding ? "\(scenario.rawValue) (complexity \(complexity))" : scenario.rawValue
    for channels in counts {
        let run = try await OurRelay.run(scenario, channels: channels, seconds: seconds, opusComplexity: complexity)
        let ok = run.result.lostOrLatePercent < 0.1
        if ok { carried = channels }
        say("| \(name) | \(channels) | \(format(run.result.lostOrLatePercent, 3)) | \(format(percentile(run.result.latenciesMicroseconds, 0.99))) | \(format(run.cpuMicrosecondsPerPacket, 2)) |")
        if !ok { break }
    }
    say("| \(name) | **carried: \(carried)** | | | |")
}
}

if sections.contains("5") {
say("\n## 5. The core's embedded anchor: SRTP ↔ SRTP re-keyed per leg (G.722 payload, no codec work)")
let figures = try AnchorBenchmarks.inProcess()
say("| in process | libsrtp floor µs/channel-s | anchor µs/channel-s | ratio | our work µs/packet |")
say("|---|---|---|---|---|")
say("| unprotect + protect, both directions | \(format(figures.floorMicrosecondsPerChannelSecond)) | \(format(figures.bridgeMicrosecondsPerChannelSecond)) | \(format(figures.ratio, 2)) | \(format(figures.overheadMicrosecondsPerPacket, 2)) |")
say("\n| over sockets, one thread | calls | lost+late % | p99 latency µs | anchor CPU µs/packet |")
say("|---|---|---|---|---|")
var carried = 0
for channels in [100, 200, 300, 400, 600, 800, 1000] {
    let run = try await AnchorBenchmarks.overSockets(channels: channels, seconds: seconds)
    let ok = run.result.lostOrLatePercent < 0.1
    if ok { carried = channels }
    say("| anchored SRTP ↔ SRTP | \(channels) | \(format(run.result.lostOrLatePercent, 3)) | \(format(percentile(run.result.latenciesMicroseconds, 0.99))) | \(format(run.cpuMicrosecondsPerPacket, 2)) |")
    if !ok { break }
}
say("| anchored SRTP ↔ SRTP | **carried: \(carried)** | | | |")
}

func srtpProbe() throws {
    for sessionsCount in [1, 40, 400] {
        let key = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
        let sessions = try (0..<sessionsCount).map { _ in try SRTPSession(key: key, direction: .outbound) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = 200_000
        let start = nowNanoseconds()
        for i in 0..<n {
            try buffer.withUnsafeMutableBytes { raw in
                RTPHeader(payloadType: 9, sequenceNumber: UInt16(truncatingIfNeeded: i / sessionsCount), timestamp: 0, ssrc: UInt32(i % sessionsCount)).writeFixed(into: raw)
                _ = try sessions[i % sessionsCount].protect(raw, length: 172)
            }
        }
        say("SRTP protect, \(sessionsCount) sessions: \(format(Double(nowNanoseconds() - start) / Double(n) / 1000, 2)) µs")
    }
}
if sections.contains("S") {
    // SRTP protect cost with one session and with many sessions in turn (cache effects), on the
    // main thread and on a plain pthread (as the media threads are).
    try srtpProbe()
    let t = spawnThread { try? srtpProbe() }
    pthread_join(t, nil)
    // Unprotect too.
    let key = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
    let tx = try SRTPSession(key: key, direction: .outbound)
    var packets: [[UInt8]] = []
    for i in 0..<50_000 {
        var b = [UInt8](repeating: 0, count: 512)
        let n = try b.withUnsafeMutableBytes { raw in
            RTPHeader(payloadType: 9, sequenceNumber: UInt16(truncatingIfNeeded: i), timestamp: 0, ssrc: 5).writeFixed(into: raw)
            return try tx.protect(raw, length: 172)
        }
        packets.append(Array(b[..<n]))
    }
    let rx = try SRTPSession(key: key, direction: .inbound)
    var buffer = [UInt8](repeating: 0, count: 512)
    let start = nowNanoseconds()
    for p in packets {
        _ = try buffer.withUnsafeMutableBytes { raw in
            p.withUnsafeBytes { raw.copyMemory(from: $0) }
            return try rx.unprotect(raw, length: p.count)
        }
    }
    say("SRTP unprotect: \(format(Double(nowNanoseconds() - start) / 50_000 / 1000, 2)) µs")
}
