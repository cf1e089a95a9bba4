public import Mesh
public import SIP

/// Whether a new call is taken and where it goes, as a pure function of what the router knows
/// (issue 15: the router carries out decisions, it makes none). `CallAdmissionTests` runs every
/// rule without sockets:
///
/// - the channel: a cloud caller names the channel's account (`CloudAccounts`: `<device>-ch<n>`,
///   its `cloud_account`, or on a trunk its number), a station or a mesh peer the channel's
///   `number`; none → 404, disabled → 480, already in a call → 486 (one call per channel,
///   ../shared/ARCHITECTURE.md), the gateway stopping → 503;
/// - the direction: a station's call goes to the cloud, or to the channel's mesh targets at once
///   when the cloud is not registered or its uplink is down (503 without mesh targets); a cloud or
///   mesh caller rings the channel's stations;
/// - the timers the call gets (`BridgedCall.Timing`) and, for the mesh, the ring plan.
public enum CallAdmission {
    /// Where the call came in.
    public enum Origin: Sendable, Equatable {
        case legacy, cloud, mesh
    }

    /// What the router knows when the INVITE arrives.
    public struct Circumstances: Sendable {
        public var channels: [BridgeConfiguration.Channel]
        /// How the cloud names our channels.
        public var accounts: CloudAccounts
        public var accepting = true
        public var busyChannels: Set<Int> = []
        /// A registered cloud flow that is alive, and the uplink's health.
        public var cloudRegistered = false
        public var cloudDown = false
        /// The gateway has a mesh agent (`[mesh]` on).
        public var meshAvailable = false
        public var fallbackAfter: Double = 1.5
        public var mediaTimeout: Double?

        public init(channels: [BridgeConfiguration.Channel], accounts: CloudAccounts) {
            self.channels = channels
            self.accounts = accounts
        }

        public init(channels: [BridgeConfiguration.Channel], device: String) {
            self.init(channels: channels, accounts: CloudAccounts(device: device))
        }

        func canUseMesh(_ channel: BridgeConfiguration.Channel) -> Bool { meshAvailable && !channel.meshTargets.isEmpty }
    }

    public struct Route: Sendable, Equatable {
        public var channel: BridgeConfiguration.Channel
        public var direction: BridgedCall.Direction
        public var targets: [String]
        public var ringPlan: MeshRingPlan?
        /// Set when a station's call goes to the mesh at once: why.
        public var meshBecause: String?
        public var timing: BridgedCall.Timing
    }

    /// A refused attempt that belongs in the channel's history (busy, the cloud unreachable).
    public struct Attempt: Sendable, Equatable {
        public var channel: Int
        public var direction: BridgedCall.Direction
        public var status: GatewayCallRecord.Status

        public init(channel: Int, direction: BridgedCall.Direction, status: GatewayCallRecord.Status) {
            self.channel = channel
            self.direction = direction
            self.status = status
        }
    }

    public enum Verdict: Sendable, Equatable {
        case route(Route)
        case refuse(status: Int, reason: String, record: Attempt?)
    }

    /// The verdict on an INVITE for `requestURI` from `caller` (a URI, for the log) that came in at `origin`.
    public static func decide(requestURI: AnyURI?, toUser: String? = nil, caller: String, origin: Origin, _ known: Circumstances) -> Verdict {
        guard case .sip(let uri)? = requestURI else {
            return .refuse(status: 416, reason: "the Request-URI is not a SIP URI", record: nil)
        }
        let user = uri.user ?? ""
        let channel: BridgeConfiguration.Channel?
        switch origin {
        case .cloud:
            channel = known.accounts.channel(requestUser: user, toUser: toUser, in: known.channels)
        case .legacy, .mesh:
            channel = known.channels.first { $0.number == user }
        }
        guard known.accepting else {
            return .refuse(status: 503, reason: "the gateway is shutting down (from \(caller))", record: nil)
        }
        guard let channel else {
            return .refuse(status: 404, reason: "no channel has the number \"\(user)\" (from \(caller))", record: nil)
        }
        guard channel.enabled else {
            return .refuse(status: 480, reason: "channel \(channel.index) is disabled (from \(caller))", record: nil)
        }
        var direction: BridgedCall.Direction = switch origin {
        case .legacy: .legacyToCloud
        case .cloud: .cloudToLegacy
        case .mesh: .meshToLegacy
        }
        guard !known.busyChannels.contains(channel.index) else {
            return .refuse(status: 486, reason: "channel \(channel.index) is busy (from \(caller))", record: Attempt(channel: channel.index, direction: direction, status: .busy))
        }
        var meshBecause: String?
        if direction == .legacyToCloud, !known.cloudRegistered || known.cloudDown {
            guard known.canUseMesh(channel) else {
                let why = known.cloudRegistered ? "no sign of life" : "not registered"
                return .refuse(status: 503, reason: "channel \(channel.index): the cloud is unreachable (\(why))", record: Attempt(channel: channel.index, direction: .legacyToCloud, status: .failed))
            }
            direction = .legacyToMesh
            meshBecause = known.cloudRegistered ? "the cloud uplink is down" : "the cloud is not registered"
        }
        let targets: [String] = switch direction {
        case .legacyToCloud: [channel.cloudTarget]
        case .legacyToMesh: channel.meshTargets
        case .cloudToLegacy, .meshToLegacy: channel.legacyTargets
        }
        let plan = direction == .legacyToMesh ? MeshRingPlan(mode: channel.ring == .chain ? .chain : .parallel, targets: targets) : nil
        let timing = BridgedCall.Timing(
            ring: Double(channel.ringSeconds), maxCall: Double(channel.maxCallSeconds),
            fallbackAfter: direction == .legacyToCloud && known.canUseMesh(channel) ? known.fallbackAfter : nil,
            mediaTimeout: known.mediaTimeout)
        return .route(Route(channel: channel, direction: direction, targets: targets, ringPlan: plan, meshBecause: meshBecause, timing: timing))
    }
}
