public import Logging
public import NIOCore
import NIOPosix
public import NIOSSL
public import NetworkAddress
public import SIP

/// A SIP endpoint: the transports (UDP, TCP, TLS listeners and connections), the transaction
/// layer, and the hand-off to a transaction user.
///
/// The endpoint is an actor whose executor is its event loop: every channel it owns runs on the
/// same loop, so handlers call into it synchronously (`assumeIsolated`) and a transaction user
/// that shares the executor (`SIPUserAgent`) does too. Data flows one way: socket → handler →
/// `receive` → transaction → transaction user.
public actor SIPEndpoint {
    public nonisolated let eventLoop: any EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { eventLoop.executor.asUnownedSerialExecutor() }

    public struct Configuration: Sendable {
        public var timers = SIPTimerSettings.standard
        public var limits = SIPParserLimits.default
        public var tls: SIPTLSSettings?
        /// Interval of RFC 5626 keepalive pings on flows that ask for them, and how long a pong
        /// may take (RFC 5626 §4.4.1: 10 s).
        public var keepAlivePongTimeout: Duration = .seconds(10)
        /// `User-Agent` / `Server` header value.
        public var productName = "symphony-bridge"
        /// Caps and deadlines for inbound stream connections (`ConnectionAdmission`), fitted to
        /// the process's file limit when the endpoint starts.
        public var connectionLimits = ConnectionAdmission.Limits()
        /// The sources that may send requests (`SIPSourceFilter`); nil: anyone.
        public var requestSources: [IPPrefix]?
        /// Server transactions kept per source and in all (`SIPTransactionAdmission`).
        public var transactionLimits = SIPTransactionAdmission.Limits()
        /// The name or address peers reach us at (a core's `[sip] advertise`): the host of our
        /// Via and of a proxy's Record-Route. Nil: the address a listener is bound to.
        public var advertisedHost: String?

        public init() {}
    }

    public nonisolated let configuration: Configuration
    let logger: Logger
    let parser: SIPMessageParser
    private var serverContext: NIOSSLContext?
    /// The same identity without asking clients for a certificate (`listen(…, askForCertificate: false)`).
    private var serverContextWithoutRequest: NIOSSLContext?
    private var clientContext: NIOSSLContext?
    /// The ports our stream listeners are bound to: a Record-Route names the one a flow came in on.
    private var listenerPorts: [SIPTransportProtocol: Set<Int>] = [:]

    // Transports.
    var udpChannels: [any Channel] = []
    /// Set by `shutdown`: nothing is bound again after it.
    var isShutDown = false
    var listeningChannels: [any Channel] = []
    /// Where peers reach us, per transport: the sent-by of our Via headers.
    public private(set) var advertised: [SIPTransportProtocol: SocketAddress] = [:]
    var connections: [UInt64: any Channel] = [:]
    var connectionFlows: [UInt64: SIPFlow] = [:]
    private var nextConnectionID: UInt64 = 1
    var keepAlives: [UInt64: KeepAliveState] = [:]
    /// The verified certificate each TLS peer presented, by connection.
    var peerCertificates: [UInt64: NIOSSLCertificate] = [:]
    /// Outgoing TLS connections waiting for their handshake.
    private var pendingHandshakes: [UInt64: EventLoopPromise<Void>] = [:]
    /// Which inbound stream connections are taken (`SIPEndpoint+Admission.swift`).
    var admission: ConnectionAdmission
    var sourceFilter: SIPSourceFilter?
    var lastAcceptFailureReport = -Double.infinity

    // Transactions.
    var clientTransactions: [SIPTransactionKey: ClientTransactionEntry] = [:]
    var serverTransactions: [SIPTransactionKey: ServerTransactionEntry] = [:]
    var transactionAdmission: SIPTransactionAdmission
    /// Log lines strangers can cause, bounded (`LogBudget`).
    var streamErrorLog = LogBudget()
    var malformedLog = LogBudget()
    var malformedAnswers = AnswerRate(perSecond: 50)

    // Transaction user.
    var requestHandler: RequestHandler?
    var flowFailureHandler: FlowFailureHandler?
    var flowActivityHandler: FlowActivityHandler?

    /// Counters for tests and status.
    public internal(set) var statistics = Statistics()

    public struct Statistics: Sendable, Equatable {
        public var received = 0
        public var malformed = 0
        public var badRequestsAnswered = 0
        public var retransmissionsAbsorbed = 0
        /// New requests refused past the transaction limits (answered 503 or dropped).
        public var transactionsRefused = 0
        /// Requests refused because their source is not allowed (`SIPSourceFilter`).
        public var sourcesRefused = 0
        /// Malformed datagrams left unanswered past the stateless answer rate.
        public var malformedUnanswered = 0
    }

    public init(eventLoop: any EventLoop, configuration: Configuration = Configuration(), logger: Logger = Logger(label: "sip")) throws {
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.logger = logger
        self.parser = SIPMessageParser(limits: configuration.limits)
        self.sourceFilter = configuration.requestSources.map { SIPSourceFilter(allowed: $0) }
        self.transactionAdmission = SIPTransactionAdmission(limits: configuration.transactionLimits)
        self.admission = ConnectionAdmission(limits: configuration.connectionLimits.fitted(toFileLimit: ConnectionAdmission.Limits.processFileLimit))
        if let tls = configuration.tls {
            (serverContext, serverContextWithoutRequest) = try Self.serverContexts(tls)
            clientContext = try tls.makeClientContext()
        }
    }

    /// Replaces the sources that may send requests (a reloaded config); nil: anyone.
    public func setRequestSources(_ sources: [IPPrefix]?) {
        sourceFilter = sources.map { SIPSourceFilter(allowed: $0) }
    }

    /// Sets (or replaces) the TLS identity after start: a gateway has its device certificate
    /// only once it is claimed. New connections and listeners use it; existing ones keep theirs.
    public func useTLS(_ tls: SIPTLSSettings) throws {
        (serverContext, serverContextWithoutRequest) = try Self.serverContexts(tls)
        clientContext = try tls.makeClientContext()
        // Connections we opened with the old identity are not handed out again (`flow(to:)`
        // opens new ones, which present the new certificate); they serve what runs on them.
        staleClientConnections.formUnion(clientConnections)
    }

    private static func serverContexts(_ tls: SIPTLSSettings) throws -> (NIOSSLContext?, NIOSSLContext?) {
        guard tls.privateKey != nil else { return (nil, nil) }
        let asking = try tls.makeServerContext()
        guard tls.clientCertificates != .none else { return (asking, asking) }
        var quiet = tls
        quiet.clientCertificates = .none
        return (asking, try quiet.makeServerContext())
    }

    /// TLS connections this endpoint opened (as a client), and those opened before the last `useTLS`.
    private var clientConnections: Set<UInt64> = []
    private var staleClientConnections: Set<UInt64> = []

    // MARK: Listening

    /// Binds a listener and returns the bound address (port 0 picks a free port). A TLS listener
    /// with `askForCertificate` false never sends a certificate request: clients that are not
    /// devices (liblinphone turns a request into a key-password prompt that stalls the handshake)
    /// connect there and authenticate by digest or token.
    @discardableResult
    public func listen(_ transport: SIPTransportProtocol, on address: SocketAddress, askForCertificate: Bool = true) async throws -> SocketAddress {
        let bound: SocketAddress
        switch transport {
        case .udp:
            let channel = try await DatagramBootstrap(group: eventLoop)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                // Room for a burst (14 channels re-INVITEd at once, a flood): the kernel caps it
                // at net.core.rmem_max.
                .channelOption(.socketOption(.so_rcvbuf), value: 1 << 20)
                // A whole datagram, however large (NIO's default would cut it at 2,048 bytes and
                // a message without Content-Length would pass cut short); the handler copies it
                // into a buffer of its own size.
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: SIPDatagramHandler.receiveCapacity))
                .channelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(SIPDatagramHandler(endpoint: self))
                    }
                }
                .bind(to: address).get()
            udpChannels.append(channel)
            bound = channel.localAddress!
        case .tcp, .tls:
            guard transport == .tcp || serverContext != nil else { throw SIPTransportError.tlsNotConfigured }
            let channel = try await ServerBootstrap(group: eventLoop)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture { try self.configureListener(channel) }
                }
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        // The TLS context of the moment (`useTLS` replaces it: a renewed certificate
                        // serves every connection accepted from then on).
                        let (id, context) = try self.assumeIsolated { endpoint in
                            let id = endpoint.allocateConnectionID()
                            try endpoint.admitConnection(channel, id: id, tls: transport == .tls)
                            return (id, transport == .tls ? (askForCertificate ? endpoint.serverContext : endpoint.serverContextWithoutRequest) : nil)
                        }
                        try Self.configureStream(channel, transport: transport, tls: context.map { NIOSSLServerHandler(context: $0) }, endpoint: self, connectionID: id)
                    }
                }
                .bind(to: address).get()
            listeningChannels.append(channel)
            bound = channel.localAddress!
            if let port = bound.port { listenerPorts[transport, default: []].insert(port) }
        }
        if advertised[transport] == nil { advertised[transport] = bound }
        logger.info("listening", metadata: ["transport": "\(transport)", "address": "\(bound.displayText)"])
        return bound
    }

    nonisolated static func configureStream(
        _ channel: any Channel, transport: SIPTransportProtocol, tls: (any ChannelHandler)?, endpoint: SIPEndpoint, connectionID: UInt64
    ) throws {
        let operations = channel.pipeline.syncOperations
        try operations.addHandler(StreamAbortHandler())
        if let tls { try operations.addHandler(tls) }
        // The decoder refuses anything past the message limit; the handler's own cap is the
        // backstop should a decoder ever wait for more (one limit plus one read).
        let limits = endpoint.configuration.limits
        try operations.addHandler(ByteToMessageHandler(SIPStreamDecoder(limits: limits), maximumBufferSize: limits.maxMessageSize + 65_536))
        try operations.addHandler(SIPStreamHandler(endpoint: endpoint, transport: transport, connectionID: connectionID, tls: tls as? NIOSSLHandler))
    }

    func allocateConnectionID() -> UInt64 {
        defer { nextConnectionID += 1 }
        return nextConnectionID
    }

    /// Closes every listener and connection and cancels every transaction timer.
    /// Requests we sent that have no final response yet.
    public var requestsAwaitingAnswer: Int { clientTransactions.values.count { $0.awaitsFinalResponse } }

    /// Waits until every request we sent has its final response (or its transaction ended), for
    /// at most `limit`: a graceful stop lets the last BYEs, CANCELs and un-REGISTERs finish
    /// before the sockets close, and a peer that does not answer holds the stop no longer.
    public func drain(within limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while requestsAwaitingAnswer > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    public func shutdown() async {
        isShutDown = true
        // Client transactions still waiting for a final response learn that their flow is gone,
        // so that no TU waits forever; finished ones only lose their timers.
        for key in Array(clientTransactions.keys) where clientTransactions[key] != nil {
            let actions = clientTransactions[key]!.machine.transportError()
            applyClient(actions, key: key)
        }
        for entry in clientTransactions.values { entry.timers.values.forEach { $0.cancel() } }
        clientTransactions = [:]
        for entry in serverTransactions.values {
            entry.timers.values.forEach { $0.cancel() }
            entry.abandoned?.cancel()
        }
        serverTransactions = [:]
        transactionAdmission.reset()
        for state in keepAlives.values { state.task?.cancel() }
        keepAlives = [:]
        let channels = udpChannels + listeningChannels + Array(connections.values)
        udpChannels = []
        listeningChannels = []
        for channel in channels { try? await channel.close() }
    }

    // MARK: Connections

    func connectionOpened(_ flow: SIPFlow, channel: any Channel) {
        connections[flow.connectionID] = channel
        connectionFlows[flow.connectionID] = flow
        logger.debug("connection up", metadata: ["flow": "\(flow)"])
    }

    func peerVerified(_ flow: SIPFlow, certificate: NIOSSLCertificate?) {
        admission.handshaken(flow.connectionID)
        if let certificate { peerCertificates[flow.connectionID] = certificate }
        handshakeFinished(flow.connectionID, error: nil)
    }

    /// The certificate the peer of a TLS flow presented and the handshake verified against the
    /// trust roots; nil for other transports and for TLS clients that sent none.
    public func peerCertificate(on flow: SIPFlow) -> NIOSSLCertificate? {
        flow.transport == .tls ? peerCertificates[flow.connectionID] : nil
    }

    /// Closes a stream flow (say, a peer that abuses it); a no-op for UDP.
    public func close(_ flow: SIPFlow) {
        guard flow.transport.isReliable else { return }
        // Not to be handed out again while it closes (`flow(to:)` would reuse it).
        connectionFlows[flow.connectionID] = nil
        connections[flow.connectionID]?.close(promise: nil)
    }

    /// Drops a stream flow at once, with a reset (SO_LINGER 0): what the kernel still holds for it
    /// is discarded. For a flow given up as dead: a graceful close would keep retransmitting its
    /// queue, and a request queued during an outage (an INVITE the caller has long since placed
    /// elsewhere) would reach the peer when the link comes back — a ghost call.
    public func abort(_ flow: SIPFlow) {
        guard flow.transport.isReliable, let channel = connections[flow.connectionID] else { return }
        connectionFlows[flow.connectionID] = nil
        // The close starts below TLS (`StreamAbortHandler`): TLS's own close would first wait
        // up to 5 s for the peer's close_notify, with the socket and its queue still alive.
        let abort: @Sendable () -> Void = { channel.pipeline.fireUserInboundEventTriggered(StreamAbortHandler.Abort()) }
        if let options = channel as? any SocketOptionProvider {
            options.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in abort() }
        } else {
            abort()
        }
    }

    func connectionClosed(_ flow: SIPFlow) {
        clientConnections.remove(flow.connectionID)
        staleClientConnections.remove(flow.connectionID)
        handshakeFinished(flow.connectionID, error: SIPTransportError.connectionClosed)
        connections[flow.connectionID] = nil
        connectionFlows[flow.connectionID] = nil
        peerCertificates[flow.connectionID] = nil
        if let keepAlive = keepAlives.removeValue(forKey: flow.connectionID) {
            keepAlive.task?.cancel()
            flowFailureHandler?(self, flow, "connection closed")
        }
        logger.debug("connection down", metadata: ["flow": "\(flow)"])
        // Transactions waiting on this connection will get no answer over it (§17.1.4).
        transportFailed(on: flow)
    }

    /// Is this flow still usable for sending?
    public func isAlive(_ flow: SIPFlow) -> Bool {
        flow.transport == .udp ? !udpChannels.isEmpty : connections[flow.connectionID] != nil
    }

    /// A flow to `destination`: an existing connection to that address, or a new one (TCP/TLS),
    /// or our UDP socket of the right address family.
    public func flow(to destination: SIPDestination) async throws -> SIPFlow {
        let remote = try await Self.resolve(destination)
        switch destination.transport {
        case .udp:
            guard let channel = udpChannels.first(where: { $0.localAddress?.protocol == remote.protocol }), let local = channel.localAddress else {
                throw SIPTransportError.noListener(.udp)
            }
            return SIPFlow(transport: .udp, local: local, remote: remote, connectionID: 0)
        case .tcp, .tls:
            if let existing = connectionFlows.values.first(where: {
                $0.transport == destination.transport && $0.remote == remote && !staleClientConnections.contains($0.connectionID)
            }) {
                return existing
            }
            return try await connect(destination, remote: remote)
        }
    }

    /// An IP literal needs no lookup; a name is resolved with getaddrinfo on
    /// the shared NIO thread pool, never on the event loop (RFC 3263 SRV/NAPTR lookups are not done yet).
    nonisolated static func resolve(_ destination: SIPDestination) async throws -> SocketAddress {
        // NIO's resolving initializer traps on a port past 16 bits.
        guard (0...65535).contains(destination.port) else { throw SocketAddress.ZoneError.portOutOfRange(destination.port) }
        if let literal = try? SocketAddress(ipAddressWithZone: destination.host, port: destination.port) { return literal }
        return try await NIOThreadPool.singleton.runIfActive {
            try SocketAddress.makeAddressResolvingHost(destination.host, port: destination.port)
        }
    }

    private func connect(_ destination: SIPDestination, remote: SocketAddress) async throws -> SIPFlow {
        let id = allocateConnectionID()
        var tls: (context: NIOSSLContext, serverName: String?)?
        if destination.transport == .tls {
            guard let clientContext else { throw SIPTransportError.tlsNotConfigured }
            let name = destination.serverName ?? destination.host
            // SNI only for names (RFC 6066 §3); without one, NIOSSL verifies the peer's IP
            // address against the certificate's subjectAltName instead.
            let isIP = IPAddressText.isIPv4(name) || IPAddressText.isIPv6(name)
            tls = (clientContext, isIP ? nil : name)
        }
        let transport = destination.transport
        let tlsSettings = tls
        let channel = try await ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = try tlsSettings.map { try NIOSSLClientHandler(context: $0.context, serverHostname: $0.serverName) }
                    try Self.configureStream(channel, transport: transport, tls: handler, endpoint: self, connectionID: id)
                }
            }
            .connect(to: remote).get()
        // A failed TLS handshake closes the channel; `connectionClosed` then fails the
        // transactions on the flow (a transport error for their TU).
        // channelActive registered the connection; if it is gone already, the peer (or a failed
        // TLS handshake) closed it before we could use it.
        guard let flow = connectionFlows[id], channel.isActive else {
            channel.close(promise: nil)
            throw SIPTransportError.connectionClosed
        }
        if transport == .tls { clientConnections.insert(id) }
        if tlsSettings != nil, peerCertificates[id] == nil {
            // Hand out a TLS flow only once the handshake verified the server: a refused
            // certificate is then a connection error, not a failed first request.
            let promise = eventLoop.makePromise(of: Void.self)
            pendingHandshakes[id] = promise
            let timeout = eventLoop.scheduleTask(in: .seconds(5)) { [self] in
                self.assumeIsolated { $0.handshakeFinished(id, error: SIPTransportError.connectionClosed) }
                channel.close(promise: nil)
            }
            defer { timeout.cancel() }
            try await promise.futureResult.get()
        }
        return flow
    }

    func handshakeFinished(_ id: UInt64, error: (any Error)?) {
        guard let promise = pendingHandshakes.removeValue(forKey: id) else { return }
        if let error { promise.fail(error) } else { promise.succeed() }
    }

    // MARK: Sending

    /// Writes a message on a flow, outside any transaction (ACK for 2xx, 2xx retransmissions,
    /// stateless responses).
    public func send(_ message: SIPMessage, on flow: SIPFlow) {
        let bytes = SIPMessageSerializer.serialize(message)
        write(bytes, on: flow)
    }

    func write(_ bytes: ByteBuffer, on flow: SIPFlow) {
        switch flow.transport {
        case .udp:
            writeDatagram(bytes, on: flow)
        case .tcp, .tls:
            guard let channel = connections[flow.connectionID] else {
                logger.notice("flow is gone; message not sent", metadata: ["flow": "\(flow)"])
                transportFailed(on: flow)
                return
            }
            channel.writeAndFlush(bytes, promise: nil)
        }
    }

    /// A Via for a request we send on `transport`: our advertised address, a fresh branch, rport.
    public func makeVia(for transport: SIPTransportProtocol, branch: String = SIPIdentifiers.branch()) -> SIPVia {
        let address = advertised[transport] ?? advertised[.udp]
        return SIPVia(
            transport: transport.viaToken, host: configuration.advertisedHost ?? address?.hostText ?? "127.0.0.1", port: address?.port,
            parameters: [SIPParameter(name: "branch", value: branch), SIPParameter(name: "rport")])
    }

    /// Where a peer on `flow` reaches us (a Record-Route's host and port): the advertised host,
    /// and the port of the listener the flow came in on — a client on the listener that asks for
    /// no certificate comes back there — else the transport's first listener.
    public func advertisedAddress(for flow: SIPFlow) -> (host: String, port: Int) {
        let first = advertised[flow.transport]
        let cameIn = flow.local.port.flatMap { listenerPorts[flow.transport]?.contains($0) == true ? $0 : nil }
        let port = cameIn ?? first?.port ?? flow.transport.defaultPort
        let bound = first ?? flow.local
        let host = configuration.advertisedHost ?? (Self.isWildcard(bound) ? flow.local.hostText : bound.hostText)
        return (host, port)
    }

    private static func isWildcard(_ address: SocketAddress) -> Bool {
        address.hostText == "0.0.0.0" || address.hostText == "::"
    }

    // MARK: Transaction user

    public typealias RequestHandler = @Sendable (isolated SIPEndpoint, SIPIncomingRequest) -> Void
    public typealias FlowFailureHandler = @Sendable (isolated SIPEndpoint, SIPFlow, String) -> Void
    public typealias FlowActivityHandler = @Sendable (isolated SIPEndpoint, SIPFlow, SIPFlowActivity) -> Void

    /// Where new requests (and ACKs for 2xx, and CANCELs) go.
    public func setRequestHandler(_ handler: @escaping RequestHandler) {
        requestHandler = handler
    }

    /// Called when a flow with keepalive fails (no pong in time) or closes (RFC 5626 §4.4.1).
    public func setFlowFailureHandler(_ handler: @escaping FlowFailureHandler) {
        flowFailureHandler = handler
    }

    /// Called for what happens on stream flows: anything arriving (a message, a pong), and a
    /// client transaction that timed out. The cloud uplink's health is made of this.
    public func setFlowActivityHandler(_ handler: @escaping FlowActivityHandler) {
        flowActivityHandler = handler
    }

    /// A single RFC 5626 CRLFCRLF ping on a stream flow, outside the periodic keepalive: its pong
    /// (CRLF) reaches the activity handler as `.heard`.
    public func ping(_ flow: SIPFlow) {
        guard flow.transport.isReliable, connections[flow.connectionID] != nil else { return }
        write(ByteBuffer(string: "\r\n\r\n"), on: flow)
    }

    func logDatagramError(_ error: any Error) {
        logger.debug("UDP socket error", metadata: ["error": "\(error)"])
    }

    func logStreamError(_ error: any Error, on flow: SIPFlow) {
        let (log, heldBack) = streamErrorLog.take(now: Self.monotonicSeconds())
        if heldBack > 0 { logger.notice("\(heldBack) more connections closed after errors in the last minute (not logged one by one)") }
        guard log else { return }
        logger.notice("closing connection after error", metadata: ["flow": "\(flow)", "error": "\(error)"])
    }
}

