import BoundedJSON
import Foundation
public import NIOCore
public import NIOHTTP1
public import NIOPosix
import NIOSSL

/// Claims the gateway: POSTs the claiming code and a CSR to the cloud's claiming endpoint over
/// HTTPS (certificate verification on: against `caFile` when given, else the system's roots) and
/// returns the answer. One request, one connection; NIO's HTTP/1.1 codec, no HTTP client library.
public enum ClaimingClient {
    public static func claim(
        url: String, code: String, csrPEM: String, caFile: String?, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: Duration = .seconds(15)
    ) async throws(ClaimingError) -> ClaimAnswer {
        guard let parsed = URL(string: url), parsed.scheme == "https", let host = parsed.host else {
            throw .unreachable("claim_url is not an https URL")
        }
        let port = parsed.port ?? 443
        // Errors (logged, and in the retained `cloud` topic) name the server only: a URL may
        // carry credentials or a token in its user part or query.
        let shown = "https://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        guard (1...65535).contains(port) else { throw .unreachable("claim_url \(shown): port \(port) is outside 1–65535") }
        let path = parsed.path.isEmpty ? "/" : parsed.path
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let caFile { tls.trustRoots = .file(caFile) }
        let body: [UInt8]
        do {
            body = Array(try JSONSerialization.data(withJSONObject: ["code": code, "csr": csrPEM]))
        } catch {
            throw .unreachable("cannot encode the request")
        }
        let (status, answer): (Int, [UInt8])
        let loop = group.next()
        let response = loop.makePromise(of: (Int, [UInt8]).self)
        // The whole exchange — connect, handshake, request, answer — has `timeout`: a server
        // that accepts and then says nothing must not hold the claim (and the gateway's cloud
        // side) forever.
        let deadline = loop.scheduleTask(in: TimeAmount(timeout)) {
            response.fail(ClaimingError.unreachable("\(shown): no answer within \(timeout)"))
        }
        var connected: (any Channel)?
        do {
            let context = try NIOSSLContext(configuration: tls)
            let isIP = (try? SocketAddress(ipAddress: host, port: port)) != nil  // port checked above
            let channel = try await ClientBootstrap(group: loop)
                .connectTimeout(TimeAmount(timeout))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let operations = channel.pipeline.syncOperations
                        try operations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: isIP ? nil : host))
                        try operations.addHTTPClientHandlers()
                        try operations.addHandler(ResponseCollector(response))
                    }
                }
                .connect(host: host, port: port).get()
            connected = channel
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: host)
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(body.count))
            headers.add(name: "Connection", value: "close")
            channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)), promise: nil)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            (status, answer) = try await response.futureResult.get()
            deadline.cancel()
            try? await channel.close()
        } catch {
            // Every way out completes the promise (NIO reports a promise left pending).
            deadline.cancel()
            response.fail(error)
            try? await connected?.close()
            if let error = error as? ClaimingError { throw error }
            throw .unreachable("\(shown): \(error)")
        }
        return try interpret(status: status, body: answer)
    }

    /// What an HTTP answer of the claim endpoint means: the claim answer, or the refusal with the
    /// cloud's reason. Every field is checked before anything is stored (the device name goes
    /// into AORs, mDNS names and TLS checks).
    public static func interpret(status: Int, body: [UInt8]) throws(ClaimingError) -> ClaimAnswer {
        guard status == 200 else {
            let reason = (try? BoundedJSON.object(from: Data(body))) as? [String: Any]
            let text = reason?["error"] as? String ?? String(decoding: body.prefix(200), as: UTF8.self)
            throw .refused(status: status, reason: String(text.prefix(200)))
        }
        let answer: ClaimAnswer
        do {
            answer = try BoundedJSON.decode(ClaimAnswer.self, from: Data(body))
        } catch {
            throw .badAnswer("\(error)")
        }
        guard DeviceIdentity.isDeviceName(answer.device) else { throw .badAnswer("the cloud named the device \"\(answer.device.prefix(80))\", not a device name") }
        return answer
    }
}

/// Collects one HTTP response (status and body) and fulfils the promise with it; a connection
/// that ends first, or an error, fails it.
public final class ResponseCollector: ChannelInboundHandler {
    public typealias InboundIn = HTTPClientResponsePart

    private var status = 0
    private var body: [UInt8] = []
    private let promise: EventLoopPromise<(Int, [UInt8])>
    /// A claim answer is a certificate chain and a few names: a few KiB. More is not an answer.
    static let maxBody = 256 * 1024

    public init(_ promise: EventLoopPromise<(Int, [UInt8])>) {
        self.promise = promise
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(var buffer):
            guard body.count + buffer.readableBytes <= Self.maxBody else {
                promise.fail(ClaimingError.badAnswer("the answer is larger than \(Self.maxBody) bytes"))
                context.close(promise: nil)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end: promise.succeed((status, body))
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ClaimingError.unreachable("the connection closed before an answer"))
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
