import Foundation
import NIOCore
import NIOPosix
import PeerTestSupport
import Testing
@testable import Media

/// ffmpeg (Debian 5.1) as an independent receiver: its SRTP and its Opus/G.722 decoders share
/// no code with libsrtp and spandsp, so it checks what the engine puts on the wire.
@Suite("ffmpeg receives the engine's SRTP")
struct FFmpegPeerTests {
    struct Stream: Sendable, CustomStringConvertible {
        var codec: AudioCodecKind
        var payloadType: UInt8
        var rtpmap: String
        var description: String { rtpmap }
    }

    @Test("ffmpeg decodes the bridge's SRTP stream, and the decoded audio holds the tone", arguments: [
        Stream(codec: .opus, payloadType: 111, rtpmap: "opus/48000/2"),
        Stream(codec: .g722, payloadType: 9, rtpmap: "G722/8000"),
    ])
    func ffmpegReceives(_ stream: Stream) async throws {
        let scratch = try ScratchDirectory()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let relay = try MediaRelay(portRange: 22000...22999)
        let ffmpegPort = try freePort(udp: true) & ~1
        let key = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
        try scratch.write("stream.sdp", [
            "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=symphony-bridge", "c=IN IP4 127.0.0.1", "t=0 0",
            "m=audio \(ffmpegPort) RTP/SAVP \(stream.payloadType)", "a=rtpmap:\(stream.payloadType) \(stream.rtpmap)",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:\(Data(key.bytes).base64EncodedString())", "",
        ].joined(separator: "\r\n"))
        let ffmpeg = try PeerProcess("ffmpeg", [
            "-hide_banner", "-nostdin", "-loglevel", "error", "-protocol_whitelist", "file,udp,rtp,srtp,crypto",
            "-i", scratch.path("stream.sdp"), "-t", "3", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", "-y", scratch.path("out.wav"),
        ])
        try await waitUntilListening(port: ffmpegPort, udp: true)

        let phone = try TestPhone(codec: .g722, payloadType: 9)
        let phoneSocket = try await UDPPeer(group: group)
        let legA = try await relay.openLeg(host: "127.0.0.1")
        let legB = try await relay.openLeg(host: "127.0.0.1", alongside: legA)
        let bridge = try await relay.bridge(
            legA, MediaLegConfiguration(codec: .g722, payloadType: 9, dtmf: .sipInfo, remote: phoneSocket.address),
            legB, MediaLegConfiguration(
                codec: stream.codec, payloadType: stream.payloadType, dtmf: .sipInfo,
                remote: try SocketAddress(ipAddress: "127.0.0.1", port: ffmpegPort),
                // The SDP ffmpeg read has no a=rtcp-mux: its RTCP is on the port + 1.
                remoteRTCP: try SocketAddress(ipAddress: "127.0.0.1", port: ffmpegPort + 1),
                srtp: .init(local: key, remote: SRTPKeyMaterial.random(.aesCM128HMACSHA1_80))))
        try await phoneSocket.stream(try phone.audioPackets(AudioAnalysis.tone(frequency: 1000, dBFS: -15, sampleRate: 16000, seconds: 4.5)), to: legA.localAddress)

        let status = try await ffmpeg.wait(timeout: .seconds(30))
        #expect(status == 0, "ffmpeg: \(ffmpeg.text)")
        let pcm = try wavSamples(scratch.url.appendingPathComponent("out.wav"))
        // At least a second of its 3 s: under the full suite's load the phone's 20 ms pacing
        // slips and the jitter buffer drops what comes later than its 200 ms (a run decoded 1.9 s).
        #expect(pcm.count > 16000, "ffmpeg decoded \(pcm.count) samples; output: \(ffmpeg.text)")
        expectTone(pcm, sampleRate: 16000, frequency: 1000, level: -15)
        await bridge.close()
        relay.shutdown()
        await phoneSocket.close()
        try await group.shutdownGracefully()
    }
}
