import PeerTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NetworkAddress
import SIP
import SIPTransport
import SIPUserAgent
import Testing

/// One of the project's user agents on real sockets, with its events recorded for assertions.
final class AgentHarness: @unchecked Sendable {
    let group: MultiThreadedEventLoopGroup
    private let ownsGroup: Bool
    let endpoint: SIPEndpoint
    let agent: SIPUserAgent
    let recorder: EventRecorder
    /// The owner of a back-to-back leg at work: the next incoming call is answered (with the
    /// configured description).
    func answerNextCall() async throws {
        guard case .incomingCall(let handle, _) = try await recorder.wait(for: "an incoming call", { $0.isIncoming }) else { return }
        await agent.answer(handle)
    }

    var addresses: [SIPTransportProtocol: SocketAddress] = [:]

    init(
        transports: [SIPTransportProtocol] = [.udp, .tcp], host: String = "127.0.0.1", tls: SIPTLSSettings? = nil,
        timers: SIPTimerSettings = .standard, keepAlivePongTimeout: Duration = .seconds(10),
        connectionLimits: ConnectionAdmission.Limits = ConnectionAdmission.Limits(), requestSources: [IPPrefix]? = nil,
        sharing shared: MultiThreadedEventLoopGroup? = nil,
        configure: (inout SIPUserAgent.Configuration) -> Void = { _ in }
    ) async throws {
        group = shared ?? MultiThreadedEventLoopGroup(numberOfThreads: 1)
        ownsGroup = shared == nil
        var configuration = SIPEndpoint.Configuration()
        configuration.tls = tls
        configuration.timers = timers
        configuration.keepAlivePongTimeout = keepAlivePongTimeout
        configuration.connectionLimits = connectionLimits
        configuration.requestSources = requestSources
        var logger = Logger(label: "test.sip")
        logger.logLevel = ProcessInfo.processInfo.environment["SIP_TEST_LOG"] != nil ? .trace : .critical
        endpoint = try SIPEndpoint(eventLoop: group.next(), configuration: configuration, logger: logger)
        var agentConfiguration = SIPUserAgent.Configuration()
        agentConfiguration.sessionDescription = (
            "application/sdp",
            "v=0\r\no=symphony 1 1 IN IP4 \(host)\r\ns=-\r\nc=IN IP4 \(host)\r\nt=0 0\r\nm=audio 40000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        )
        configure(&agentConfiguration)
        agent = SIPUserAgent(endpoint: endpoint, configuration: agentConfiguration, logger: logger)
        recorder = EventRecorder()
        await agent.attach()
        for transport in transports {
            addresses[transport] = try await endpoint.listen(transport, on: SocketAddress(ipAddress: host, port: 0))
        }
        let events = agent.events
        let recorder = recorder
        Task { for await event in events { await recorder.record(event) } }
    }

    func port(_ transport: SIPTransportProtocol) -> Int { addresses[transport]!.port! }

    func shutdown() async {
        await endpoint.shutdown()
        if ownsGroup { try? await group.shutdownGracefully() }
    }
}

/// Keeps a user agent's events and lets a test wait for one.
actor EventRecorder {
    private(set) var events: [SIPUserAgentEvent] = []

    func record(_ event: SIPUserAgentEvent) {
        events.append(event)
    }

    /// Waits until an event matching `predicate` has been recorded.
    @discardableResult
    func wait(for description: String, timeout: Duration = .seconds(10), _ predicate: @Sendable (SIPUserAgentEvent) -> Bool) async throws -> SIPUserAgentEvent {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let event = events.first(where: predicate) { return event }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw PeerError("no '\(description)' event within \(timeout); events: \(events)")
    }
}

extension SIPUserAgentEvent {
    var isAnswered: Bool { if case .answered = self { true } else { false } }
    var isConfirmed: Bool { if case .confirmed = self { true } else { false } }
    var isEnded: Bool { if case .ended = self { true } else { false } }
    var isIncoming: Bool { if case .incomingCall = self { true } else { false } }
    var isRinging: Bool { if case .ringing = self { true } else { false } }
    var failedStatus: Int? { if case .failed(_, let status) = self { status } else { nil } }
}

func tlsSettings(_ certificates: TestCertificates, requireClientCertificate: Bool = false) throws -> SIPTLSSettings {
    try SIPTLSSettings(
        certificateFile: certificates.certificateFile, keyFile: certificates.keyFile, caFile: certificates.caFile,
        requireClientCertificate: requireClientCertificate)
}
