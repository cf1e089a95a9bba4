import Foundation
public import Media
public import NIOCore
import NIOPosix

/// The audio of a built-in demo phone: one UDP socket that sends a sine tone as RTP (SRTP when
/// the leg has keys) every 20 ms toward the peer's SDP address, and decodes what arrives so that
/// the tone the other end sent can be measured. Everything runs on the socket's event loop.
public final class DemoToneStream: @unchecked Sendable {
    public let channel: any Channel
    public var port: Int { channel.localAddress?.port ?? 0 }
    private let frequency: Double
    private var leg: MediaLegConfiguration?
    private var encoder: (any AudioEncoder)?
    private var decoder: (any AudioDecoder)?
    private var outbound: SRTPSession?
    private var inbound: SRTPSession?
    private var timer: RepeatedTask?
    private var phase = 0.0
    private var sequence = UInt16.random(in: 0...UInt16.max)
    private var timestamp = UInt32.random(in: 0...UInt32.max)
    private let ssrc = UInt32.random(in: 1...UInt32.max)
    private var received: [Int16] = []
    /// The PCM rate of both codec ends (Opus runs at 16 kHz here, G.711 at 8 kHz).
    private var sampleRate = 16000

    private init(channel: any Channel, frequency: Double) {
        self.channel = channel
        self.frequency = frequency
    }

    /// Binds a socket on `host` (port chosen by the system).
    public static func open(host: String, frequency: Double, group: any EventLoopGroup) async throws -> DemoToneStream {
        let box = StreamBox()
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(DemoToneHandler(box: box)) }
            }
            .bind(host: host, port: 0).get()
        let stream = DemoToneStream(channel: channel, frequency: frequency)
        box.stream = stream
        return stream
    }

    /// Starts sending to and decoding from the negotiated peer.
    public func start(_ leg: MediaLegConfiguration) async throws {
        try await channel.eventLoop.submit {
            self.leg = leg
            self.sampleRate = leg.codec == .pcma || leg.codec == .pcmu ? 8000 : 16000
            self.encoder = try leg.codec.makeEncoder(sampleRate: self.sampleRate)
            self.decoder = try leg.codec.makeDecoder(sampleRate: self.sampleRate)
            if let keys = leg.srtp {
                self.outbound = try SRTPSession(key: keys.local, direction: .outbound)
                self.inbound = try SRTPSession(key: keys.remote, direction: .inbound)
            }
            self.timer = self.channel.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(Int64(leg.ptime))) { _ in
                self.sendFrame()
            }
        }.get()
    }

    public func stop() async {
        try? await channel.eventLoop.submit { self.timer?.cancel() }.get()
        try? await channel.close()
    }

    /// The tone heard so far (after the first 300 ms): frequency (zero crossings) and level.
    public func measurement() async -> (frequency: Double, levelDBFS: Double, seconds: Double) {
        (try? await channel.eventLoop.submit { () -> (Double, Double, Double) in
            let skip = self.sampleRate * 3 / 10
            let pcm = self.received.count > skip ? Array(self.received[skip...]) : []
            guard pcm.count > self.sampleRate / 10 else { return (0, -100, 0) }
            var crossings = 0
            var sum = 0.0
            for i in 1..<pcm.count {
                if (pcm[i - 1] < 0) != (pcm[i] < 0) { crossings += 1 }
                sum += Double(pcm[i]) * Double(pcm[i])
            }
            let seconds = Double(pcm.count) / Double(self.sampleRate)
            let rms = (sum / Double(pcm.count)).squareRoot() / 32768
            return (Double(crossings) / 2 / seconds, 20 * log10(max(rms, 1e-9)), Double(self.received.count) / Double(self.sampleRate))
        }.get()) ?? (0, -100, 0)
    }

    private func sendFrame() {
        guard let leg, let encoder else { return }
        let samples = sampleRate * leg.ptime / 1000
        var pcm = [Int16](repeating: 0, count: samples)
        let step = 2 * Double.pi * frequency / Double(sampleRate)
        for i in 0..<samples {
            pcm[i] = Int16(sin(phase) * 16000)
            phase += step
        }
        phase = phase.truncatingRemainder(dividingBy: 2 * Double.pi)
        var packet = [UInt8](repeating: 0, count: 1500)
        let length: Int? = packet.withUnsafeMutableBytes { bytes in
            RTPHeader(marker: false, payloadType: leg.payloadType, sequenceNumber: sequence, timestamp: timestamp, ssrc: ssrc).writeFixed(into: bytes)
            guard let payload = pcm.withUnsafeBufferPointer({ try? encoder.encode($0, into: UnsafeMutableRawBufferPointer(rebasing: bytes[12..<1200])) }) else { return nil }
            var length = 12 + payload
            if let outbound { length = (try? outbound.protect(bytes, length: length)) ?? 0 }
            return length
        }
        sequence &+= 1
        timestamp &+= UInt32(leg.codec.timestampTicks(milliseconds: leg.ptime))
        guard let length, length > 0 else { return }
        let buffer = channel.allocator.buffer(bytes: packet[..<length])
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: leg.remote, data: buffer), promise: nil)
    }

    fileprivate func receive(_ datagram: ByteBuffer) {
        guard let leg, let decoder, received.count < sampleRate * 30 else { return }
        var bytes = Array(datagram.readableBytesView)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: SRTPSession.maxTrailer))
        let length = datagram.readableBytes
        bytes.withUnsafeMutableBytes { buffer in
            guard case .rtp = RTPDemultiplexer.classify(UnsafeRawBufferPointer(rebasing: buffer[..<length])) else { return }
            var plain = length
            if let inbound {
                guard let unprotected = try? inbound.unprotect(buffer, length: length) else { return }
                plain = unprotected
            }
            let packet = UnsafeRawBufferPointer(rebasing: buffer[..<plain])
            guard let header = try? RTPHeader.parse(packet), header.payloadType == leg.payloadType else { return }
            var pcm = [Int16](repeating: 0, count: sampleRate / 10)
            let count = pcm.withUnsafeMutableBufferPointer { out in
                (try? decoder.decode(UnsafeRawBufferPointer(rebasing: packet[header.payloadRange(packetLength: plain)]), into: out)) ?? 0
            }
            received.append(contentsOf: pcm[..<count])
        }
    }
}

private final class StreamBox: @unchecked Sendable {
    var stream: DemoToneStream?
}

private final class DemoToneHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let box: StreamBox

    init(box: StreamBox) { self.box = box }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        box.stream?.receive(unwrapInboundIn(data).data)
    }
}
