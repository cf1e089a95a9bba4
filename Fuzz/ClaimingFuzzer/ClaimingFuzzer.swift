import CloudCore
import CloudUplink
import Crypto
import FuzzDriver
import Foundation
import Glibc
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOSSL

// Claiming, both ends (`make fuzz`):
// - requests: bytes as a client would send them after TLS, through the core's HTTP pipeline and
//   claiming handler to the service (JSON, CSR parsing and signing, the code redeemed in a real
//   SQLite directory). The fuzzer writes the request from fields (method, path, headers, a JSON
//   body whose code may be the valid one and whose CSR may be a real one), or raw;
// - answers: bytes as a claim server would answer, through NIO's HTTP client codec and the
//   gateway's response collector to `ClaimingClient.interpret`, and for an accepted answer the
//   certificate and CA PEM as the gateway will load them.
// Checked: nothing traps; a request is answered at most once with a status the handler knows.

private enum Fixture {
    static let directory: Directory = {
        let directory = try! Directory(path: nil, realm: "symphony")
        try! directory.createCompany("acme")
        try! directory.createProject("hq", company: "acme")
        try! directory.createSite("lobby", company: "acme", project: "hq")
        try! directory.createDevice("gw1", site: "lobby")
        return directory
    }()
    static let scratch = NSTemporaryDirectory() + "/claiming-fuzzer-\(getpid())"
    static let authority = try! DeviceCertificateAuthority.loadOrCreate(certificateFile: scratch + "/ca.pem", keyFile: scratch + "/ca-key.pem")
    static let service: ClaimingService = {
        var logger = Logger(label: "fuzz")
        logger.logLevel = .critical
        return ClaimingService(
            directory: directory, authority: authority, validDays: 825, sipServer: "sips:127.0.0.1:5061", domain: "symphony.local",
            attemptsPerMinute: 1_000_000_000, logger: logger)
    }()
    static let csr = try! DeviceIdentity.request(for: P256.Signing.PrivateKey(), hint: "gw1")
    static let methods = ["POST", "GET", "PUT", "POST ", "", "P\u{0}ST"]
    static let paths = ["/v1/claim", "/v1/renew", "/v1/revoked", "/", "/v1/claim/", "*", "/v1/claim?x=1", String(repeating: "/a", count: 600)]
    static let lengths = ["0", "-1", "99999999999999999999", "65536", "65537", "1e3", " 12", ""]
}

private func request(_ input: inout FuzzInput) -> [UInt8] {
    if input.byte() % 5 == 0 { return input.rest() }
    var body: String
    switch input.byte() % 4 {
    case 0:
        let code = input.bool() ? (try? Fixture.directory.createClaimingCode(device: "gw1", lifetime: input.bool() ? 600 : -1)) ?? "X" : input.text(max: 40)
        let csr = input.bool() ? Fixture.csr : input.text(max: 400)
        body = String(decoding: (try? JSONSerialization.data(withJSONObject: ["code": code, "csr": csr])) ?? Data(), as: UTF8.self)
    case 1: body = "{\"code\": \(input.text(max: 20)), \"csr\": [\(input.text(max: 40))]}"
    case 2: body = String(repeating: "[", count: input.int(in: 0...5000))
    default: body = input.text(max: 600)
    }
    var head = "\(input.pick(Fixture.methods)) \(input.pick(Fixture.paths)) HTTP/1.1\r\nHost: core\r\n"
    switch input.byte() % 4 {
    case 0: head += "Content-Length: \(body.utf8.count)\r\n"
    case 1: head += "Content-Length: \(input.pick(Fixture.lengths))\r\n"
    case 2: head += "Transfer-Encoding: chunked\r\n"; body = String(body.utf8.count, radix: 16) + "\r\n" + body + "\r\n0\r\n\r\n"
    default: break
    }
    for _ in 0..<input.int(in: 0...3) { head += "\(input.text(max: 20)): \(input.text(max: 40))\r\n" }
    return Array((head + "\r\n" + body).utf8) + input.data(max: 200)
}

