public import Logging
import Media
public import NIOCore
public import SIP
public import SIPTransport
public import SIPUserAgent

/// A built-in phone for `make run`'s demo calls: the project's own SIP user agent with a tone
/// stream. As a legacy station it listens on plain UDP and speaks G.722; as a cloud client it
/// registers at the core over TLS with digest and speaks Opus over SDES-SRTP. It answers every
/// call at once and sends its tone; what it hears is measured (`DemoToneStream`).
public actor DemoPhone {
    public nonisolated let agent: SIPUserAgent
    public nonisolated var unownedExecutor: UnownedSerialExecutor { agent.endpoint.unownedExecutor }

    public enum Role: Sendable {
        case legacyStation(listen: SocketAddress)
        case cloudClient(server: SIPDestination, caFile: String, user: String, password: String, domain: String)
    }

    public struct Measurement: Sendable {
        public var frequency: Double
        public var levelDBFS: Double
        public var seconds: Double

        /// The tone arrived: the frequency within 3 % and louder than -30 dBFS.
        public func heard(_ expected: Double) -> Bool { abs(frequency - expected) < expected * 0.03 && levelDBFS > -30 }
    }

    let policy: SDPAudioPolicy
    let host: String
    let frequency: Double
    let group: any EventLoopGroup
    let logger: Logger
    private var streams: [SIPCallHandle: DemoToneStream] = [:]
    private var offers: [SIPCallHandle: SDPSession] = [:]
    private var answered: Set<SIPCallHandle> = []
    private var ended: Set<SIPCallHandle> = []
    public private(set) var incoming: [SIPCallHandle] = []
    private var lastMeasurement: [SIPCallHandle: Measurement] = [:]

    init(agent: SIPUserAgent, policy: SDPAudioPolicy, host: String, frequency: Double, group: any EventLoopGroup, logger: Logger) {
        self.agent = agent
        self.policy = policy
        self.host = host
        self.frequency = frequency
        self.group = group
        self.logger = logger
    }

    public static func start(_ role: Role, frequency: Double, group: any EventLoopGroup, logger: Logger) async throws -> DemoPhone {
        let loop = group.next()
        var agentConfiguration = SIPUserAgent.Configuration()
        agentConfiguration.role = .softphone(answerAfter: nil)
        let phone: DemoPhone
        switch role {
        case .legacyStation(let listen):
            let endpoint = try SIPEndpoint(eventLoop: loop, logger: logger)
            let bound = try await endpoint.listen(.udp, on: listen)
            agentConfiguration.user = "door"
            agentConfiguration.domain = bound.ipAddress ?? "127.0.0.1"
            let agent = SIPUserAgent(endpoint: endpoint, configuration: agentConfiguration, logger: logger)
            phone = DemoPhone(agent: agent, policy: SDPAudioPolicy(codecs: [.g722, .pcma, .pcmu], srtp: .off, rtcpMux: false),
                              host: bound.ipAddress ?? "127.0.0.1", frequency: frequency, group: group, logger: logger)
        case .cloudClient(let server, let caFile, let user, let password, let domain):
            var endpointConfiguration = SIPEndpoint.Configuration()
            endpointConfiguration.tls = SIPTLSSettings(trustingCAFile: caFile)
            let endpoint = try SIPEndpoint(eventLoop: loop, configuration: endpointConfiguration, logger: logger)
            agentConfiguration.user = user
            agentConfiguration.domain = domain
            agentConfiguration.credentials = (user, password)
            let agent = SIPUserAgent(endpoint: endpoint, configuration: agentConfiguration, logger: logger)
            phone = DemoPhone(agent: agent, policy: SDPAudioPolicy(codecs: [.opus, .g722, .pcma, .pcmu], srtp: .required,
                                                                   cryptoSuites: [("AES_CM_128_HMAC_SHA1_80", 30)]),
                              host: "127.0.0.1", frequency: frequency, group: group, logger: logger)
            await agent.attach()
            let status = try await agent.register(at: server, expires: 3600)
            guard (200...299).contains(status) else { throw DemoError("registration of \(user) at \(server) failed with \(status)") }
        }
        await phone.agent.attach()
        await phone.listen()
        return phone
    }

    private func listen() {
        Task { [self] in
            for await event in agent.events { await self.handle(event) }
        }
    }

    private func handle(_ event: SIPUserAgentEvent) async {
        switch event {
        case .incomingCall(let handle, let call):
            incoming.append(handle)
            await answer(handle, offer: call.offer)
        case .answered(let handle, let answer, _):
            answered.insert(handle)
            if let offer = offers.removeValue(forKey: handle) { await startOutgoing(handle, offer: offer, answer: answer) }
        case .ended(let handle, _):
            if let stream = streams.removeValue(forKey: handle) {
                let m = await stream.measurement()
                lastMeasurement[handle] = Measurement(frequency: m.frequency, levelDBFS: m.levelDBFS, seconds: m.seconds)
                await stream.stop()
            }
            ended.insert(handle)
        default:
            return
        }
    }

    private func answer(_ handle: SIPCallHandle, offer body: SIPMessageBody?) async {
        guard let body, let offer = try? SDPParser.parse(body.text) else {
            on { $0.reject(handle, status: 488) }
            return
        }
        do {
            let stream = try await DemoToneStream.open(host: host, frequency: frequency, group: group)
            let (answer, negotiated) = try SDPOfferAnswer.answer(
                offer: offer, policy: policy, address: host, port: stream.port, sessionID: "1", makeKey: ChannelRouter.makeKey)
            try await stream.start(try MediaLegMapping.configuration(negotiated))
            streams[handle] = stream
            on { $0.answer(handle, body: SIPMessageBody(contentType: "application/sdp", text: answer.serialized)) }
        } catch {
            logger.warning("demo phone cannot answer: \(error)")
            on { $0.reject(handle, status: 488) }
        }
    }

    /// Calls `target` through `destination` with our offer.
    public func call(_ target: SIPURI, via destination: SIPDestination) async throws -> SIPCallHandle {
        let stream = try await DemoToneStream.open(host: host, frequency: frequency, group: group)
        let offer = SDPOfferAnswer.makeOffer(policy: policy, address: host, port: stream.port, sessionID: "2", makeKey: ChannelRouter.makeKey)
        let handle = try await agent.call(target, via: destination, body: SIPMessageBody(contentType: "application/sdp", text: offer.serialized))
        streams[handle] = stream
        offers[handle] = offer
        return handle
    }

    private func startOutgoing(_ handle: SIPCallHandle, offer: SDPSession, answer body: SIPMessageBody?) async {
        guard let stream = streams[handle], let body else { return }
        do {
            let negotiated = try SDPOfferAnswer.negotiate(offer: offer, answer: try SDPParser.parse(body.text))
            try await stream.start(try MediaLegMapping.configuration(negotiated))
        } catch {
            logger.warning("demo phone cannot use the answer: \(error)")
            on { $0.hangUp(handle) }
        }
    }

    public func isAnswered(_ handle: SIPCallHandle) -> Bool { answered.contains(handle) }
    public func hasEnded(_ handle: SIPCallHandle) -> Bool { ended.contains(handle) }

    /// What the call has heard so far (or heard, once it ended).
    public func measurement(_ handle: SIPCallHandle) async -> Measurement? {
        if let stream = streams[handle] {
            let m = await stream.measurement()
            return Measurement(frequency: m.frequency, levelDBFS: m.levelDBFS, seconds: m.seconds)
        }
        return lastMeasurement[handle]
    }

    public func hangUp(_ handle: SIPCallHandle) {
        on { $0.hangUp(handle) }
    }

    func on<T: Sendable>(_ body: (isolated SIPUserAgent) -> T) -> T { agent.assumeIsolated(body) }
}

public struct DemoError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
