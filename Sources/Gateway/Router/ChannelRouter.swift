public import CloudUplink
import CrashContext
public import Foundation
public import Logging
public import Mesh
public import Media
import NIOCore
import SIP
public import SIPTransport
public import SIPUserAgent

/// The channel router: binds a legacy leg to a cloud or mesh leg, one call per channel.
///
/// - legacy → cloud: an INVITE for a channel's number calls the channel's one cloud target over
///   the registered TLS flow, as the channel's AOR (`<device>-ch<n>`);
/// - cloud → legacy: an INVITE for `<device>-ch<n>` rings every legacy target of the channel in
///   parallel; the first to answer gets the call, the others are cancelled (`BridgedCall`);
/// - the mesh fallback (docs/MESH.md): while the cloud is down a legacy call goes to the
///   channel's mesh targets at once; a cloud leg without any provisional answer within
///   `fallback_after_ms` (or failing before one) is cancelled and the call placed on the mesh;
///   mesh targets ring in parallel or as a chain (`MeshRingPlan`); a mesh node calling one of
///   our channel numbers rings its legacy targets as a cloud call would;
/// - media: a legacy RTP leg and a cloud SRTP leg on one media thread with a `MediaBridge`
///   between them (passthrough when both legs agreed on one codec, transcoding otherwise);
///   digits cross as RFC 4733 events, or as SIP INFO for a leg without telephone-event;
/// - every call ends in a record (`GatewayCallRecords`).
///
/// Both user agents, and so the router, run on one event loop: the router calls them
/// synchronously (`assumeIsolated`), and their events reach it in order.
public actor ChannelRouter {
    public nonisolated let legacy: SIPUserAgent
    public nonisolated let cloud: SIPUserAgent
    /// Mesh calls (SIPS with the site CA on the link-local interfaces); nil without `[mesh]`.
    public nonisolated let mesh: SIPUserAgent?
    public nonisolated var unownedExecutor: UnownedSerialExecutor { legacy.endpoint.unownedExecutor }

    /// What the router reports (status topics, tests).
    public enum Event: Sendable, Equatable {
        case channelBusy(channel: Int, direction: BridgedCall.Direction, peer: String)
        case channelConnected(channel: Int, codec: String, overMesh: Bool)
        /// A legacy call left the cloud for the mesh (why: the cloud down, or silent).
        case fellBackToMesh(channel: Int, reason: String)
        case channelIdle(channel: Int, outcome: BridgedCall.Outcome, reason: String)
        case digit(channel: Int, digit: Character, fromLegacy: Bool)
        case refused(status: Int, reason: String)
    }

    private(set) var settings: Settings
    let relay: MediaRelay
    let records: GatewayCallRecords?
    let logger: Logger
    let now: @Sendable () -> Double
    /// Seconds on a monotonic clock, for the calls' timers (`BridgedCall.Timer`).
    let clock: @Sendable () -> Double
    var cloudFlow: SIPFlow?
    var calls: [Int: ActiveCall] = [:]
    var busyChannels: [Int: Int] = [:]
    var legs: [LegKey: (call: Int, branch: Int?)] = [:]
    /// Cloud legs placed for a transfer, until they answer (then they are the call's cloud leg).
    var transferLegs: [SIPCallHandle: Int] = [:]
    private var nextID = 1
    private var started = false
    /// False once the gateway shuts down: new calls get 503.
    private var accepting = true
    private var refusals = RefusalTally()
    private var refusalSummary: Task<Void, Never>?
    let eventContinuation: AsyncStream<Event>.Continuation
    public nonisolated let events: AsyncStream<Event>

    /// Which user agent a leg belongs to.
    enum Side: Hashable, Sendable, CustomStringConvertible {
        case legacy, cloud, mesh
        var origin: CallAdmission.Origin {
            switch self {
            case .legacy: .legacy
            case .cloud: .cloud
            case .mesh: .mesh
            }
        }
        var description: String {
            switch self {
            case .legacy: "legacy"
            case .cloud: "cloud"
            case .mesh: "mesh"
            }
        }
    }

    struct LegKey: Hashable {
        let side: Side
        let handle: SIPCallHandle
    }

    // The mesh, as the gateway tells it.
    var cloudHealth: CloudHealth.State = .down
    /// Who may take part in the mesh (`MeshTrust`): set once the identity is known and with every revocation list.
    var meshTrust = MeshTrust()
    var meshPeers: [MeshPeer] = []
    /// Our link-local address on each mesh interface (no zone).
    var meshAddresses: [String: String] = [:]

    struct ActiveCall {
        var state: BridgedCall
        let channel: BridgeConfiguration.Channel
        /// The leg that called in; a transfer of a cloud caller puts the new cloud leg here.
        var inbound: SIPCallHandle
        let inboundSide: Side
        /// What the caller's INVITE said (identities, flow, offer), as its agent reported it.
        let inboundCall: SIPIncomingCall
        var outboundSide: Side
        var branches: [SIPCallHandle?] = []
        /// Mesh targets placed so far: a connect that completes after its chain step is over
        /// (or the call) is dropped.
        var meshPlacements = 0
        var closedByUs: Set<Int> = []  // branch indices; -1 the inbound leg
        var targets: [String] = []
        var legacyLeg: MediaLegSocket?
        /// The cloud or mesh leg's socket.
        var farLeg: MediaLegSocket?
        /// The interface index a link-local far side is reached through (0: none).
        var farScope: UInt32 = 0
        var inboundAnswer: SIPMessageBody?
        /// The caller's offer and how we answer it (until `inboundAnswerSent`, it may be answered
        /// again with the callee's codec).
        var inboundAnswering: InboundAnswering?
        var inboundAnswerSent = false
        var outboundOffer: SDPSession?
        var inboundLeg: MediaLegConfiguration?
        var bridge: MediaBridgeHandle?
        var bridgedBranch: Int?
        /// The bridge's delegate (it holds it weakly): digits for a leg that takes SIP INFO.
        var digitForwarder: DigitForwarder?
        /// Wall time (for the record); `startedUptime` the router's monotonic clock at the same moment:
        /// later times of the record are the start plus monotonic time elapsed, so that a step of the
        /// wall clock during the call does not make its duration wrong.
        let startedAt: Double
        var startedUptime: Double = 0
        var answeredAt: Double?
        /// The call's record (`GatewayCallRecord.ref`): written at the start, the answer and the end.
        let recordRef = GatewayCallRecord.newRef()
        var peer: String
        var codec: String?
        /// The one wake-up for the call's timers (the earliest of `state.timers`), and when.
        var wakeUp = DeadlineWakeUp()
        /// Legacy → mesh: the targets' plan.
        var ringPlan: MeshRingPlan?
        /// Our mid-call offers (in a 2xx to an offerless re-INVITE) waiting for the answer, per leg.
        var midCallOffers: [MediaLegSide: SDPSession] = [:]
        /// A blind transfer under way (REFER from the cloud leg).
        var transfer: Transfer?
        /// Each outbound branch's session description (its early media or its answer) and
        /// what its callee allows, as the branch's events brought them.
        var outboundAnswers: [Int: SIPMessageBody] = [:]
        var outboundAllows: [Int: SIPAllowedMethods] = [:]
        /// Our description on each bridged leg as it stands (a: legacy, b: cloud or mesh): the
        /// next offer or answer on that leg keeps its session id, address and keys.
        var ourDescriptions: [MediaLegSide: SIPMessageBody] = [:]
        /// A hold relayed toward the station (`ChannelRouter+MidCall.swift`).
        var stationHold = StationHold()

        var direction: BridgedCall.Direction { state.direction }
        var inboundIsLegacy: Bool { inboundSide == .legacy }
        /// The side that is not legacy.
        var farSide: Side { inboundIsLegacy ? outboundSide : inboundSide }
        /// The bridge's side of each leg (a: legacy, b: cloud or mesh).
        var inboundMediaSide: MediaLegSide { inboundIsLegacy ? .a : .b }
        var outboundMediaSide: MediaLegSide { inboundIsLegacy ? .b : .a }
        /// The station's leg once the call is connected.
        var legacyHandle: SIPCallHandle? { inboundIsLegacy ? inbound : state.connectedBranch.flatMap { branches[$0] } }
        /// What the station said it allows: in its INVITE, or in the 2xx of the branch that answered.
        var stationAllows: SIPAllowedMethods? { inboundIsLegacy ? inboundCall.peerAllows : state.connectedBranch.flatMap { outboundAllows[$0] } }
    }

    public init(
        legacy: SIPUserAgent, cloud: SIPUserAgent, mesh: SIPUserAgent? = nil, settings: Settings, relay: MediaRelay, records: GatewayCallRecords?,
        logger: Logger = Logger(label: "router"), now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
        clock: @escaping @Sendable () -> Double = ChannelRouter.uptime
    ) {
        precondition(legacy.endpoint.eventLoop === cloud.endpoint.eventLoop, "the user agents must share one event loop")
        precondition(mesh == nil || mesh!.endpoint.eventLoop === legacy.endpoint.eventLoop, "the user agents must share one event loop")
        self.legacy = legacy
        self.cloud = cloud
        self.mesh = mesh
        self.settings = settings
        self.relay = relay
        self.records = records
        self.logger = logger
        self.now = now
        self.clock = clock
        // Read by the status publisher; without one, only the newest events are kept.
        (events, eventContinuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(1024))
    }

    /// Takes the user agents' calls: handles their events in order until the task is cancelled
    /// (the router's service, when the gateway stops, after `shutdown`).
    public func run() async {
        guard !started else { return }
        started = true
        var agents: [(SIPUserAgent, Side)] = [(legacy, .legacy), (cloud, .cloud)]
        if let mesh { agents.append((mesh, .mesh)) }
        await withDiscardingTaskGroup { group in
            for (agent, side) in agents {
                group.addTask { for await event in agent.events { await self.handle(event, side: side) } }
            }
        }
    }

    func agent(_ side: Side) -> SIPUserAgent {
        switch side {
        case .legacy: legacy
        case .cloud: cloud
        case .mesh: mesh!
        }
    }

    /// The uplink's health: while it is down, legacy calls go to the mesh at once.
    public func setCloudHealth(_ health: CloudHealth.State) {
        cloudHealth = health
    }

    /// The mesh peers discovery knows, and our own link-local address per mesh interface.
    public func setMesh(peers: [MeshPeer]? = nil, addresses: [String: String]? = nil) {
        if let peers { meshPeers = peers }
        if let addresses { meshAddresses = addresses }
    }

    /// Channels with a call over the mesh now (MQTT `mesh` state).
    public var meshCallCount: Int { calls.values.filter { $0.direction.overMesh }.count }

    /// The flow calls to the cloud go over (the registration's), or nil while the uplink is down.
    public func setCloudFlow(_ flow: SIPFlow?) {
        cloudFlow = flow
        // Calls whose flow died with the old connection go on over the new one (issue 16): their
        // BYE must not be dropped for want of a connection (RFC 5626 §5.3).
        if let flow { on(cloud) { $0.adoptFlow(flow) } }
    }

    /// A reloaded config's channel plan and media choices (what can change without a restart).
    /// Calls in progress keep the channel they started with; new calls see the new plan.
    public func update(_ new: Settings) {
        settings.channels = new.channels
        settings.legacyPolicy = new.legacyPolicy
        settings.cloudPolicy = new.cloudPolicy
        settings.meshPolicy = new.meshPolicy
        settings.codecOptions = new.codecOptions
        settings.jitterBufferMax = new.jitterBufferMax
        settings.mediaTimeout = new.mediaTimeout
        settings.relayHoldToStations = new.relayHoldToStations
        settings.accounts.registration = new.accounts.registration
        settings.accounts.trunkAccount = new.accounts.trunkAccount
    }

    /// Who may take part in the mesh: our site, the revoked certificates (`MeshTrust`).
    public func setMeshTrust(_ trust: MeshTrust) {
        meshTrust = trust
    }

    /// The name and domain the cloud gave this gateway when it was claimed (or, for a cloud
    /// without claiming, the configured id and domain).
    public func setIdentity(device: String, domain: String) {
        settings.device = device
        settings.accounts.device = device
        settings.domain = domain
        on(cloud) { $0.configuration.domain = domain }
    }

    /// The media counters of the call on `channel` (legacy leg, cloud or mesh leg), once it is bridged.
    public func mediaCounters(channel: Int) async -> (legacy: MediaLegCounters, far: MediaLegCounters)? {
        guard let id = busyChannels[channel], let bridge = calls[id]?.bridge else { return nil }
        guard let legacy = try? await bridge.counters(.a), let far = try? await bridge.counters(.b) else { return nil }
        return (legacy, far)
    }

    /// Loss and jitter of what the bridged calls receive, over both legs of every call (MQTT `stats`).
    public func mediaStatistics() async -> (expected: UInt64, lost: Int64, jitterMilliseconds: Double, legs: Int) {
        var expected: UInt64 = 0, lost: Int64 = 0, jitter = 0.0, legs = 0
        for call in calls.values {
            guard let bridge = call.bridge else { continue }
            for side in MediaLegSide.allCases {
                guard let figures = try? await bridge.withBridge({ bridge -> (UInt32, Int32, Double) in
                    let statistics = bridge.receiveStatistics(side)
                    let clock = Double(bridge.rtpClockRate(side))
                    return (statistics.expected, statistics.cumulativeLost, Double(statistics.jitter) / clock * 1000)
                }) else { continue }
                expected += UInt64(figures.0)
                lost += Int64(figures.1)
                jitter += figures.2
                legs += 1
            }
        }
        return (expected, lost, legs == 0 ? 0 : jitter / Double(legs), legs)
    }

    /// Channels with a call, for status and tests.
    public var busyChannelIndices: [Int] { busyChannels.keys.sorted() }

    /// Ends every call (shutdown): CANCEL or 503 before an answer, BYE after; a call that comes
    /// in from now on gets 503. The event stream ends after the last call's `channelIdle`.
    public func shutdown() async {
        accepting = false
        for id in calls.keys.sorted() { await abort(id, status: 503, reason: "gateway shutting down") }
        refusalSummary?.cancel()
        summariseRefusals(final: true)  // closes every window: nothing is scheduled again
        eventContinuation.finish()
    }

    /// The gateway gives up on a call: `status` to a caller still waiting, BYE after an answer.
    func abort(_ id: Int, status: Int, reason: String) async {
        guard var call = calls[id] else { return }
        let actions = call.state.abort(status: status, reason: reason)
        calls[id] = call
        await perform(actions, call: id)
    }

    // MARK: Events from the user agents

    func handle(_ event: SIPUserAgentEvent, side: Side) async {
        noteHandling(event, side: side)
        if side == .cloud, let handle = event.callHandle, let id = transferLegs[handle] {
            await transferLegEvent(event, call: id)
            return
        }
        switch event {
        case .incomingCall(let handle, let call):
            await incoming(handle, call, side: side)
        case .trying(let handle):
            await outbound(handle, side: side) { call, branch in
                call.state.outboundTrying(branch)
                return []
            }
        case .ringing(let handle):
            chainTargetRang(handle, side: side)
            await outbound(handle, side: side) { call, branch in call.state.outboundRinging(branch, early: false) }
        case .earlyMedia(let handle, let answer):
            chainTargetRang(handle, side: side)
            await outbound(handle, side: side) { call, branch in
                call.outboundAnswers[branch] = answer
                return call.state.outboundRinging(branch, early: true)
            }
        case .answered(let handle, let answer, let allows):
            let now = clock()
            await outbound(handle, side: side) { call, branch in
                if let answer { call.outboundAnswers[branch] = answer }
                call.outboundAllows[branch] = allows
                return call.state.outboundAnswered(branch, at: now)
            }
        case .failed(let handle, let status):
            if await rerouteOnFailure(handle, side: side, status: status) { return }
            await outbound(handle, side: side) { call, branch in call.state.outboundFailed(branch, status: status) }
        case .ended(let handle, _):
            await ended(handle, side: side)
        case .dtmfInfo(let handle, let body):
            await digitByInfo(handle, side: side, body: body)
        case .offerReceived(let handle, let offer, let method):
            await midCallOffer(handle, side: side, offer: offer, method: method)
        case .offerRequested(let handle):
            midCallOfferRequested(handle, side: side)
        case .answerReceived(let handle, let answer):
            await midCallAnswer(handle, side: side, answer: answer)
        case .referReceived(let handle, let referTo):
            await referReceived(handle, side: side, referTo: referTo)
        case .reinviteRefused(let handle, let status) where side == .legacy:
            await stationRefused(handle, status: status)
        default:
            return
        }
    }

    /// What a crash while this event is handled names (docs/RELIABILITY.md): the event, the
    /// call's Call-ID and where its signalling comes from. Never the SDP.
    private func noteHandling(_ event: SIPUserAgentEvent, side: Side) {
        let name: String
        switch event {
        case .incomingCall(_, let call):
            CrashContext.set("\(side) incoming call from \(call.flow.remote.displayText), Call-ID \(call.callID.prefix(120))")
            return
        case .trying: name = "trying"
        case .ringing: name = "ringing"
        case .earlyMedia: name = "early media"
        case .answered: name = "answer"
        case .confirmed: name = "ACK"
        case .ended: name = "end"
        case .failed(_, let status): name = "failure \(status)"
        case .dtmfInfo: name = "INFO"  // not the digit: door codes stay out
        case .reinvited: name = "re-INVITE"
        case .reinviteRefused(_, let status): name = "re-INVITE refused \(status)"
        case .glare: name = "glare"
        case .offerReceived(_, _, let method): name = "\(method) offer"
        case .offerRequested: name = "offerless re-INVITE"
        case .answerReceived: name = "answer"
        case .referReceived: name = "REFER"
        case .registered, .registrationFailed: name = "registration"
        }
        guard let handle = event.callHandle, let (id, _) = legs[LegKey(side: side, handle: handle)], let call = calls[id] else {
            CrashContext.set("\(side) \(name) event")
            return
        }
        CrashContext.set("\(side) call \(name) on channel \(call.channel.index), from \(call.inboundCall.flow.remote.displayText), Call-ID \(call.inboundCall.callID.prefix(120))")
    }

    private func outbound(
        _ handle: SIPCallHandle, side: Side, _ transition: (inout ActiveCall, Int) -> [BridgedCall.Action]
    ) async {
        guard let (id, branch) = legs[LegKey(side: side, handle: handle)], let branch, var call = calls[id],
            call.outboundSide == side
        else { return }
        let actions = transition(&call, branch)
        calls[id] = call
        await perform(actions, call: id)
    }

    private func ended(_ handle: SIPCallHandle, side: Side) async {
        guard let (id, branch) = legs[LegKey(side: side, handle: handle)], var call = calls[id] else { return }
        if side == .cloud, call.transfer?.transferor == handle {
            // The transferor left before the target answered (RFC 5589 would have it wait): the
            // legacy party stays on the line for the target; `failTransfer` ends the call if
            // the target does not answer.
            legs[LegKey(side: side, handle: handle)] = nil
            calls[id]?.transfer?.transferorGone = true
            return
        }
        let index = branch ?? -1
        guard !call.closedByUs.contains(index) else { return }
        let actions: [BridgedCall.Action]
        if branch == nil {
            call.closedByUs.insert(-1)  // it is gone; nothing more to send it
            actions = call.state.inboundEnded()
        } else if let branch, branch == call.state.connectedBranch {
            call.closedByUs.insert(branch)
            actions = call.state.outboundEnded(branch)
        } else {
            return  // a failed branch: its `.failed` follows
        }
        calls[id] = call
        await perform(actions, call: id)
    }

    // MARK: A new call

    private func incoming(_ handle: SIPCallHandle, _ invite: SIPIncomingCall, side: Side) async {
        let agent = agent(side)
        // Who calls, as logs, records and status topics may show it: no URI password, parameters
        // or headers of the caller's making.
        let caller = invite.from?.sipURI?.identityText ?? invite.from.map { $0.uri.scheme + ":?" } ?? "?"
        let flow = cloudFlow
        var known = CallAdmission.Circumstances(channels: settings.channels, accounts: settings.accounts)
        known.accepting = accepting
        known.busyChannels = Set(busyChannels.keys)
        known.cloudRegistered = flow.map { flowAlive($0) } ?? false
        known.cloudDown = cloudHealth == .down
        known.meshAvailable = mesh != nil
        known.fallbackAfter = DeadlineWakeUp.seconds(settings.fallbackAfter)
        known.mediaTimeout = settings.mediaTimeout.map(DeadlineWakeUp.seconds)
        // A mesh call only from a device of our site whose certificate is not revoked: the
        // handshake proved only that the core's CA signed it (any customer's device).
        if side == .mesh, let mesh {
            let certificate = onEndpoint(mesh.endpoint) { $0.peerCertificate(on: invite.flow) }
            if let refusal = meshTrust.refusal(of: certificate) {
                logger.warning("mesh call refused: the caller is not a device of our site: \(refusal)", metadata: ["from": "\(caller)"])
                refuse(agent, handle, 403, "mesh caller not of our site: \(refusal)")
                // And its connection, a moment later (the 403 first): a peer that renewed its
                // certificate comes back on a new one.
                let (endpoint, flow) = (mesh.endpoint, invite.flow)
                Task {
                    try? await Task.sleep(for: .seconds(1))
                    await endpoint.close(flow)
                }
                return
            }
        }
        let route: CallAdmission.Route
        switch CallAdmission.decide(requestURI: invite.requestURI, toUser: invite.to?.sipURI?.user, caller: caller, origin: side.origin, known) {
        case .refuse(let status, let reason, let attempt):
            refuse(agent, handle, status, reason, record: attempt.map { ($0.channel, GatewayCallRecord.Direction($0.direction), caller, $0.status) })
            return
        case .route(let admitted):
            route = admitted
        }
        let (channel, direction, targets, plan, fallbackReason) = (route.channel, route.direction, route.targets, route.ringPlan, route.meshBecause)
        let id = nextID
        nextID += 1
        let outboundSide: Side = direction == .legacyToCloud ? .cloud : direction == .legacyToMesh ? .mesh : .legacy
        let chain = plan?.mode == .chain
        var call = ActiveCall(
            state: BridgedCall(channel: channel.index, direction: direction, branches: chain ? 1 : targets.count, chain: chain, timing: route.timing), channel: channel,
            inbound: handle, inboundSide: side, inboundCall: invite, outboundSide: outboundSide, startedAt: now(),
            peer: direction.fromLegacy ? targets.joined(separator: ",") : caller)
        call.startedUptime = clock()
        call.targets = targets
        call.branches = Array(repeating: nil, count: targets.count)
        call.ringPlan = plan
        if side == .mesh { call.farScope = invite.flow.local.scopeID }
        calls[id] = call
        record(call)
        busyChannels[channel.index] = id
        legs[LegKey(side: side, handle: handle)] = (id, nil)
        logger.info("call", metadata: ["channel": "\(channel.index)", "direction": "\(direction.rawValue)", "from": "\(caller)", "to": "\(targets.joined(separator: ","))"])
        eventContinuation.yield(.channelBusy(channel: channel.index, direction: direction, peer: call.peer))
        if let fallbackReason {
            logger.notice("cloud down: the call goes to the mesh at once", metadata: ["channel": "\(channel.index)", "why": "\(fallbackReason)"])
            eventContinuation.yield(.fellBackToMesh(channel: channel.index, reason: fallbackReason))
        }

        // Media first: our answer to the caller's offer and our offer to the callees.
        do {
            try await prepareMedia(id, offer: invite.offer)
        } catch {
            logger.warning("call refused: \(error)", metadata: ["channel": "\(channel.index)"])
            await abort(id, status: 488, reason: "\(error)")
            return
        }
        guard let ready = calls[id], ready.state.phase == .routing, ready.outboundOffer != nil else { return }
        calls[id]?.state.begin(at: clock())
        rearm(id)
        switch direction {
        case .legacyToCloud:
            guard let flow else { return await abort(id, status: 503, reason: "the cloud flow is gone") }
            await placeOnCloud(id, flow: flow)
        case .legacyToMesh:
            await placeOnMesh(id)
        case .cloudToLegacy, .meshToLegacy:
            await placeOnLegacy(id)
        }
    }

    private func placeOnCloud(_ id: Int, flow: SIPFlow) async {
        guard let call = calls[id], let offer = call.outboundOffer else { return }
        let channel = call.channel
        let body = SIPMessageBody(contentType: "application/sdp", text: offer.serialized)
        let target = SIPURI(secure: true, user: channel.cloudTarget, host: settings.domain)
        let user = settings.accounts.caller(for: channel)
        let display = CallerIdentity.towardCloud(channel: channel, station: call.inboundCall.from)
        let placed = on(cloud) { $0.call(target, on: flow, from: user, displayName: display, body: body) }
        attach(placed, side: .cloud, call: id, branch: 0)
    }

    /// Rings every legacy target at once. Each branch's connect (a TCP station, a name to
    /// resolve) runs on its own: a station that does not answer its SYN must not hold up the
    /// other branches or the events of other calls (issue 16).
    private func placeOnLegacy(_ id: Int) async {
        guard let call = calls[id], let offer = call.outboundOffer else { return }
        let body = SIPMessageBody(contentType: "application/sdp", text: offer.serialized)
        let display = CallerIdentity.towardStations(call.inboundCall, trusted: call.inboundSide == .cloud)
        for (branch, target) in call.targets.enumerated() {
            guard let (uri, destination) = legacyDestination(target) else {
                await failBranch(id, branch, status: 404)
                continue
            }
            let number = call.channel.number
            Task {
                do {
                    let placed = try await self.legacy.call(uri, via: destination, from: number, displayName: display, body: body)
                    self.attach(placed, side: .legacy, call: id, branch: branch)
                } catch {
                    self.logger.warning("legacy target unreachable: \(error)", metadata: ["channel": "\(call.channel.index)", "target": "\(target)"])
                    await self.failBranch(id, branch, status: 503)
                }
            }
        }
    }

    func attach(_ handle: SIPCallHandle, side: Side, call id: Int, branch: Int) {
        guard calls[id] != nil, calls[id]!.outboundSide == side, branch < calls[id]!.branches.count else {
            // The caller left (or the call moved on) while we were placing this leg.
            on(agent(side)) { $0.hangUp(handle) }
            return
        }
        calls[id]?.branches[branch] = handle
        legs[LegKey(side: side, handle: handle)] = (id, branch)
        if calls[id]?.state.phase != .routing {
            calls[id]?.closedByUs.insert(branch)
            on(agent(side)) { $0.hangUp(handle) }
        }
    }

    func failBranch(_ id: Int, _ branch: Int, status: Int) async {
        if let call = calls[id], call.ringPlan?.mode == .chain, await nextInChain(id, after: status) { return }
        guard var call = calls[id] else { return }
        let actions = call.state.outboundFailed(branch, status: status)
        calls[id] = call
        await perform(actions, call: id)
    }

    /// Refuses a new call. The first refusal of its kind in a minute is logged and recorded; the
    /// rest are counted and summed up when the minute is over (`RefusalTally`).
    private func refuse(
        _ agent: SIPUserAgent, _ handle: SIPCallHandle, _ status: Int, _ reason: String,
        record: (channel: Int, direction: GatewayCallRecord.Direction, caller: String, status: GatewayCallRecord.Status)? = nil
    ) {
        on(agent) { $0.reject(handle, status: status) }
        eventContinuation.yield(.refused(status: status, reason: reason))
        let kind = RefusalTally.Kind(
            status: status, channel: record?.channel, record: record.map { RefusalTally.RecordKind(direction: $0.direction, status: $0.status) })
        let caller = record?.caller ?? ""
        guard refusals.refused(kind, caller: caller, reason: reason, now: clock()) else {
            scheduleRefusalSummary()
            return
        }
        logger.notice("call refused with \(status): \(reason)")
        if let record { recordRefusal(kind, peer: record.caller, reason: "refused with \(status): \(reason)") }
    }

    /// Hands the call's record as it stands to the writer (docs/RELIABILITY.md "No call record lost").
    func record(_ call: ActiveCall, status: GatewayCallRecord.Status = .inProgress, endedAt: Double? = nil, reason: String? = nil) {
        records?.record(GatewayCallRecord(
            ref: call.recordRef, startedAt: call.startedAt, answeredAt: call.answeredAt, endedAt: endedAt, direction: GatewayCallRecord.Direction(call.direction),
            channel: call.channel.index, peer: call.peer, status: status, codec: call.codec, reason: reason))
    }

    /// Now, as the wall time of `call`'s record: its start plus the monotonic time since.
    func recordTime(_ call: ActiveCall) -> Double { call.startedAt + max(0, clock() - call.startedUptime) }

    private func recordRefusal(_ kind: RefusalTally.Kind, peer: String, reason: String) {
        guard let record = kind.record, let channel = kind.channel else { return }
        let time = now()
        records?.record(GatewayCallRecord(
            startedAt: time, answeredAt: nil, endedAt: time, direction: record.direction, channel: channel, peer: peer,
            status: record.status, codec: nil, reason: reason))
    }

    /// One wake-up at the end of the oldest open window of refusals.
    private func scheduleRefusalSummary() {
        guard refusalSummary == nil, let due = refusals.nextDue else { return }
        let delay = max(0, due - clock())
        refusalSummary = Task { [weak self] in
            try? await Task.sleep(for: .seconds(delay))
            await self?.summariseRefusals()
        }
    }

    /// What the minute refused past the first of each kind: one log line and one record each.
    func summariseRefusals(final: Bool = false) {
        refusalSummary = nil
        for summary in refusals.due(now: final ? .infinity : clock()) {
            let what = "refused with \(summary.kind.status) \(summary.more) more time\(summary.more == 1 ? "" : "s") in the last minute"
            logger.notice("calls \(what): \(summary.lastReason)")
            recordRefusal(summary.kind, peer: summary.lastCaller, reason: "\(what): \(summary.lastReason)")
        }
        scheduleRefusalSummary()
    }

    /// Answers when the router's actor runs (the watchdog's probe).
    public func alive() {}

    /// Refused calls since start (the `stats` topic).
    public var refusedCalls: Int { refusals.total }

    /// A legacy target: a number at the legacy server, or a station's own SIP URI.
    func legacyDestination(_ target: String) -> (SIPURI, SIPDestination)? {
        if target.hasPrefix("sip:") || target.hasPrefix("sips:") {
            guard let uri = try? SIPURIParser.parseSIP(target) else { return nil }
            let transport: SIPTransportProtocol = (uri.parameters.value("transport") ?? nil)?.lowercased() == "tcp" ? .tcp : settings.legacyTransport
            return (uri, SIPDestination(transport: transport, host: uri.host, port: uri.port ?? 5060))
        }
        guard let server = settings.legacyServer else { return nil }
        var uri = SIPURI(user: target, host: server.host, port: server.port)  // SIPURI brackets an IPv6 host itself
        if server.transport == .tcp { uri.parameters.set("transport", "tcp") }
        return (uri, server)
    }

    /// Seconds since boot (CLOCK_MONOTONIC, as NIO's deadlines).
    public static let uptime: @Sendable () -> Double = { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }

    /// Runs `body` on a user agent synchronously: it shares our executor (the event loop).
    func on<T: Sendable>(_ agent: SIPUserAgent, _ body: (isolated SIPUserAgent) -> T) -> T {
        agent.assumeIsolated(body)
    }

    func flowAlive(_ flow: SIPFlow) -> Bool {
        cloud.endpoint.assumeIsolated { $0.isAlive(flow) }
    }
}