/// A request handed to the transaction user, with what it needs to answer.
public struct SIPIncomingRequest: Sendable {
    public enum Kind: Sendable, Equatable {
        /// A new request in its own server transaction: answer with `SIPEndpoint.respond`.
        case transaction(SIPTransactionKey)
        /// An ACK for a 2xx (RFC 3261 §13.2.2.4): no transaction, nothing to answer.
        case ackFor2xx
        /// A CANCEL for an INVITE transaction that has not sent a final response; the endpoint
        /// has answered the CANCEL with 200; the TU should answer the INVITE 487 (§9.2).
        case cancel(invite: SIPTransactionKey)
    }

    public var message: SIPMessage
    public var flow: SIPFlow
    public var kind: Kind
}

/// What the activity handler hears about a stream flow.
public enum SIPFlowActivity: Sendable, Equatable {
    /// Something arrived on it: a message, a keepalive pong.
    case heard
    /// A client transaction sent on it got no final answer in time (Timer B/F).
    case transactionTimedOut
}

public enum SIPTransportError: Error, Equatable, Sendable {
    case tlsNotConfigured
    case noListener(SIPTransportProtocol)
    case connectionClosed
    case noTransaction
    /// An inbound connection over a cap (`ConnectionAdmission`).
    case connectionRefused
}
