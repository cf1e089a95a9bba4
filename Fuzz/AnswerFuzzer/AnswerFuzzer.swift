import FuzzDriver
import Gateway
import Glibc
import Media
import NIOCore
import SIP
import SIPUserAgent
import FuzzSDPBuilder

// The far side's session descriptions after our offer (`make fuzz`): its answer (a 183 or 200
// to our INVITE) and then its re-INVITE offers, as text the fuzzer mutates (seeds and an SDP
// dictionary in Fuzz/AnswerFuzzer). Input: one byte choosing our side (cloud, legacy or mesh
// offer, the policies `bridge.toml` makes), then descriptions separated by NUL bytes. The answer
// goes through `CallMediaNegotiation.leg` into a bridge beside a fixed other leg; each re-INVITE
// offer is answered with the same policy and the bridge's leg moved to it (`MediaBridge.update`,
// what an early-media branch switch uses), with a few packets and ticks after each step.
// Checked: nothing traps; every description we answer with parses again.

private enum Fixture {
    static let policies = ChannelRouter.Settings.policies(BridgeConfiguration())
    static let mesh = ChannelRouter.Settings.meshPolicy(BridgeConfiguration())
    static let peer = try! SocketAddress(ipAddress: "192.0.2.10", port: 4000)
    static let other = MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 100), remote: peer)
    static let options = AudioCodecOptions(opusComplexity: 0)
}

private final class NullSink: MediaPacketSink {
    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp: Bool) {}
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let policy = [Fixture.policies.cloud, Fixture.policies.legacy, Fixture.mesh][Int(input.byte() % 3)]
    let documents = input.rest().split(separator: 0, maxSplits: 8, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    guard let first = documents.first else { return 0 }
    let offer = SDPOfferAnswer.makeOffer(policy: policy, address: "192.0.2.1", port: 20000, sessionID: "1", makeKey: FuzzSDP.ourKey)
    guard let leg = try? CallMediaNegotiation.leg(
        answeredBy: SIPMessageBody(contentType: "application/sdp", text: first), to: offer, codecOptions: Fixture.options, canonicalName: "gw1", scope: 0)
    else {
        FuzzTrace.note("answer refused")
        return 0
    }
    FuzzTrace.note("answer taken: \(leg.codec) ptime \(leg.checked.ptime)")
    let sink = NullSink()
    var now: UInt64 = 1_000_000_000
    guard let bridge = try? MediaBridge(a: Fixture.other, b: leg, jitterBufferMax: .milliseconds(120), sink: sink, now: now) else { return 0 }
    var sequence: UInt16 = 1
    func traffic() {
        // A G.722 frame on the fixed leg, an unprotected packet of the far leg's type, a tick.
        var packet = [UInt8](repeating: 0x55, count: 12 + 160 + SRTPSession.maxTrailer)
        for (side, pt, source) in [(MediaLegSide.a, UInt8(9), Fixture.peer), (.b, leg.payloadType, leg.remote)] {
            packet.withUnsafeMutableBytes { raw in
                RTPHeader(payloadType: pt, sequenceNumber: sequence, timestamp: UInt32(sequence) &* 160, ssrc: 7).writeFixed(into: raw)
                bridge.receive(raw, length: 172, from: source, on: side, now: now)
            }
        }
        sequence &+= 1
        now += 20_000_000
        bridge.tick(now: now)
    }
    traffic()
    for text in documents.dropFirst() {
        guard let reoffer = try? CallMediaNegotiation.description(in: SIPMessageBody(contentType: "application/sdp", text: text), noneError: .noOffer),
            let (answer, moved) = try? CallMediaNegotiation.answer(
                reoffer, policy: policy, address: "192.0.2.1", port: 20000, codecOptions: Fixture.options, canonicalName: "gw1", scope: 0, sessionID: "1",
                makeKey: FuzzSDP.ourKey)
        else { continue }
        precondition((try? SDPParser.parse(answer.serialized)) != nil, "our answer to a re-INVITE does not parse")
        try? bridge.update(.b, to: moved, now: now)
        FuzzTrace.note("re-INVITE: \(moved.codec) ptime \(moved.checked.ptime)")
        traffic()
        traffic()
    }
    return 0
}

@main
enum FuzzMain {
    static func main() { exit(runFuzzTarget(fuzzOneInput)) }
}
