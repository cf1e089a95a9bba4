public import NIOCore

/// The transports a SIP message travels over (RFC 3261 §18).
public enum SIPTransportProtocol: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case udp = "UDP"
    case tcp = "TCP"
    case tls = "TLS"

    /// Stream transports deliver reliably: no retransmission timers (RFC 3261 §17.1.1.2).
    public var isReliable: Bool { self != .udp }
    public var isSecure: Bool { self == .tls }
    public var defaultPort: Int { self == .tls ? 5061 : 5060 }
    /// The token in a Via header.
    public var viaToken: String { rawValue }
    public var description: String { rawValue }

    /// From a Via transport token or a URI `transport=` parameter.
    public init?(token: String) {
        switch token.uppercased() {
        case "UDP": self = .udp
        case "TCP": self = .tcp
        case "TLS": self = .tls
        default: return nil
        }
    }
}

/// One path messages take between this endpoint and a peer: a UDP socket and a remote address,
/// or one TCP/TLS connection. Responses and in-dialog requests go back over the flow their
/// request came in on (RFC 3261 §18.2.2, RFC 5626 §5.3).
public struct SIPFlow: Hashable, Sendable, CustomStringConvertible {
    public var transport: SIPTransportProtocol
    public var local: SocketAddress
    public var remote: SocketAddress
    /// Identifies the connection of a stream flow (a new connection is a new flow); 0 for UDP.
    public var connectionID: UInt64

    public init(transport: SIPTransportProtocol, local: SocketAddress, remote: SocketAddress, connectionID: UInt64) {
        self.transport = transport
        self.local = local
        self.remote = remote
        self.connectionID = connectionID
    }

    public var description: String {
        "\(transport.rawValue.lowercased()):\(local.displayText)->\(remote.displayText)" + (connectionID == 0 ? "" : "#\(connectionID)")
    }
}

/// Where to send a request when no flow is given: transport, host and port (from a URI).
public struct SIPDestination: Hashable, Sendable, CustomStringConvertible {
    public var transport: SIPTransportProtocol
    public var host: String
    public var port: Int
    /// The name to verify the peer's certificate against (TLS); defaults to `host`.
    public var serverName: String?

    public init(transport: SIPTransportProtocol, host: String, port: Int? = nil, serverName: String? = nil) {
        self.transport = transport
        self.host = host
        self.port = port ?? transport.defaultPort
        self.serverName = serverName
    }

    public var description: String { "\(transport.rawValue.lowercased()):\(host):\(port)" }
}

extension SocketAddress {
    /// `1.2.3.4:5060` or `[::1]:5060`.
    public var displayText: String {
        let host = ipAddress ?? "?"
        let port = self.port ?? 0
        if case .v6 = self { return "[\(host)]:\(port)" }
        return "\(host):\(port)"
    }

    /// The host part as it goes into a Via sent-by or a URI (IPv6 without brackets).
    public var hostText: String { ipAddress ?? "0.0.0.0" }
}
