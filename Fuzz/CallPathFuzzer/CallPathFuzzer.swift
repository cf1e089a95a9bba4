import FuzzDriver
import Gateway
import Glibc
import Media
import NIOCore
import SIP
import SIPUserAgent
import FuzzSDPBuilder

// A bridged call, in process, as a hostile caller and callee would make it (`make fuzz`): an
// INVITE whose SDP the fuzzer writes from fields (ports, payload types, rtpmap clocks, ptime,
// a=rtcp, crypto keys and parameters, addresses — extremes picked from tables), parsed as the
// endpoint parses it, answered and mapped by the gateway's own functions (`CallMediaNegotiation`,
// `MediaLegMapping`, the policies `bridge.toml` makes), our offer answered by a fuzzed callee, the
// two legs bridged by `MediaBridge` as `MediaRelay` does, and then a stream of RTP, RTCP, SRTP
// (protected with the keys the fuzzed SDP gave, so that it authenticates), RFC 4733 events, raw
// datagrams, digits and clock steps into both legs, beside the call's state machine
// (`BridgedCall`) driven with the callee's answers. Both directions, passthrough and
// transcoding, G.722, G.711 and Opus.
// Checked: nothing traps; the router's passthrough decision and the bridge's agree; what the
// bridge sends on a plain leg is RTP or RTCP; a 2xx ends the call connected, at most once.

private enum Fixture {
    static let legacyCodecSets = [["G722", "PCMA", "PCMU"], ["G722"], ["PCMU"], ["PCMA", "PCMU"]]
    static let cloudCodecSets = [["opus", "G722", "PCMA", "PCMU"], ["opus"], ["G722"], ["PCMU", "PCMA"]]
    static let policies: [(legacy: SDPAudioPolicy, cloud: SDPAudioPolicy)] = legacyCodecSets.flatMap { legacy in
        cloudCodecSets.map { cloud in
            var config = BridgeConfiguration()
            config.legacyCodecs = legacy
            config.cloudCodecs = cloud
            return ChannelRouter.Settings.policies(config)
        }
    }
    static let meshPolicy = ChannelRouter.Settings.meshPolicy(BridgeConfiguration())
}

/// Where the packets go: checked, not sent.
private final class CheckingSink: MediaPacketSink {
    var plainLegs: Set<MediaLegSide> = []
    var sent = 0

    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp: Bool) {
        sent += 1
        guard plainLegs.contains(leg) else { return }
        switch RTPDemultiplexer.classify(packet) {
        case .rtp: precondition((try? RTPHeader.parse(packet)) != nil, "the bridge sent RTP that does not parse")
        case .rtcp: precondition((try? RTCPPacket.parseCompound(packet)) != nil, "the bridge sent RTCP that does not parse")
        case .other: preconditionFailure("the bridge sent something that is neither RTP nor RTCP")
        }
    }
}

/// One fuzzed peer's view of a leg: where it sends from and how it protects.
private struct FuzzPeer {
    var source: SocketAddress
    var srtp: SRTPSession?
    var payloadType: UInt8
    var eventPayloadType: UInt8?
    var sequence: UInt16
    var timestamp: UInt32
    var ssrc: UInt32
    var frameTicks: UInt32
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let flags = input.byte()
    let (legacyPolicy, cloudPolicy) = Fixture.policies[Int(input.byte()) % Fixture.policies.count]
    let fromLegacy = flags & 1 == 0
    let overMesh = flags & 2 != 0
    let farPolicy = overMesh ? Fixture.meshPolicy : cloudPolicy
    let (inboundPolicy, outboundPolicy) = fromLegacy ? (legacyPolicy, farPolicy) : (farPolicy, legacyPolicy)

