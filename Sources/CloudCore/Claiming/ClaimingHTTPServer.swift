import CrashContext
import DeviceTrust
import Foundation
public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import NIOHTTP1
import NIOPosix
public import NIOSSL
import NIOTLS
public import SIPTransport

/// The HTTPS listener for claiming (`ClaimWire`): `POST /v1/claim`, and for devices that present
/// their certificate (the TLS handshake asks for one, optionally, and verifies it against our
/// CA) `POST /v1/renew` and `GET /v1/revoked`. JSON in and out, bodies up to 64 KiB, one request
/// per connection. Thin: the work is `ClaimingService`'s.
///
/// Connections are admitted as the SIP listeners' are (`ConnectionAdmission`, issue 16): capped
/// per address and in all, a TLS handshake within `handshakeTimeout`, and — one claim per
/// connection, answered in well under a second — the whole connection within
/// `firstMessageTimeout`; accept backs off for a second when file descriptors run out.
public final class ClaimingHTTPServer: Sendable {
    public let channel: any Channel
    let admission: NIOLockedValueBox<ConnectionAdmission>
    let logger: Logger

    public static func start(
        service: ClaimingService, tls: NIOSSLContext, address: SocketAddress, group: any EventLoopGroup,
        limits: ConnectionAdmission.Limits = ConnectionAdmission.Limits(maxConnections: 256, maxPerAddress: 16), logger: Logger = Logger(label: "claiming")
    ) async throws -> ClaimingHTTPServer {
        let tls = NIOLockedValueBox(tls)
        let admission = NIOLockedValueBox(ConnectionAdmission(limits: limits.fitted(toFileLimit: ConnectionAdmission.Limits.processFileLimit / 4)))
        let ids = ConnectionIDs()
        let channels = NIOLockedValueBox<[UInt64: any Channel]>([:])
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler()) }
            }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let id = ids.next()
                    try admit(channel, id: id, admission: admission, channels: channels, logger: logger)
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(ClaimingCrashContextHandler())
                    let tlsHandler = NIOSSLServerHandler(context: tls.withLockedValue { $0 })
                    try operations.addHandler(tlsHandler)
                    try operations.addHandler(HandshakeNotifier { admission.withLockedValue { $0.handshaken(id) } })
                    try addHTTPHandlers(to: operations, service: service, tls: tlsHandler)
                }
            }
            .bind(to: address).get()
        return ClaimingHTTPServer(channel: channel, admission: admission, tls: tls, logger: logger)
    }

    /// The TLS context new connections get (the server certificate renewed while running).
    let tls: NIOLockedValueBox<NIOSSLContext>

    public func useTLS(_ context: NIOSSLContext) { tls.withLockedValue { $0 = context } }

    init(channel: any Channel, admission: NIOLockedValueBox<ConnectionAdmission>, tls: NIOLockedValueBox<NIOSSLContext>, logger: Logger) {
        self.tls = tls
        self.channel = channel
        self.admission = admission
        self.logger = logger
    }

    /// Takes or refuses an accepted connection; a taken one gets its deadlines and gives its
    /// place back when it closes.
    private static func admit(
        _ channel: any Channel, id: UInt64, admission: NIOLockedValueBox<ConnectionAdmission>, channels: NIOLockedValueBox<[UInt64: any Channel]>,
        logger: Logger
    ) throws {
        let address = channel.remoteAddress?.ipAddress ?? "?"
        let (verdict, limits) = admission.withLockedValue { ($0.admit(id, from: address, tls: true), $0.limits) }
        guard verdict.accepts else {
            report(admission, logger)
            throw SIPTransportError.connectionRefused
        }
        if case .acceptEvicting(let victim) = verdict {
            channels.withLockedValue { $0[victim] }?.close(mode: .all, promise: nil)
            report(admission, logger)
        }
        channels.withLockedValue { $0[id] = channel }
        let deadlines = [(limits.handshakeTimeout, true), (limits.firstMessageTimeout, false)].map { delay, handshakeOnly in
            channel.eventLoop.scheduleTask(in: TimeAmount(delay)) {
                // One claim per connection: by the first-message time it is over, whatever it said.
                let overdue = admission.withLockedValue { $0.deadlinePassed(id, handshakeOnly: handshakeOnly) }
                guard overdue else { return }
                channel.close(mode: .all, promise: nil)
                report(admission, logger)
            }
        }
        channel.closeFuture.whenComplete { _ in
            // The deadlines hold the channel: cancelled, it is freed at once.
            for deadline in deadlines { deadline.cancel() }
            admission.withLockedValue { $0.closed(id) }
            channels.withLockedValue { $0[id] = nil }
        }
    }

    private static func report(_ admission: NIOLockedValueBox<ConnectionAdmission>, _ logger: Logger) {
        let now = Double(NIODeadline.now().uptimeNanoseconds) / 1e9
        if let text = admission.withLockedValue({ $0.report(now: now) }) { logger.notice("claiming connections: \(text)") }
    }

    /// Open claiming connections (tests, status).
    public var openConnections: Int { admission.withLockedValue { $0.openCount } }

    /// The HTTP part of a claiming connection, after TLS: what the claiming fuzz target drives
    /// with plain bytes.
    public static func addHTTPHandlers(to operations: ChannelPipeline.SynchronousOperations, service: ClaimingService, tls: NIOSSLServerHandler? = nil) throws {
        try operations.configureHTTPServerPipeline(withErrorHandling: true)
        try operations.addHandler(ClaimingHTTPHandler(service: service, tls: tls))
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
    /// The connection's TLS, for the client certificate a device presents (renewal, revocations).
    let tls: NIOSSLServerHandler?
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    var tooLarge = false
    var answered = false

    init(service: ClaimingService, tls: NIOSSLServerHandler?) {
        self.service = service
        self.tls = tls
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

    private func answer(_ head: HTTPRequestHead, source: String) -> (HTTPResponseStatus, [UInt8]) {
        func refusal(_ status: HTTPResponseStatus, _ text: String) -> (HTTPResponseStatus, [UInt8]) { (status, ClaimWire.encode(ClaimRefusal(error: text))) }
        func reply<T: Encodable>(_ result: Result<T, ClaimError>) -> (HTTPResponseStatus, [UInt8]) {
            switch result {
            case .success(let value): return (.ok, ClaimWire.encode(value))
            case .failure(let error): return refusal(HTTPResponseStatus(statusCode: error.httpStatus), error.description)
            }
        }
        let method: HTTPMethod
        switch head.uri {
        case ClaimWire.claimPath, ClaimWire.renewPath: method = .POST
        case ClaimWire.revokedPath: method = .GET
        default: return refusal(.notFound, "no such endpoint; POST \(ClaimWire.claimPath)")
        }
        guard head.method == method else { return refusal(.methodNotAllowed, "use \(method.rawValue)") }
        guard !tooLarge else { return refusal(.payloadTooLarge, "body over 64 KiB") }
        // The device a verified client certificate names, and that certificate's serial.
        let presented = tls?.peerCertificate.flatMap(DeviceCertificateName.certificate)
        let device = presented.flatMap { DeviceCertificateName.deviceName(of: $0) }, serial = presented.map { DeviceCertificateName.serial(of: $0) }
        switch head.uri {
        case ClaimWire.claimPath: return reply(service.claim(body, source: source))
        case ClaimWire.renewPath: return reply(service.renew(body, device: device, serial: serial, source: source))
        default: return reply(service.revocations(device: device, serial: serial, source: source))
        }
    }

    private func write(_ context: ChannelHandlerContext, status: HTTPResponseStatus, json data: [UInt8]) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(data.count))
        headers.add(name: "Connection", value: "close")
        // RFC 9110 §6.6.1: the origin's clock, for a device that checks its own against it.
        headers.add(name: "Date", value: ClockCheck.httpDate(Date()))
        if status == .tooManyRequests { headers.add(name: "Retry-After", value: "60") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: data)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// Tells the connection's admission that its TLS handshake is done.
final class HandshakeNotifier: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let done: @Sendable () -> Void

    init(_ done: @escaping @Sendable () -> Void) {
        self.done = done
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { done() }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Connection ids for one listener.
final class ConnectionIDs: Sendable {
    private let value = NIOLockedValueBox<UInt64>(0)
    func next() -> UInt64 { value.withLockedValue { $0 += 1; return $0 } }
}
