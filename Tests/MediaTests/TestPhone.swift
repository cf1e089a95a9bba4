import NIOCore
@testable import Media

/// A minimal RTP endpoint for tests: encodes PCM into (S)RTP packets the way a phone would, and
/// decodes what it receives. It uses the engine's codecs and libsrtp, but none of the bridge.
final class TestPhone {
    let codec: AudioCodecKind
    let payloadType: UInt8
    let telephoneEventPayloadType: UInt8?
    let sampleRate: Int
    let ssrc: UInt32 = .random(in: 1 ... .max)
    private(set) var sequence: UInt16 = .random(in: 0 ... .max)
    private(set) var timestamp: UInt32 = .random(in: 0 ... .max)
    let encoder: any AudioEncoder
    let decoder: any AudioDecoder
    let outbound: SRTPSession?
    let inbound: SRTPSession?
    /// This phone's keys (what it would put in its SDP) when SRTP is on.
    let localKey: SRTPKeyMaterial?

    init(codec: AudioCodecKind, payloadType: UInt8, telephoneEvent: UInt8? = nil, sampleRate: Int? = nil,
         srtp: SRTPCryptoSuite? = nil, peerKey: SRTPKeyMaterial? = nil) throws {
        self.codec = codec
        self.payloadType = payloadType
        self.telephoneEventPayloadType = telephoneEvent
        self.sampleRate = sampleRate ?? codec.nativeSampleRate
        encoder = try codec.makeEncoder(sampleRate: self.sampleRate)
        decoder = try codec.makeDecoder(sampleRate: self.sampleRate)
        if let srtp {
            let key = SRTPKeyMaterial.random(srtp)
            localKey = key
            outbound = try SRTPSession(key: key, direction: .outbound)
            inbound = try peerKey.map { try SRTPSession(key: $0, direction: .inbound) }
        } else {
            localKey = nil
            outbound = nil
            inbound = nil
        }
    }

    var frameSamples: Int { sampleRate / 50 }
    var frameTicks: Int { codec.timestampTicks(milliseconds: 20) }

    private func finish(_ header: RTPHeader, payload: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 12 + payload.count + SRTPSession.maxTrailer)
        var length = 12 + payload.count
        bytes.withUnsafeMutableBytes { raw in
            header.writeFixed(into: raw)
            raw.baseAddress!.advanced(by: 12).copyMemory(from: payload, byteCount: payload.count)
            if let outbound { length = try! outbound.protect(raw, length: length) }
        }
        return Array(bytes[..<length])
    }

    /// 20 ms packets carrying `pcm`.
    func audioPackets(_ pcm: [Int16]) throws -> [[UInt8]] {
        var packets: [[UInt8]] = []
        var payload = [UInt8](repeating: 0, count: 1500)
        for start in stride(from: 0, through: pcm.count - frameSamples, by: frameSamples) {
            let n = try pcm[start..<(start + frameSamples)].withUnsafeBufferPointer { p in try payload.withUnsafeMutableBytes { try encoder.encode(p, into: $0) } }
            packets.append(finish(RTPHeader(payloadType: payloadType, sequenceNumber: sequence, timestamp: timestamp, ssrc: ssrc), payload: Array(payload[..<n])))
            sequence &+= 1
            timestamp &+= UInt32(frameTicks)
        }
        return packets
    }

    /// The RFC 4733 packets of one digit lasting `frames` packet times, sent in place of audio.
    func eventPackets(_ digit: Character, frames: Int = 5) -> [[UInt8]] {
        guard let pt = telephoneEventPayloadType else { return [] }
        var generator = TelephoneEventGenerator(event: TelephoneEvent.event(for: digit)!, duration: frames * frameTicks, step: frameTicks, timestamp: timestamp)
        var packets: [[UInt8]] = []
        while let (event, marker) = generator.next() {
            var payload = [UInt8](repeating: 0, count: 4)
            payload.withUnsafeMutableBytes { event.write(into: $0) }
            packets.append(finish(RTPHeader(marker: marker, payloadType: pt, sequenceNumber: sequence, timestamp: generator.timestamp, ssrc: ssrc), payload: payload))
            sequence &+= 1
        }
        timestamp &+= UInt32(frames * frameTicks)
        return packets
    }

    struct Received {
        var headers: [RTPHeader] = []
        var pcm: [Int16] = []
        var events: [(timestamp: UInt32, event: TelephoneEvent)] = []
        var authenticationFailures = 0
    }

    /// Decodes received packets in arrival order (the bridge sends them in order).
    func receive(_ packets: [[UInt8]]) throws -> Received {
        var result = Received()
        var pcm = [Int16](repeating: 0, count: 5760)
        for packet in packets {
            // The bridge's RTCP reports (muxed on the RTP address: no remoteRTCP) are not audio;
            // under a slow run the first one lands within the call (RFC 3550 §6.2).
            guard packet.withUnsafeBytes({ RTPDemultiplexer.classify($0) }) == .rtp else { continue }
            var bytes = packet + [UInt8](repeating: 0, count: 16)
            var length = packet.count
            if let inbound {
                do {
                    length = try bytes.withUnsafeMutableBytes { try inbound.unprotect($0, length: packet.count) }
                } catch {
                    result.authenticationFailures += 1
                    continue
                }
            }
            let plain = Array(bytes[..<length])
            guard RTPDemultiplexer.classify(plain.withUnsafeBytes { $0 }) == .rtp else { continue }
            let header = try plain.withUnsafeBytes { try RTPHeader.parse($0) }
            result.headers.append(header)
            let payload = Array(plain[header.payloadRange(packetLength: length)])
            if header.payloadType == payloadType {
                let n = try payload.withUnsafeBytes { b in try pcm.withUnsafeMutableBufferPointer { try decoder.decode(b, into: $0) } }
                result.pcm += pcm[..<n]
            } else if header.payloadType == telephoneEventPayloadType, let event = payload.withUnsafeBytes({ TelephoneEvent($0) }) {
                result.events.append((header.timestamp, event))
            }
        }
        return result
    }
}

extension TestPhone.Received {
    /// The digits of the distinct events (one per RTP timestamp, RFC 4733 §2.5.1.1) that ended.
    var digits: String {
        var ended: [UInt32] = []
        var out = ""
        for (timestamp, event) in events where event.isEnd && !ended.contains(timestamp) {
            ended.append(timestamp)
            if let digit = event.digit { out.append(digit) }
        }
        return out
    }
}