    // The caller's INVITE, parsed as the endpoint parses it.
    let offerText = FuzzSDP.offer(&input, srtp: inboundPolicy.srtp != .off)
    let invite = "INVITE sip:101@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK\(input.u16())\r\n"
        + "From: <sip:door@192.0.2.10>;tag=1\r\nTo: <sip:101@192.0.2.1>\r\nCall-ID: fuzz\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        + "Contact: <sip:door@192.0.2.10>\r\nContent-Type: \(input.pick(["application/sdp", "application/SDP", "text/plain", "application/sdp; charset=x"]))\r\n"
        + "Content-Length: \(offerText.utf8.count)\r\n\r\n" + offerText
    guard let message = try? SIPMessageParser().parse(invite, framing: .datagram), let offerBody = SIPMessageBody(message) else { return 0 }
    let options = AudioCodecOptions(opusComplexity: 0)
    let caller: MediaLegConfiguration
    let answer: SDPSession
    do {
        let offer = try CallMediaNegotiation.description(in: offerBody, noneError: .noOffer)
        _ = CallMediaNegotiation.peerAddress(of: offer)
        (answer, caller) = try CallMediaNegotiation.answer(
            offer, policy: inboundPolicy, address: "192.0.2.1", port: 20000, codecOptions: options, canonicalName: "gw1", scope: 0, sessionID: "1",
            makeKey: FuzzSDP.ourKey)
    } catch {
        FuzzTrace.note("caller refused (488): \(error)")
        return 0
    }
    precondition((try? SDPParser.parse(answer.serialized)) != nil, "our answer does not parse")

    // Our offer to the callee, and its fuzzed answer.
    let ourOffer = SDPOfferAnswer.makeOffer(policy: outboundPolicy, address: "192.0.2.1", port: 20002, sessionID: "2", makeKey: FuzzSDP.ourKey)
    var call = BridgedCall(channel: 1, direction: fromLegacy ? (overMesh ? .legacyToMesh : .legacyToCloud) : (overMesh ? .meshToLegacy : .cloudToLegacy), branches: input.int(in: 1...3),
        timing: BridgedCall.Timing(ring: 30, maxCall: 600, fallbackAfter: 1.5, mediaTimeout: 5))
    call.begin(at: 0)
    let answerText = FuzzSDP.answer(&input, to: ourOffer)
    let callee: MediaLegConfiguration
    do {
        callee = try CallMediaNegotiation.leg(
            answeredBy: SIPMessageBody(contentType: "application/sdp", text: answerText), to: ourOffer, codecOptions: options, canonicalName: "gw1", scope: 0)
    } catch {
        FuzzTrace.note("callee refused: \(error)")
        _ = call.outboundFailed(0, status: 488)
        return 0
    }
    let (legacyLeg, farLeg) = fromLegacy ? (caller, callee) : (callee, caller)
    let sink = CheckingSink()
    if legacyLeg.srtp == nil { sink.plainLegs.insert(.a) }
    if farLeg.srtp == nil { sink.plainLegs.insert(.b) }
    var now: UInt64 = 1_000_000_000
    guard let bridge = try? MediaBridge(a: legacyLeg, b: farLeg, jitterBufferMax: .milliseconds(120), sink: sink, now: now) else { return 0 }
    let label = CallMediaNegotiation.codecLabel(legacy: legacyLeg, far: farLeg)
    precondition((bridge.mode == .passthrough) == !label.contains("/"), "router says \(label), bridge runs \(bridge.mode)")
    FuzzTrace.note("bridged \(label)")

