import CrashContext
import Foundation
import Logging
public import NIOCore
import NIOHTTP1
import NIOPosix
public import NIOSSL

/// The HTTPS listener for claiming: one route, `POST /v1/claim`, JSON in and out, bodies up to
/// 64 KiB, one request per connection. Thin: the work is `ClaimingService`'s.
public final class ClaimingHTTPServer: Sendable {
    public let channel: any Channel

    public static func start(
        service: ClaimingService, tls: NIOSSLContext, address: SocketAddress, group: any EventLoopGroup
    ) async throws -> ClaimingHTTPServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(ClaimingCrashContextHandler())
                    try operations.addHandler(NIOSSLServerHandler(context: tls))
                    try addHTTPHandlers(to: operations, service: service)
                }
            }
            .bind(to: address).get()
        return ClaimingHTTPServer(channel: channel)
    }

    init(channel: any Channel) {
        self.channel = channel
    }

    /// The HTTP part of a claiming connection, after TLS: what the claiming fuzz target drives
    /// with plain bytes.
    public static func addHTTPHandlers(to operations: ChannelPipeline.SynchronousOperations, service: ClaimingService) throws {
        try operations.configureHTTPServerPipeline(withErrorHandling: true)
        try operations.addHandler(ClaimingHTTPHandler(service: service))
    }

    public var localAddress: SocketAddress? { channel.localAddress }

    public func shutdown() async {
        try? await channel.close()
    }
}

/// Names the connection whose bytes are handled (TLS, HTTP parsing, the claim) for the line a
/// crash leaves (docs/RELIABILITY.md).
final class ClaimingCrashContextHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private var text: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if text.isEmpty {
            let peer = context.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
            text = Array("claiming HTTPS bytes from \(peer)".utf8)
        }
        text.withUnsafeBytes { CrashContext.set($0) }
        context.fireChannelRead(data)
    }
}

final class ClaimingHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let maxBody = 64 * 1024
    let service: ClaimingService
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    var tooLarge = false
    var answered = false

    init(service: ClaimingService) {
        self.service = service
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
        case .body(var buffer):
            if body.count + buffer.readableBytes > Self.maxBody { tooLarge = true } else { body += buffer.readBytes(length: buffer.readableBytes) ?? [] }
        case .end:
            // One request per connection (the answer says Connection: close): a pipelined
            // second request is not answered, so one connection buys one claim attempt.
            guard let head, !answered else { return }
            answered = true
            let source = context.channel.remoteAddress?.ipAddress ?? "?"
            let (status, json) = answer(head, source: source)
            write(context, status: status, json: json)
        }
    }

    private func answer(_ head: HTTPRequestHead, source: String) -> (HTTPResponseStatus, [String: String]) {
        guard head.uri == "/v1/claim" else { return (.notFound, ["error": "no such endpoint; POST /v1/claim"]) }
        guard head.method == .POST else { return (.methodNotAllowed, ["error": "use POST"]) }
        guard !tooLarge else { return (.payloadTooLarge, ["error": "body over 64 KiB"]) }
        switch service.claim(body, source: source) {
        case .success(let response):
            return (.ok, ["device": response.device, "certificate": response.certificate, "ca": response.ca,
                          "sip_server": response.sipServer, "domain": response.domain])
        case .failure(let error):
            return (HTTPResponseStatus(statusCode: error.httpStatus), ["error": error.description])
        }
    }

    private func write(_ context: ChannelHandlerContext, status: HTTPResponseStatus, json: [String: String]) {
        let data = (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])) ?? Data("{}".utf8)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(data.count))
        headers.add(name: "Connection", value: "close")
        if status == .tooManyRequests { headers.add(name: "Retry-After", value: "60") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: data)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
