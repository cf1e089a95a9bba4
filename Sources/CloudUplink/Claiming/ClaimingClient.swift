import BoundedJSON
public import DeviceTrust
import Foundation
public import NIOCore
public import NIOHTTP1
public import NIOPosix
import NIOSSL

/// The gateway's side of the claiming protocol (`ClaimWire`) over HTTPS (certificate
/// verification on: against `caFile` when given, else the system's roots): the claim with a
/// one-time code, and — presenting the device certificate — renewal and the revocation list.
/// One request, one connection; NIO's HTTP/1.1 codec, no HTTP client library.
public enum ClaimingClient {
    /// Claims the gateway: the code and a CSR for its next key.
    public static func claim(
        url: String, code: String, csrPEM: String, caFile: String?, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: Duration = .seconds(15)
    ) async throws(ClaimingError) -> ClaimAnswer {
        let (status, answer) = try await exchange(url: url, method: .POST, body: ClaimWire.encode(ClaimRequest(code: code, csr: csrPEM)), caFile: caFile, identity: nil, group: group, timeout: timeout)
        return try interpret(status: status, body: answer)
    }

    /// A new certificate for the key of `csrPEM`, over the current identity's mutual TLS.
    public static func renew(
        service: String, csrPEM: String, identity: DeviceIdentity, caFile: String?, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: Duration = .seconds(15)
    ) async throws(ClaimingError) -> ClaimAnswer {
        let (status, answer) = try await exchange(
            url: origin(service) + ClaimWire.renewPath, method: .POST, body: ClaimWire.encode(RenewRequest(csr: csrPEM)), caFile: caFile,
            identity: identity, group: group, timeout: timeout)
        return try interpret(status: status, body: answer)
    }

    /// The revocation list, over the identity's mutual TLS.
    public static func revocations(
        service: String, identity: DeviceIdentity, caFile: String?, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: Duration = .seconds(15)
    ) async throws(ClaimingError) -> RevocationList {
        let (status, body) = try await exchange(
            url: origin(service) + ClaimWire.revokedPath, method: .GET, body: [], caFile: caFile, identity: identity, group: group, timeout: timeout)
        guard status == 200 else { throw refusal(status, body) }
        do { return try ClaimWire.decode(RevocationList.self, from: body) } catch { throw .badAnswer("revocation list: \(error)") }
    }

    /// `https://host:port` of a URL (its path, user part and query dropped).
    public static func origin(_ url: String) -> String {
        guard let parsed = URL(string: url), let host = parsed.host else { return url }
        return "https://\(host.contains(":") ? "[\(host)]" : host):\(parsed.port ?? 443)"
    }

    static func exchange(
        url: String, method: HTTPMethod, body: [UInt8], caFile: String?, identity: DeviceIdentity?, group: any EventLoopGroup, timeout: Duration
    ) async throws(ClaimingError) -> (Int, [UInt8]) {
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
        if let identity {
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(identity.certificateFile).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: identity.keyFile, format: .pem))
            } catch {
                throw .unreachable("the device identity cannot be used for TLS: \(error)")
            }
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
            channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)), promise: nil)
            if !body.isEmpty { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
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
        return (status, answer)
    }

    static func refusal(_ status: Int, _ body: [UInt8]) -> ClaimingError {
        let text = (try? ClaimWire.decode(ClaimRefusal.self, from: body))?.error ?? String(decoding: body.prefix(200), as: UTF8.self)
        return .refused(status: status, reason: String(text.prefix(200)))
    }

    /// What an HTTP answer of the claim endpoint means: the claim answer, or the refusal with the
    /// cloud's reason. Every field is checked before anything is stored (the device name goes
    /// into AORs, mDNS names and TLS checks).
    public static func interpret(status: Int, body: [UInt8]) throws(ClaimingError) -> ClaimAnswer {
        guard status == 200 else { throw refusal(status, body) }
        let answer: ClaimAnswer
        do {
            answer = try ClaimWire.decode(ClaimAnswer.self, from: body)
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