    var peers = [legacyLeg, farLeg].map { leg in
        FuzzPeer(
            source: leg.remote, srtp: leg.srtp.flatMap { try? SRTPSession(key: $0.remote, direction: .outbound) }, payloadType: leg.payloadType,
            eventPayloadType: leg.dtmf == .sipInfo ? nil : { if case .telephoneEvent(let pt) = leg.dtmf { pt } else { nil } }(),
            sequence: 1000, timestamp: 5000, ssrc: 0x1234, frameTicks: UInt32(leg.codec.timestampTicks(milliseconds: leg.checked.ptime)))
    }
    var buffer = [UInt8](repeating: 0, count: 2048 + SRTPSession.maxTrailer + 16)
    var connected = false
    for _ in 0..<48 where !input.isEmpty {
        let op = input.byte()
        let side: MediaLegSide = op & 0x80 == 0 ? .a : .b
        switch op % 8 {
        case 0, 1, 2, 3:
            let length = FuzzPackets.rtp(&input, peer: &peers[side.rawValue], into: &buffer)
            feed(bridge, &buffer, length: length, peer: &peers[side.rawValue], side: side, now: now, input: &input)
        case 4:
            let length = FuzzPackets.event(&input, peer: &peers[side.rawValue], into: &buffer)
            feed(bridge, &buffer, length: length, peer: &peers[side.rawValue], side: side, now: now, input: &input)
        case 5:
            let length = FuzzPackets.rtcp(&input, peer: peers[side.rawValue], into: &buffer)
            guard length > 0 else { continue }
            var sendLength = length
            if let srtp = peers[side.rawValue].srtp, input.byte() % 4 != 0 {
                sendLength = (try? buffer.withUnsafeMutableBytes { try srtp.protectRTCP($0, length: length) }) ?? length
            }
            buffer.withUnsafeMutableBytes { bridge.receiveRTCP($0, length: sendLength, from: peers[side.rawValue].source, on: side, now: now) }
        case 6:
            now += UInt64(input.int(in: 0...250)) * 1_000_000
            bridge.tick(now: now)
            _ = call.tick(at: Double(now) / 1e9)
        default:
            switch input.byte() % 4 {
            case 0:
                let digit = input.pick(Array("0123456789*#ABCDaxß!"))
                _ = bridge.sendDigit(digit, durationMilliseconds: input.pick([-1, 0, 40, 250, 60_000, Int.max, Int.min, input.int(in: 0...70_000)]), on: side, now: now)
            case 1:
                let branch = input.int(in: 0...(call.fork.branches.count - 1))
                for action in call.outboundAnswered(branch, at: Double(now) / 1e9) where action == .answerInbound(branch: branch) {
                    precondition(!connected, "answered twice")
                    connected = true
                }
            case 2:
                _ = call.outboundFailed(input.int(in: 0...(call.fork.branches.count - 1)), status: input.int(in: 300...999))
                _ = GatewayFailureMapping.inboundStatus(forOutbound: input.int(in: 0...999))
            default:
                _ = call.outboundRinging(input.int(in: 0...(call.fork.branches.count - 1)), early: input.bool())
            }
        }
    }
    now += 6_000_000_000
    bridge.tick(now: now)
    for side in MediaLegSide.allCases {
        _ = bridge.counters(side)
        _ = bridge.receiveStatistics(side)
        _ = bridge.roundTripTime(side)
        _ = bridge.jitterBufferDelay(input: side)
    }
    _ = call.inboundEnded()
    FuzzTrace.note("sent \(sink.sent); received a \(bridge.counters(.a).packetsReceived) b \(bridge.counters(.b).packetsReceived); dropped a \(bridge.counters(.a).dropped) b \(bridge.counters(.b).dropped) (oversized \(bridge.counters(.a).oversized)/\(bridge.counters(.b).oversized))")
    return 0
}

/// One datagram into the bridge: mostly from the peer's address, sometimes from a stranger's or
/// another port; protected when the leg is SRTP (mostly).
private func feed(_ bridge: MediaBridge, _ buffer: inout [UInt8], length: Int, peer: inout FuzzPeer, side: MediaLegSide, now: UInt64, input: inout FuzzInput) {
    guard length > 0 else { return }
    var sendLength = length
    if let srtp = peer.srtp, input.byte() % 8 != 0 {
        guard let protected = try? buffer.withUnsafeMutableBytes({ try srtp.protect($0, length: length) }) else { return }
        sendLength = protected
    }
    var source = peer.source
    switch input.byte() % 16 {
    case 0: source = try! SocketAddress(ipAddress: "198.51.100.1", port: 4000)
    case 1: source = source.withPort(Int(input.u16())) ?? source
    default: break
    }
    buffer.withUnsafeMutableBytes { bridge.receive($0, length: sendLength, from: source, on: side, now: now) }
}

/// RTP, events and RTCP from fields.
private enum FuzzPackets {
    static let payloadSizes = [0, 1, 20, 80, 160, 320, 640, 960, 961, 1275, 1281, 1500, 1700, 2000]

