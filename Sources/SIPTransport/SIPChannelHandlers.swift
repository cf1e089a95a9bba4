import CrashContext
import NIOCore
import NIOSSL
import NIOTLS
import SIP

/// UDP: each datagram is one message (RFC 3261 §18.3). Thin: hands bytes and the flow to the
/// endpoint, which runs on this channel's event loop.
final class SIPDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let endpoint: SIPEndpoint
    private var localAddress: SocketAddress?
    private var lastError: (any Error)?
    /// The largest UDP payload there is (65,535 - IP and UDP headers, rounded up).
    static let receiveCapacity = 65_536

    init(endpoint: SIPEndpoint) {
        self.endpoint = endpoint
    }

    func channelActive(context: ChannelHandlerContext) {
        localAddress = context.channel.localAddress
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let local = localAddress ?? context.channel.localAddress else { return }
        let flow = SIPFlow(transport: .udp, local: local, remote: envelope.remoteAddress, connectionID: 0)
        // Messages keep slices of their bytes (transactions hold requests for up to 32 s): a
        // datagram must not keep its 64 KiB receive buffer alive with it.
        var bytes = envelope.data
        if bytes.capacity > 4 * max(bytes.readableBytes, 1024) {
            var copy = context.channel.allocator.buffer(capacity: bytes.readableBytes)
            copy.writeBuffer(&bytes)
            bytes = copy
        }
        endpoint.assumeIsolated { $0.receive(bytes, on: flow) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP port unreachable and the like: a UDP socket keeps serving.
        lastError = error
        endpoint.assumeIsolated { $0.logDatagramError(error) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Closed by us at shutdown, or by SwiftNIO after a send error it does not tolerate:
        // the endpoint binds the address again in the second case.
        let (channel, address, error) = (context.channel, localAddress, lastError)
        endpoint.assumeIsolated { $0.datagramChannelClosed(channel, address: address, error: error) }
        context.fireChannelInactive()
    }
}

/// TCP and TLS: frames from `SIPStreamDecoder`; answers keepalive pings itself (RFC 5626
/// §3.5.1) and reports the connection's life to the endpoint.
final class SIPStreamHandler: ChannelInboundHandler {
    typealias InboundIn = SIPStreamFrame
    typealias OutboundOut = ByteBuffer

    private let endpoint: SIPEndpoint
    private let transport: SIPTransportProtocol
    let connectionID: UInt64
    private var flow: SIPFlow?
    /// The TLS handler below us, asked for the peer's certificate once the handshake is done.
    private let tls: NIOSSLHandler?

    init(endpoint: SIPEndpoint, transport: SIPTransportProtocol, connectionID: UInt64, tls: NIOSSLHandler? = nil) {
        self.endpoint = endpoint
        self.transport = transport
        self.connectionID = connectionID
        self.tls = tls
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The certificate was verified against the trust roots in the handshake (a client
        // certificate only if the policy asked for one); the endpoint keeps it for the TU.
        if case .handshakeCompleted = event as? TLSUserEvent, let flow {
            let certificate = tls?.peerCertificate
            endpoint.assumeIsolated { $0.peerVerified(flow, certificate: certificate) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelActive(context: ChannelHandlerContext) {
        if let local = context.channel.localAddress, let remote = context.channel.remoteAddress {
            let flow = SIPFlow(transport: transport, local: local, remote: remote, connectionID: connectionID)
            self.flow = flow
            let channel = context.channel
            endpoint.assumeIsolated { $0.connectionOpened(flow, channel: channel) }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let flow {
            endpoint.assumeIsolated { $0.connectionClosed(flow) }
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let flow else { return }
        switch unwrapInboundIn(data) {
        case .ping:
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "\r\n")), promise: nil)
        case .pong:
            endpoint.assumeIsolated {
                $0.pongReceived(on: flow)
                $0.flowActivityHandler?($0, flow, .heard)
            }
        case .message(let bytes):
            endpoint.assumeIsolated {
                $0.flowActivityHandler?($0, flow, .heard)
                $0.receive(bytes, on: flow)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Framing errors leave the stream unsynchronised; TLS errors end it: close (§18.3).
        if let flow {
            endpoint.assumeIsolated { $0.logStreamError(error, on: flow) }
        }
        context.close(promise: nil)
    }
}

/// First in a stream pipeline: on `Abort` it closes the socket itself, under any TLS handler
/// (whose close would wait for the peer's close_notify). See `SIPEndpoint.abort`.
final class StreamAbortHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    struct Abort {}
    /// What a crash while this connection's bytes are framed or decrypted would name.
    private var crashContext: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if crashContext.isEmpty {
            let remote = context.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
            crashContext = Array("SIP stream bytes from \(remote)".utf8)
        }
        crashContext.withUnsafeBytes { CrashContext.set($0) }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is Abort {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
