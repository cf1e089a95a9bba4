public import Logging
import NIOCore
public import SIP
public import SIPTransport

/// A SIP user agent on an endpoint: places and answers calls (INVITE sessions with their
/// dialogs), registers, and acts as a small registrar. It shares the endpoint's executor (its
/// event loop), so the two call each other synchronously and keep one ordering of events.
public actor SIPUserAgent {
    public nonisolated let endpoint: SIPEndpoint
    public nonisolated var unownedExecutor: UnownedSerialExecutor { endpoint.unownedExecutor }

    public struct Configuration: Sendable {
        /// Our user and domain: From of requests we send, and the identity we answer as.
        public var user = "symphony"
        public var domain = "localhost"
        public var displayName: String?
        /// Credentials for digest challenges we receive (RFC 8760).
        public var credentials: (username: String, password: String)?
        /// Credentials whose user may be left to each call: nil `username` authenticates as the
        /// user the INVITE is from (a gateway's channels, each its own account). Used when
        /// `credentials` is nil.
        public var callerCredentials: DigestCredentials?
        /// A preloaded route for requests outside a dialog (RFC 3261 §8.1.2): an outbound proxy's
        /// `<sips:proxy;lr>`.
        public var preloadedRoute: String?
        /// The registrar role (`SIPRegistrar`); nil: REGISTER is not allowed here (405).
        public var registrar: SIPRegistrar.Settings?
        /// Who decides about incoming calls (`Role`).
        public var role = Role.softphone(answerAfter: .milliseconds(100))
        /// The SDP (or other body) we offer and answer with when the call has none of its own.
        public var sessionDescription: (contentType: String, body: String)?
        /// Calls end with BYE after this long (the product's duration limit); nil for none.
        public var maxCallDuration: Duration?
        /// RFC 4028 session timers: the interval our INVITEs ask for (and what we offer a caller
        /// that supports timers but asked for none); nil asks for none. A session not refreshed
        /// in time ends with BYE, so a peer that vanished frees the call.
        public var sessionExpires: Int?
        /// The smallest interval we accept (Min-SE; RFC 4028 says 90 s, tests use less).
        public var minimumSessionExpires = SIPSessionTimer.floor
        /// How long a back-to-back leg's owner has to answer a mid-call offer before it is refused with 500.
        public var offerAnswerTimeout: Duration = .seconds(8)

        public init() {}
    }

    /// Who decides about the calls an agent receives.
    public enum Role: Sendable, Equatable {
        /// A phone of its own (`sip-agent`, the demo phones, tests): it rings (180) at once,
        /// answers after `answerAfter` (nil: only when told, `answer`), answers mid-call offers
        /// at once with the call's own description (its media never moves), and declines REFER.
        case softphone(answerAfter: Duration?)
        /// One leg of a back-to-back call (the gateway's legacy, cloud and mesh legs): it rings
        /// (`ring`) when its other leg does, answers (`answer`) when the other leg answered,
        /// and reports mid-call offers (`offerReceived`, `offerRequested`) and REFER
        /// (`referReceived`) to its owner, whose answer depends on the media; an offer not
        /// answered within `offerAnswerTimeout` is refused with 500.
        case backToBackLeg

        var ownerDecides: Bool { self == .backToBackLeg }
    }

    public var configuration: Configuration
    let logger: Logger
    let validator: SIPRequestValidator
    var calls: [SIPCallHandle: SIPInviteSession] = [:]
    var callsByDialog: [SIPDialogID: SIPCallHandle] = [:]
    var callsByServerTransaction: [SIPTransactionKey: SIPCallHandle] = [:]
    /// The registrar role, when configured.
    var registrar: SIPRegistrar?
    var digestClient: DigestClient?
    var nextHandle = 1
    private let eventContinuation: AsyncStream<SIPUserAgentEvent>.Continuation
    /// What happens, in order: calls offered, answered, ended; registrations.
    public nonisolated let events: AsyncStream<SIPUserAgentEvent>

    public init(endpoint: SIPEndpoint, configuration: Configuration, logger: Logger = Logger(label: "sip.ua")) {
        self.endpoint = endpoint
        self.configuration = configuration
        self.logger = logger
        self.registrar = configuration.registrar.map(SIPRegistrar.init)
        let methods: [SIPMethod] = [.invite, .ack, .bye, .cancel, .options, .info, .update, .refer]
        validator = SIPRequestValidator(
            allowedMethods: methods + (configuration.registrar != nil ? [.register] : []), supportedExtensions: ["outbound", "path", "gruu", "timer"])
        if let credentials = configuration.credentials {
            digestClient = DigestClient(username: credentials.username, password: credentials.password)
        }
        (events, eventContinuation) = AsyncStream.makeStream(of: SIPUserAgentEvent.self)
    }

    /// Installs this agent as the endpoint's transaction user.
    public func attach() {
        endpoint.assumeIsolated { endpoint in
            endpoint.setRequestHandler { [self] endpoint, request in
                self.assumeIsolated { $0.handle(request) }
            }
        }
    }

    func emit(_ event: SIPUserAgentEvent) {
        logger.info("\(event)")
        eventContinuation.yield(event)
    }

    /// Our Contact for a flow: the advertised address of its transport, else (a client-only
    /// transport, as the TLS flow to the cloud) the flow's own local address, else the UDP one.
    func contact(for flow: SIPFlow, user: String? = nil) -> SIPNameAddress {
        let transport = flow.transport
        let address = endpoint.assumeIsolated { endpoint in
            endpoint.advertised[transport] ?? (flow.local.port.map { $0 > 0 } == true ? flow.local : endpoint.advertised[.udp])
        }
        var uri = SIPURI(secure: transport == .tls, user: user ?? configuration.user, host: address?.hostText ?? "127.0.0.1", port: address?.port)
        if transport == .tcp { uri.parameters.set("transport", "tcp") }
        if transport == .tls, endpoint.assumeIsolated({ $0.advertised[.tls] == nil }) {
            // Reachable only over this flow (RFC 5626 §5.4).
            uri.parameters.set("ob", nil)
        }
        return SIPNameAddress(uri: uri)
    }

    var localAddressOfRecord: SIPNameAddress {
        SIPNameAddress(displayName: configuration.displayName.map { "\"\($0)\"" }, uri: SIPURI(user: configuration.user, host: configuration.domain))
    }

    // MARK: Incoming requests

    func handle(_ incoming: SIPIncomingRequest) {
        let request = incoming.message
        switch incoming.kind {
        case .ackFor2xx:
            receiveACK(request)
            return
        case .cancel(let inviteKey):
            receiveCancel(inviteKey: inviteKey)
            return
        case .transaction(let key):
            if let rejection = validator.check(request) {
                respond(SIPResponseFactory.response(to: request, rejection: rejection, toTag: SIPIdentifiers.tag()), to: key)
                return
            }
            guard let method = request.method else { return }
            // A REGISTER is never in a dialog, whatever tag its To carries (RFC 3261 §10.2).
            if request.to?.tag != nil, method != .register {
                receiveInDialog(request, key: key, flow: incoming.flow)
                return
            }
            switch method {
            case .options:
                respond(optionsResponse(to: request, toTag: SIPIdentifiers.tag()), to: key)
            case .register:
                receiveRegister(request, key: key, flow: incoming.flow)
            case .invite:
                receiveInvite(request, key: key, flow: incoming.flow)
            case .bye, .info, .update:
                respond(SIPResponseFactory.response(to: request, status: 481, toTag: SIPIdentifiers.tag()), to: key)
            default:
                respond(SIPResponseFactory.response(to: request, status: 405, toTag: SIPIdentifiers.tag()), to: key)
            }
        }
    }

    /// 200 to OPTIONS, in or out of a dialog (RFC 3261 §11.2): what we implement and accept.
    func optionsResponse(to request: SIPMessage, toTag: String?) -> SIPMessage {
        var ok = SIPResponseFactory.response(to: request, status: 200, toTag: toTag)
        ok.headers.add(.allow, allowHeader)
        ok.headers.add(.accept, "application/sdp")
        return ok
    }

    var allowHeader: String { validator.allowedMethods.map(\.rawValue).joined(separator: ", ") }

    func respond(_ response: SIPMessage, to key: SIPTransactionKey) {
        endpoint.assumeIsolated { $0.respond(response, to: key) }
    }

    /// Ends everything: BYE for established calls, CANCEL for pending ones, 503 to callers not
    /// answered yet (the agent is going away: not "busy").
    public func hangUpAll() {
        for handle in calls.keys { hangUp(handle, declineStatus: 503) }
    }
}
