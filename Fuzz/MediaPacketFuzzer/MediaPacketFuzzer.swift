import FuzzDriver
import Glibc
import Media
import NIOCore

// RTP, RTCP and SRTP packet handling under libFuzzer (`make fuzz`). Each input is read as an
// RTP header, a compound RTCP packet (whatever parses must serialize and parse back the same),
// an SRTP and an SRTCP packet (libsrtp must refuse garbage cleanly), a telephone-event, and then
// goes through a transcoding media bridge on both legs (one SRTP, one plain), where it meets the
// G.722 and Opus decoders and the jitter buffer.

private final class NullSink: MediaPacketSink {
    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp: Bool) {}
}

/// libFuzzer calls in from one thread; the state lives as long as the process.
private enum Fixture {
    static let peer = try! SocketAddress(ipAddress: "127.0.0.1", port: 4000)
    static let srtpKey = try! SRTPKeyMaterial(suite: .aesCM128HMACSHA1_80, bytes: [UInt8](repeating: 3, count: 30))
    nonisolated(unsafe) static let sink = NullSink()
    nonisolated(unsafe) static var now: UInt64 = 1_000_000_000
    nonisolated(unsafe) static let bridge = try! MediaBridge(
        a: MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .telephoneEvent(payloadType: 101), remote: peer),
        b: MediaLegConfiguration(codec: .opus, payloadType: 111, dtmf: .telephoneEvent(payloadType: 100), remote: peer,
                                 srtp: .init(local: srtpKey, remote: srtpKey)),
        sink: sink, now: now)
    nonisolated(unsafe) static let inbound = try! SRTPSession(key: srtpKey, direction: .inbound)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    _ = RTPDemultiplexer.classify(bytes)
    if let header = try? RTPHeader.parse(bytes) {
        let range = header.payloadRange(packetLength: size)
        precondition(range.lowerBound >= 12 && range.lowerBound <= range.upperBound && range.upperBound <= size, "payload range")
    }
    if let packets = try? RTCPPacket.parseCompound(bytes, strictCompound: false) {
        var wire: [UInt8] = []
        let typed = packets.filter { if case .other = $0 { false } else { true } }
        for packet in typed { packet.serialize(into: &wire) }
        if !wire.isEmpty {
            let again = wire.withUnsafeBytes { try? RTCPPacket.parseCompound($0, strictCompound: false) }
            precondition(again == typed, "RTCP changed in a round trip")
        }
    }
    _ = TelephoneEvent(bytes)

    var buffer = [UInt8](repeating: 0, count: size + SRTPSession.maxTrailer + 4)
    buffer.withUnsafeMutableBytes { raw in
        raw.copyMemory(from: bytes)
        _ = try? Fixture.inbound.unprotect(raw, length: size)
        raw.copyMemory(from: bytes)
        _ = try? Fixture.inbound.unprotectRTCP(raw, length: size)
        for leg in MediaLegSide.allCases {
            raw.copyMemory(from: bytes)
            Fixture.bridge.receive(raw, length: size, from: Fixture.peer, on: leg, now: Fixture.now)
        }
    }
    Fixture.now += 20_000_000
    Fixture.bridge.tick(now: Fixture.now)
    return 0
}

// One entry point for both builds: libFuzzer's driver (scripts/fuzz), or a replay of the files
// named on the command line (a normal build, to reproduce a crash without the fuzzing runtime).
@main
enum FuzzMain {
    static func main() { exit(runFuzzTarget(fuzzOneInput)) }
}