    static func rtp(_ input: inout FuzzInput, peer: inout FuzzPeer, into buffer: inout [UInt8]) -> Int {
        let mode = input.byte()
        // Mostly the next packet of the stream; sometimes a jump, a new source, or a stranger's type.
        switch mode % 8 {
        case 0: peer.sequence &+= UInt16(truncatingIfNeeded: Int(Int8(bitPattern: input.byte())))
        case 1: peer.sequence = input.u16(); peer.timestamp = input.u32()
        case 2: peer.ssrc = input.u32()
        default: peer.sequence &+= 1
        }
        peer.timestamp &+= mode % 8 == 3 ? input.u32() : peer.frameTicks
        let payloadType = mode & 0x40 == 0 ? peer.payloadType : input.byte() & 0x7F
        // A frame's worth for G.711/G.722 (a byte per RTP tick), a small Opus packet, or a size
        // from the table; never more than the 2,048-byte datagram the socket layer reads.
        let size = mode & 0x20 == 0 ? (peer.frameTicks >= 960 ? 60 : Int(peer.frameTicks)) : input.pick(payloadSizes)
        var length = 0
        buffer.withUnsafeMutableBytes { raw in
            RTPHeader(marker: mode & 0x10 != 0, payloadType: payloadType, sequenceNumber: peer.sequence, timestamp: peer.timestamp, ssrc: peer.ssrc)
                .writeFixed(into: raw)
            let seed = input.byte()
            for i in 0..<size { raw[12 + i] = seed &+ UInt8(truncatingIfNeeded: i &* 37) }
            length = 12 + size
            if mode & 0x08 != 0, size > 0 {
                // Padding (RFC 3550 §5.1): the last byte counts it, maybe more than there is.
                raw[0] |= 0x20
                raw[length - 1] = input.byte()
            }
        }
        return length
    }

    static func event(_ input: inout FuzzInput, peer: inout FuzzPeer, into buffer: inout [UInt8]) -> Int {
        peer.sequence &+= 1
        if input.bool() { peer.timestamp &+= input.bool() ? peer.frameTicks : input.u32() }
        let pt = peer.eventPayloadType ?? (input.byte() & 0x7F)
        let event = TelephoneEvent(event: input.byte() % 24, isEnd: input.bool(), volume: input.byte() & 0x3F, duration: input.u16())
        buffer.withUnsafeMutableBytes { raw in
            RTPHeader(marker: input.bool(), payloadType: pt, sequenceNumber: peer.sequence, timestamp: peer.timestamp, ssrc: peer.ssrc).writeFixed(into: raw)
            event.write(into: UnsafeMutableRawBufferPointer(rebasing: raw[12..<16]))
        }
        return 16
    }

    static func rtcp(_ input: inout FuzzInput, peer: FuzzPeer, into buffer: inout [UInt8]) -> Int {
        var packets: [RTCPPacket] = []
        for _ in 0..<input.int(in: 0...3) {
            let block = RTCPReportBlock(
                ssrc: input.bool() ? 0 : input.u32(), fractionLost: input.byte(), cumulativeLost: Int32(bitPattern: input.u32()) >> 8,
                extendedHighestSequence: input.u32(), jitter: input.u32(), lastSenderReport: input.u32(), delaySinceLastSenderReport: input.u32())
            switch input.byte() % 4 {
            case 0:
                packets.append(.senderReport(RTCPSenderReport(
                    ssrc: peer.ssrc, ntpTimestamp: input.u64(), rtpTimestamp: input.u32(), packetCount: input.u32(), octetCount: input.u32(),
                    reports: input.bool() ? [block] : [])))
            case 1: packets.append(.receiverReport(RTCPReceiverReport(ssrc: peer.ssrc, reports: (0..<input.int(in: 0...3)).map { _ in block })))
            case 2: packets.append(.sourceDescription([RTCPSourceDescription(ssrc: peer.ssrc, canonicalName: input.text(max: 40))]))
            default: packets.append(.goodbye(ssrcs: [peer.ssrc], reason: input.bool() ? input.text(max: 40) : nil))
            }
        }
        var wire: [UInt8] = []
        for packet in packets { packet.serialize(into: &wire) }
        if input.byte() % 8 == 0 { wire = input.data(max: 200) }
        guard !wire.isEmpty, wire.count <= 1500 else { return 0 }
        buffer.withUnsafeMutableBytes { $0.copyBytes(from: wire) }
        return wire.count
    }
}

@main
enum FuzzMain {
    static func main() { exit(runFuzzTarget(fuzzOneInput)) }
}
