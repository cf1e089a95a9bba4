import ArgumentParser
import Dispatch
import Logging
import NIOCore
import NIOPosix
import SIP
import SIPTransport
import SIPUserAgent
import Synchronization

/// `symphony-bridge sip-agent`: the project's SIP user agent as a standalone service — answers
/// OPTIONS, acts as a digest-authenticating registrar, answers calls (ring, then 200 with a
/// G.722 offer) and ends them on BYE. Until the gateway daemon exists this is what `make run`
/// starts; it stays useful to integrators as a SIP reachability check.
struct SIPAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sip-agent",
        abstract: "Run the SIP user agent: OPTIONS, digest registrar, auto-answering calls."
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "UDP and TCP port (0 disables).")
    var port = 5060

    @Option(help: "TLS port (needs --certificate, --key and --ca; 0 disables).")
    var tlsPort = 5061

    func validate() throws {
        for (name, value) in [("--port", port), ("--tls-port", tlsPort)] where !(0...65535).contains(value) {
            throw ValidationError("\(name): \(value) is not a port (0–65535)")
        }
    }

    @Option(help: "PEM certificate chain for TLS.")
    var certificate: String?

    @Option(help: "PEM private key for TLS.")
    var key: String?

    @Option(help: "PEM CA file whose certificates peers must present when --require-client-certificate.")
    var ca: String?

    @Flag(help: "Require TLS clients to present a certificate from --ca (mutual TLS).")
    var requireClientCertificate = false

    @Option(name: .customLong("registrar-user"), help: "USER:PASSWORD allowed to REGISTER (repeatable). Without any, REGISTER is open.")
    var registrarUsers: [String] = []

    @Option(help: "Digest algorithms the registrar challenges with, preferred first (RFC 8760): SHA-256, MD5.")
    var digest = "SHA-256,MD5"

    @Option(help: "Answer incoming calls after this many milliseconds (-1: ring only).")
    var answerAfterMs = 500

    @Option(help: "End calls after this many seconds (the product's limit is 600).")
    var maxCallSeconds = 600

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel = "info"

    func run() async throws {
        var logger = Logger(label: "symphony-bridge.sip-agent")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var endpointConfiguration = SIPEndpoint.Configuration()
        if tlsPort != 0, let certificate, let key, let ca {
            endpointConfiguration.tls = try SIPTLSSettings(
                certificateFile: certificate, keyFile: key, caFile: ca, requireClientCertificate: requireClientCertificate)
        }
        let endpoint = try SIPEndpoint(eventLoop: group.next(), configuration: endpointConfiguration, logger: logger)
        var agentConfiguration = SIPUserAgent.Configuration()
        agentConfiguration.user = "agent"
        agentConfiguration.domain = host
        agentConfiguration.role = .softphone(answerAfter: answerAfterMs < 0 ? nil : .milliseconds(answerAfterMs))
        agentConfiguration.maxCallDuration = .seconds(maxCallSeconds)
        agentConfiguration.sessionDescription = (
            "application/sdp",
            "v=0\r\no=symphony 1 1 IN IP4 \(host)\r\ns=symphony-bridge\r\nc=IN IP4 \(host)\r\nt=0 0\r\nm=audio 40000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
        )
        // An open registrar unless users are given (bounded: `SIPRegistrar.Settings`).
        var registrar = SIPRegistrar.Settings()
        if !registrarUsers.isEmpty {
            var users: [String: String] = [:]
            for entry in registrarUsers {
                let parts = entry.split(separator: ":", maxSplits: 1)
                guard parts.count == 2 else { throw ValidationError("--registrar-user takes USER:PASSWORD, not '\(entry)'") }
                users[String(parts[0])] = String(parts[1])
            }
            registrar.users = users
            registrar.algorithms = try digest.split(separator: ",").map { name in
                guard let algorithm = DigestAlgorithm(parameter: String(name.filter { $0 != " " })) else {
                    throw ValidationError("--digest: unknown algorithm '\(name)' (SHA-256, MD5, SHA-256-sess, MD5-sess)")
                }
                return algorithm
            }
        }
        agentConfiguration.registrar = registrar
        let agent = SIPUserAgent(endpoint: endpoint, configuration: agentConfiguration, logger: logger)
        await agent.attach()
        if port != 0 {
            try await endpoint.listen(.udp, on: SocketAddress(ipAddress: host, port: port))
            try await endpoint.listen(.tcp, on: SocketAddress(ipAddress: host, port: port))
        }
        if endpointConfiguration.tls != nil {
            try await endpoint.listen(.tls, on: SocketAddress(ipAddress: host, port: tlsPort))
        }
        logger.notice("sip-agent ready", metadata: ["host": "\(host)", "port": "\(port)", "tls-port": "\(endpointConfiguration.tls != nil ? tlsPort : 0)"])
        await waitForTerminationSignal()
        logger.notice("shutting down: ending calls")
        await agent.hangUpAll()
        try await Task.sleep(for: .milliseconds(300))
        await endpoint.shutdown()
        try await group.shutdownGracefully()
    }
}

/// Returns when SIGINT or SIGTERM arrives.
func waitForTerminationSignal() async {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let once = ResumeOnce(continuation)
        for source in sources {
            source.setEventHandler { once.resume() }
            source.resume()
        }
    }
    sources.forEach { $0.cancel() }
}

/// Resumes a continuation once, from whichever signal handler comes first.
final class ResumeOnce: Sendable {
    private let continuation: Mutex<CheckedContinuation<Void, Never>?>

    init(_ continuation: CheckedContinuation<Void, Never>) {
        self.continuation = Mutex(continuation)
    }

    func resume() {
        continuation.withLock { stored in
            stored?.resume()
            stored = nil
        }
    }
}
