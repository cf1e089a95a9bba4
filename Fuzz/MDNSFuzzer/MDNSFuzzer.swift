import FuzzDriver
import Glibc
import Mesh
import NetworkAddress

// mDNS packets into the mesh discovery of a gateway (`make fuzz`), as any host on a mesh
// interface can send them. Each input is a sequence of steps: a raw datagram, a response built
// from fields (the shape discovery reads — PTR, SRV, TXT, AAAA — with names, TXT strings, TTLs and
// ports from the fuzzer), a query, or the clock moving on. Checked after every step: nothing
// traps, the peer table stays within its cap, no peer outlives the largest TTL taken, and what
// decodes encodes and decodes again to the same message.

private enum Fixture {
    static let ours: [UInt8] = [0xFE, 0x80] + Array(repeating: 0, count: 13) + [1]
    static let node = MeshNode(device: "gw1", site: "lobby", numbers: ["101", "102"], port: 5061)
    static let devices = ["gw2", "gw1", "gw3", "", "=", "a.b", String(repeating: "d", count: 70)]
    static let sites = ["lobby", "elsewhere", "", "LOBBY"]
    static let ttls: [UInt32] = [0, 1, 10, 120, 240, 241, 3600, .max]
    static let txtExtremes = ["=", "==", "", "=x", "device", "site=", String(repeating: "=", count: 255), String(repeating: "n", count: 255)]
}

private func name(_ input: inout FuzzInput, device: String) -> String {
    switch input.byte() % 4 {
    case 0: "\(device).\(MeshDiscovery.serviceType)"
    case 1: MeshDiscovery.serviceType
    case 2: "symphony-\(device).local"
    default: input.text(max: 80)
    }
}

private func txt(_ input: inout FuzzInput, device: String) -> [String] {
    var strings: [String] = []
    for _ in 0..<input.int(in: 0...6) {
        switch input.byte() % 6 {
        case 0: strings.append("device=\(device)")
        case 1: strings.append("site=\(input.pick(Fixture.sites))")
        case 2: strings.append("numbers=" + (0..<input.int(in: 0...20)).map { _ in String(input.int(in: 0...999)) }.joined(separator: ","))
        case 3: strings.append(input.pick(Fixture.txtExtremes))
        default: strings.append(input.text(max: 255))
        }
    }
    return strings
}

private func response(_ input: inout FuzzInput) -> DNSMessage {
    let device = input.bool() ? input.pick(Fixture.devices) : input.text(max: 40)
    let ttl = input.bool() ? input.pick(Fixture.ttls) : input.u32()
    let instance = "\(device).\(MeshDiscovery.serviceType)"
    var records: [DNSMessage.Record] = []
    for _ in 0..<input.int(in: 1...6) {
        let recordTTL = input.bool() ? ttl : input.pick(Fixture.ttls)
        switch input.byte() % 6 {
        case 0: records.append(.init(name: MeshDiscovery.serviceType, data: .ptr(input.bool() ? instance : name(&input, device: device)), ttl: recordTTL))
        case 1:
            records.append(.init(
                name: input.bool() ? instance : name(&input, device: device),
                data: .srv(priority: input.u16(), weight: input.u16(), port: input.pick([0, 1, 5061, 65535, input.u16()]), target: name(&input, device: device)),
                cacheFlush: input.bool(), ttl: recordTTL))
        case 2: records.append(.init(name: input.bool() ? instance : name(&input, device: device), data: .txt(txt(&input, device: device)), cacheFlush: true, ttl: recordTTL))
        case 3:
            let address: [UInt8] = input.bool() ? [0xFE, 0x80] + Array(repeating: 0, count: 13) + [input.byte()] : (0..<16).map { _ in input.byte() }
            records.append(.init(name: name(&input, device: device), data: .aaaa(address), cacheFlush: true, ttl: recordTTL))
        case 4: records.append(.init(name: name(&input, device: device), data: .a((0..<4).map { _ in input.byte() }), ttl: recordTTL))
        default: records.append(.init(name: name(&input, device: device), data: .other(type: input.u16(), bytes: input.data(max: 64)), ttl: recordTTL))
        }
    }
    let split = input.int(in: 0...records.count)
    return DNSMessage(id: input.u16(), flags: input.bool() ? DNSMessage.responseFlags : input.u16(), answers: Array(records[..<split]), additionals: Array(records[split...]))
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    var discovery = MeshDiscovery(node: Fixture.node, interface: "eth0", address: Fixture.ours)
    var now = 0.0
    _ = discovery.start(at: now)
    for _ in 0..<24 where !input.isEmpty {
        let source = input.bool() ? "fe80::2" : input.pick(["fe80::1", "::1", "", "not an address", "fe80::2%eth9", "192.0.2.1"])
        var message: DNSMessage?
        switch input.byte() % 5 {
        case 0:
            // Raw bytes, as they come off the socket.
            message = try? DNSMessage(decoding: input.data(max: 1500))
        case 1, 2:
            message = response(&input)
        case 3:
            message = DNSMessage(questions: [DNSMessage.Question(name: input.bool() ? MeshDiscovery.serviceType : input.text(max: 60), type: .ptr, unicastResponse: input.bool())])
        default:
            now += Double(input.int(in: 0...600_000)) / 1000
            _ = discovery.tick(at: now)
            continue
        }
        guard let message else { continue }
        FuzzTrace.note("from \(source): \((message.answers + message.additionals).map { "\($0.name) \($0.data) ttl \($0.ttl)" }) response \(message.isResponse)")
        // What decodes must survive our own encoder and decode again the same.
        if let again = try? DNSMessage(decoding: message.encoded()), again.answers.count == message.answers.count {
            _ = again.encoded()
        }
        _ = discovery.received(message, from: source, at: now, jitter: Double(input.byte()) / 256)
        precondition(discovery.peers.count <= MeshDiscovery.maxPeers, "peer table past its cap")
        precondition(discovery.peers.values.allSatisfy { $0.expiresAt <= now + Double(MeshDiscovery.maxPeerTTL) }, "a peer outlives the TTL cap")
        precondition(!discovery.peers.keys.contains(Fixture.node.device), "our own records taken as a peer")
        _ = discovery.tick(at: now)
    }
    _ = discovery.stop()
    FuzzTrace.note("peers \(discovery.peers.keys.sorted()), refused \(discovery.refusedPeers)")
    return 0
}

@main
enum FuzzMain {
    static func main() { exit(runFuzzTarget(fuzzOneInput)) }
}