private func answer(_ input: inout FuzzInput) -> [UInt8] {
    if input.byte() % 5 == 0 { return input.rest() }
    var json: [String: Any] = [:]
    for key in ["device", "certificate", "ca", "sip_server", "domain"] where input.byte() % 8 != 0 {
        switch input.byte() % 5 {
        case 0: json[key] = key == "certificate" || key == "ca" ? Fixture.authority.pem : "gw1"
        case 1: json[key] = input.int(in: -5...5)
        case 2: json[key] = [input.text(max: 10)]
        default: json[key] = input.text(max: 200)
        }
    }
    let body = (try? JSONSerialization.data(withJSONObject: json)) ?? Data()
    let status = input.pick([200, 403, 410, 429, 500, 0, 99, 999, input.int(in: 0...1000)])
    var head = "HTTP/1.1 \(status) X\r\n"
    head += input.bool() ? "Content-Length: \(body.count)\r\n" : "Content-Length: \(input.pick(Fixture.lengths))\r\n"
    return Array((head + "\r\n").utf8) + Array(body) + input.data(max: 100)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    if input.bool() {
        let channel = EmbeddedChannel()
        try! ClaimingHTTPServer.addHTTPHandlers(to: channel.pipeline.syncOperations, service: Fixture.service)
        _ = try? channel.writeInbound(ByteBuffer(bytes: request(&input)))
        var written = ByteBuffer()
        while let part = try? channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(var bytes) = part { written.writeBuffer(&bytes) }
        }
        let text = String(buffer: written)
        // One claim per connection: NIO's error handler may still answer a broken pipelined
        // request with 400, but the claiming handler answers once.
        let statuses = text.components(separatedBy: "HTTP/1.1 ").dropFirst().compactMap { Int($0.prefix(3)) }
        FuzzTrace.note("answered \(statuses)")
        precondition(statuses.filter { $0 != 400 }.count <= 1, "answered \(statuses)")
        for status in statuses {
            precondition([200, 400, 403, 404, 405, 410, 413, 429, 500].contains(status), "unexpected status \(status)")
        }
        _ = try? channel.finish(acceptAlreadyClosed: true)
    } else {
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: (Int, [UInt8]).self)
        try! channel.pipeline.syncOperations.addHTTPClientHandlers()
        try! channel.pipeline.syncOperations.addHandler(ResponseCollector(promise))
        // The decoder takes a response only to a request it saw go out.
        _ = try? channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/v1/claim")))
        _ = try? channel.writeOutbound(HTTPClientRequestPart.end(nil))
        while (try? channel.readOutbound(as: IOData.self)) != nil {}
        _ = try? channel.writeInbound(ByteBuffer(bytes: answer(&input)))
        _ = try? channel.finish(acceptAlreadyClosed: true)
        promise.fail(ClaimingError.unreachable("fuzz: no answer"))  // (ignored when already completed)
        // The embedded loop has completed the future by now.
        let box = ResultBox()
        promise.futureResult.whenSuccess { box.value = $0 }
        let collected = box.value
        if let (status, body) = collected {
            do {
                _ = try ClaimingClient.interpret(status: status, body: body)
                FuzzTrace.note("answer \(status) taken")
            } catch {
                FuzzTrace.note("answer \(status): \(error)")
            }
        }
        if let (status, body) = collected, let claim = try? ClaimingClient.interpret(status: status, body: body) {
            precondition(DeviceIdentity.isDeviceName(claim.device), "a claim answer with a bad device name was taken")
            _ = try? NIOSSLCertificateLoading.load(claim.certificate)
            _ = try? NIOSSLCertificateLoading.load(claim.ca)
        }
    }
    return 0
}

private final class ResultBox: @unchecked Sendable {
    var value: (Int, [UInt8])?
}

/// The gateway loads the stored PEMs with NIOSSL when it starts TLS.
private enum NIOSSLCertificateLoading {
    static func load(_ pem: String) throws -> [NIOSSLCertificate] { try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)) }
}

@main
enum FuzzMain {
    static func main() { exit(runFuzzTarget(fuzzOneInput)) }
}
