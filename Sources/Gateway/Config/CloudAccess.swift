public import TOMLConfig

/// How the gateway proves who it is to the cloud, and the names its channels have there
/// (`[cloud] auth`, `registration`, `account`, `domain`, `outbound_proxy`; `[[channel]]
/// cloud_account`). docs/GATEWAY.md "Any standards-based SIP cloud" has the choices and why.
public struct CloudAccess: Sendable, Equatable {
    public enum Authentication: Sendable, Equatable {
        /// The project's claiming (issue 4): a one-time code and a CSR for a device certificate;
        /// mutual TLS from then on. The reference core's names: `<device>-ch<n>`.
        case claim
        /// A certificate and key (PEM) from the operator's PKI: mutual TLS, no claiming.
        case certificate(certificateFile: String, keyFile: String)
        /// SIP digest (RFC 3261 §22.4, RFC 8760) over TLS. `username` nil: each registration
        /// authenticates as its own account (the usual "one subscriber per AOR").
        case digest(username: String?, passwordFile: String)

        public var name: String {
            switch self {
            case .claim: "claim"
            case .certificate: "certificate"
            case .digest: "digest"
            }
        }
    }

    /// One registration per channel (each with its account), or one for the whole gateway with
    /// the channel named by the called user (a PBX trunk at a SIP provider).
    public enum Registration: String, Sendable, Equatable, CaseIterable { case channels, trunk }

    public var authentication = Authentication.claim
    public var registration = Registration.channels
    /// The trunk's account (`registration = "trunk"`).
    public var trunkAccount: String?
    /// The SIP domain of the accounts; nil: the claimed domain (claim) or the server's host.
    public var domain: String?
    /// Where the TLS flow goes instead of the server (RFC 3261 §8.1.2 preloaded route, `;lr`).
    public var outboundProxy: HostPort?
    /// False for a proxy named without a port: it is found by RFC 3263 like the server.
    public var outboundProxyHasPort = true

    public init() {}

    public var isClaim: Bool { authentication == .claim }

    /// Keys of `[cloud]` that belong to one authentication mode only: check-config names the mode
    /// a key needs when it is set for another.
    static let modeKeys: [(key: String, mode: String)] = [
        ("claim_url", "claim"), ("claim_code", "claim"),
        ("certificate_file", "certificate"), ("key_file", "certificate"),
        ("username", "digest"), ("password_file", "digest"),
    ]

