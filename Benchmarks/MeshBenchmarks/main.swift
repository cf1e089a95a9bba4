// The mesh fallback's timings (`make bench`, as root: it makes network namespaces). A site LAN
// of namespaces (MeshTestSupport): the cloud core, gw1 with a calling station, gw2 with an
// answering one; the release daemons. Each round cuts the cloud link (the switch port down) and
// measures
//   - cut → gw1's uplink `down` (the `cloud` topic's health, its ms timestamp, via MQTT);
//   - dial → ringing at the mesh station for a call placed at once, before the outage is noticed
//     (it waits `fallback_after_ms` for the cloud), and for one placed after it is noticed;
// where "dial" is gw1 taking the legacy INVITE and "ringing" gw2 taking the mesh INVITE and
// ringing its station (both call records' start times, one host clock). The baseline in the same
// run: the same dial → ringing through the cloud with the cloud up. Also: bytes gw1 sends on an
// idle LAN link in 20 s (probes, keepalives, mDNS), to show the fast detection does not flood.
import Foundation
import Gateway
import MeshTestSupport
import PeerTestSupport

let rounds = Int(ProcessInfo.processInfo.environment["MESH_BENCH_ROUNDS"] ?? "") ?? 5

func milliseconds(_ seconds: Double) -> String { String(format: "%.0f ms", seconds * 1000) }

func summary(_ values: [Double]) -> String {
    guard !values.isEmpty else { return "-" }
    let sorted = values.sorted()
    return "p50 \(milliseconds(sorted[sorted.count / 2])), min \(milliseconds(sorted[0])), max \(milliseconds(sorted.last!)) (n=\(values.count))"
}

func run() async throws {
    let network = try await MeshNetwork.create()
    defer { Task { await network.destroy() } }
    let (coreConfig, caFile) = try await network.startCore()
    let tone = network.scratch.path("tone.wav")
    try await Baresip.tone(tone, frequency: 1000, seconds: 600, rate: 16000, channels: 1)
    let answering = try network.station("b", beside: "gw2", tone: tone)
    try answering.start(seconds: 3600)
    let broker = try Mosquitto(in: network.scratch, namespace: network.host("gw1"))
    try await broker.start()
    let topics = try broker.startSubscriber("symphony-bridge/gw1/cloud")
    let gw1 = try network.startGateway("gw1", channels: [
        .init(index: 1, number: "101", cloudTarget: "gw2-ch1", legacyTargets: ["sip:a@127.0.0.1:9"], meshTargets: ["201"]),
    ], claimCode: try await network.claimCode("gw1", coreConfig: coreConfig), caFile: caFile,
       extra: "[mqtt]\nhost = \"127.0.0.1\"\nport = \(broker.port)\n")
    let gw2 = try network.startGateway("gw2", channels: [
        .init(index: 1, number: "201", cloudTarget: "gw1-ch1", legacyTargets: ["sip:b@127.0.0.1:\(answering.sipPort)"]),
    ], claimCode: try await network.claimCode("gw2", coreConfig: coreConfig), caFile: caFile)
    try await network.eventually("both registered and seeing each other", timeout: .seconds(30)) {
        gw1.process.text.contains("cloud uplink registered") && gw2.process.text.contains("cloud uplink registered")
            && gw1.process.text.contains("mesh peers: gw2@")
    }

    var placed = 0
    /// One 3 s call from a fresh station beside gw1 to 101; the seconds from gw1 taking it to gw2 taking it.
    func call(_ expected: GatewayCallRecord.Direction) async throws -> Double {
        placed += 1
        let station = try network.station("a\(placed)", beside: "gw1", tone: tone)
        try station.start(seconds: 3, command: "/dial sip:101@127.0.0.1:5060")
        _ = try await station.process?.wait(timeout: .seconds(30))
        let count = placed
        try await network.eventually("call \(count) recorded on both gateways") {
            try network.records(gw1.state).count >= count && network.records(gw2.state).count >= count
        }
        let caller = try network.records(gw1.state)[count - 1], callee = try network.records(gw2.state)[count - 1]
        guard caller.direction == expected, caller.status == .answered else {
            throw PeerError("call \(count) went \(caller.direction.rawValue) (\(caller.status.rawValue)), expected \(expected.rawValue)\n\(network.logs())")
        }
        return callee.startedAt - caller.startedAt
    }

    @Sendable func cloudMessages() -> [(health: String, registered: Bool, ts: Double)] {
        topics.text.split(separator: "\n").compactMap { line in
            guard let brace = line.firstIndex(of: "{"),
                let object = try? JSONSerialization.jsonObject(with: Data(line[brace...].utf8)) as? [String: Any],
                let ts = object["ts"] as? Double
            else { return nil }
            return ((object["health"] as? String) ?? "", (object["registered"] as? Bool) ?? false, ts / 1000)
        }
    }

    // The idle uplink: what gw1 sends in 20 s with nothing happening.
    func txBytes() async throws -> Int {
        Int(try await network.run(in: network.host("gw1"), "cat", ["/sys/class/net/eth0/statistics/tx_bytes"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }
    try await Task.sleep(for: .seconds(5))
    let before = try await txBytes()
    try await Task.sleep(for: .seconds(20))
    let idleBytesPerSecond = Double(try await txBytes() - before) / 20

    var baseline: [Double] = [], undetected: [Double] = [], detected: [Double] = [], down: [Double] = []
    for round in 1...rounds {
        baseline.append(try await call(.legacyToCloud))
        let cutAt = Date().timeIntervalSince1970
        try await network.cutCloud()
        undetected.append(try await call(.legacyToMesh))
        try await network.eventually("gw1's uplink down") { cloudMessages().contains { $0.health == "down" && $0.ts > cutAt } }
        down.append(cloudMessages().first { $0.health == "down" && $0.ts > cutAt }!.ts - cutAt)
        detected.append(try await call(.legacyToMesh))
        let restoredAt = Date().timeIntervalSince1970
        let registrations = gw2.process.text.components(separatedBy: "cloud uplink registered").count
        try await network.restoreCloud()
        try await network.eventually("both gateways registered again", timeout: .seconds(60)) {
            cloudMessages().contains { $0.registered && $0.health == "up" && $0.ts > restoredAt }
                && gw2.process.text.components(separatedBy: "cloud uplink registered").count > registrations
        }
        print("round \(round): cut → down \(milliseconds(down.last!)); dial → mesh ringing \(milliseconds(undetected.last!)) undetected, \(milliseconds(detected.last!)) detected; via cloud \(milliseconds(baseline.last!))")
    }
    print("""

        Mesh fallback (\(rounds) rounds; fallback_after_ms 1500, probe interval 1 s, down after 2.5 s of silence)
          cut → uplink down                         \(summary(down))   aim ≤ 3000 ms
          dial → mesh ringing, outage not noticed   \(summary(undetected))   aim ≤ 2000 ms
          dial → mesh ringing, outage noticed       \(summary(detected))   aim ≤ 100 ms
          baseline: dial → ringing via the cloud    \(summary(baseline))
          idle LAN link, gw1 sends                  \(String(format: "%.0f", idleBytesPerSecond)) bytes/s (probes only on a quiet flow, mDNS, keepalive)
        """)
    topics.stop()
    broker.stop()
    answering.stop()
    await network.destroy()
}

do {
    try await run()
} catch {
    print("MeshBenchmarks failed: \(error)")
    exit(1)
}