    /// Reads the `[cloud]` keys of this struct (the others are `BridgeConfiguration`'s).
    static func read(_ cloud: ConfigTable) -> CloudAccess {
        var access = CloudAccess()
        let mode = cloud.string("auth", oneOf: ["claim", "certificate", "digest"]) ?? "claim"
        for (key, owner) in modeKeys where owner != mode && cloud.has(key) {
            cloud.reject(key, "belongs to auth = \"\(owner)\", but auth is \"\(mode)\"")
        }
        switch mode {
        case "certificate":
            let certificate = cloud.string("certificate_file"), key = cloud.string("key_file")
            if certificate == nil || key == nil {
                cloud.reject("auth", "auth = \"certificate\" needs certificate_file and key_file (PEM, from your PKI)")
            }
            access.authentication = .certificate(certificateFile: certificate ?? "", keyFile: key ?? "")
        case "digest":
            let username = cloud.string("username")
            if let username, !isAccount(username) { cloud.reject("username", "\"\(username)\": 1–64 letters, digits, '-', '_', '.' or '+'") }
            let passwordFile = cloud.string("password_file")
            if passwordFile == nil { cloud.reject("auth", "auth = \"digest\" needs password_file (a file holding the password, mode 0600)") }
            access.authentication = .digest(username: username, passwordFile: passwordFile ?? "")
        default:
            access.authentication = .claim
        }
        if let registration = cloud.string("registration", oneOf: Registration.allCases.map(\.rawValue)) {
            access.registration = Registration(rawValue: registration)!
            if access.isClaim, access.registration == .trunk {
                cloud.reject("registration", "a claimed gateway registers its channels as <device>-ch<n>; \"trunk\" needs auth = \"certificate\" or \"digest\"")
            }
        }
        if let account = cloud.string("account") {
            if !isAccount(account) { cloud.reject("account", "\"\(account)\": 1–64 letters, digits, '-', '_', '.' or '+'") }
            if access.registration != .trunk { cloud.reject("account", "the trunk's account: set registration = \"trunk\" (per-channel accounts are [[channel]] cloud_account)") }
            access.trunkAccount = account
        } else if access.registration == .trunk {
            if case .digest(let username?, _) = access.authentication {
                access.trunkAccount = username
            } else {
                cloud.reject("registration", "a trunk needs its account: set account (or username, with auth = \"digest\")")
            }
        }
        if let domain = cloud.string("domain") {
            if access.isClaim { cloud.reject("domain", "a claimed gateway takes the cloud's domain from the claim") }
            if let host = HostPort(domain, defaultPort: 0), host.port == 0, !domain.contains("@") {
                access.domain = host.host
            } else {
                cloud.reject("domain", "\"\(domain)\": a host name or IP address, without port")
            }
        }
        if var text = cloud.string("outbound_proxy") {
            for scheme in ["sips:", "sip:"] where text.hasPrefix(scheme) { text.removeFirst(scheme.count) }
            if let proxy = HostPort(text, defaultPort: 5061), proxy.port > 0 {
                access.outboundProxy = proxy
                access.outboundProxyHasPort = HostPort(text) != nil
            } else {
                cloud.reject("outbound_proxy", "\"\(text)\": expected sips:host, host:port or [IPv6]:port (no zone id)")
            }
        }
        return access
    }

    /// A SIP user part the gateway registers or calls from: plain enough for every platform.
    static func isAccount(_ text: String) -> Bool {
        (1...64).contains(text.count) && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.+".contains($0)) }
    }
}

/// The channels' names at the cloud, as a pure mapping (`CloudAccountsTests`): which AORs
/// register, which user a channel's calls come from, and which channel a cloud call is for.
public struct CloudAccounts: Sendable, Equatable {
    public var registration: CloudAccess.Registration
    /// The gateway's device name (claimed) or configured id: `<device>-ch<n>` by default.
    public var device: String
    public var trunkAccount: String?

    public init(registration: CloudAccess.Registration = .channels, device: String, trunkAccount: String? = nil) {
        self.registration = registration
        self.device = device
        self.trunkAccount = trunkAccount
    }

    /// The account `channel` registers as (one registration per channel).
    public func account(of channel: BridgeConfiguration.Channel) -> String {
        channel.cloudAccount ?? "\(device)-ch\(channel.index)"
    }

    /// Who a channel's calls to the cloud come from (From user): its account, or the trunk's.
    public func caller(for channel: BridgeConfiguration.Channel) -> String {
        registration == .trunk ? trunkAccount ?? device : account(of: channel)
    }

    /// The AORs to register for `channels` (enabled ones).
    public func addressesOfRecord(_ channels: [BridgeConfiguration.Channel]) -> [String] {
        switch registration {
        case .channels: channels.filter(\.enabled).map(account(of:))
        case .trunk: [trunkAccount ?? device]
        }
    }

    /// The channel a cloud call is for: the Request-URI's user names a channel's account (a
    /// registrar's lookup puts our Contact there); failing that — a trunk, or a platform that
    /// keeps the dialled address — the To user; a trunk also knows channels by `number`.
    public func channel(requestUser: String, toUser: String?, in channels: [BridgeConfiguration.Channel]) -> BridgeConfiguration.Channel? {
        for user in [requestUser, toUser].compactMap({ $0 }) where !user.isEmpty {
            if let channel = channels.first(where: { account(of: $0) == user }) { return channel }
            if registration == .trunk, let channel = channels.first(where: { $0.number == user }) { return channel }
        }
        return nil
    }
}
