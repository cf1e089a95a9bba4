#if canImport(Glibc)
import Glibc
#endif
public import NIOCore

/// IPv6 addresses with a zone (`fe80::1%eth0`, RFC 4007 §11) for the socket layer.
///
/// NIO's `SocketAddress(ipAddress:port:)` takes no zone, but a link-local address means nothing
/// without the interface it is reached through: the kernel needs `sin6_scope_id`. The zone is
/// for sockets only — it never goes into SIP or SDP (../shared/ARCHITECTURE.md); the text form
/// of a scoped `SocketAddress` (`ipAddress`) carries no zone either.
extension SocketAddress {
    public enum ZoneError: Error, Equatable, CustomStringConvertible {
        case unknownInterface(String)
        case notIPv6(String)
        case portOutOfRange(Int)

        public var description: String {
            switch self {
            case .unknownInterface(let name): "no network interface \"\(name)\""
            case .notIPv6(let text): "\"\(text)\" has a zone but is no IPv6 address"
            case .portOutOfRange(let port): "port \(port) is outside 0–65535"
            }
        }
    }

    /// `SocketAddress(ipAddress:port:)` for ports that come from outside (SDP, URLs, files):
    /// NIO's initializer traps on a port that does not fit 16 bits; this one throws.
    public init(ipAddress text: String, checkedPort port: Int) throws {
        guard (0...65535).contains(port) else { throw ZoneError.portOutOfRange(port) }
        self = try SocketAddress(ipAddress: text, port: port)
    }

    /// `fe80::1%eth0` (or `%3`) with its scope; any other address as `SocketAddress(ipAddress:port:)`
    /// reads it. A port outside 0–65535 is an error, not a trap.
    public init(ipAddressWithZone text: String, port: Int) throws {
        guard (0...65535).contains(port) else { throw ZoneError.portOutOfRange(port) }
        guard let percent = text.firstIndex(of: "%") else {
            self = try SocketAddress(ipAddress: text, port: port)
            return
        }
        let zone = String(text[text.index(after: percent)...])
        let plain = try SocketAddress(ipAddress: String(text[..<percent]), port: port)
        guard case .v6(let v6) = plain else { throw ZoneError.notIPv6(text) }
        let index = UInt32(zone) ?? if_nametoindex(zone)
        guard index != 0 else { throw ZoneError.unknownInterface(zone) }
        var raw = v6.address
        raw.sin6_scope_id = index
        self = SocketAddress(raw, host: "")
    }

    /// The interface index of a scoped IPv6 address (0: none).
    public var scopeID: UInt32 {
        if case .v6(let v6) = self { return v6.address.sin6_scope_id }
        return 0
    }

    /// The same address on another port, keeping the scope; nil for a port outside 0–65535
    /// (NIO's setter would trap).
    public func withPort(_ port: Int) -> SocketAddress? {
        guard (0...65535).contains(port) else { return nil }
        var copy = self
        copy.port = port
        return copy
    }
}

/// Network interfaces by name and index (if_nametoindex(3)).
public enum NetworkInterface {
    public static func index(of name: String) -> UInt32? {
        let index = if_nametoindex(name)
        return index == 0 ? nil : index
    }

    /// A NUL-terminated C string from a buffer, as text.
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func name(of index: UInt32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(index, &buffer) != nil else { return nil }
        return Self.text(buffer)
    }

    /// The IPv6 link-local addresses (fe80::/10) of the interface called `name`, as text without zone.
    public static func linkLocalAddresses(of name: String) -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(list) }
        var found: [String] = []
        for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET6),
                String(cString: entry.pointee.ifa_name) == name
            else { continue }
            var v6 = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
            let bytes = withUnsafeBytes(of: &v6.sin6_addr) { Array($0) }
            guard bytes[0] == 0xFE, bytes[1] & 0xC0 == 0x80 else { continue }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard inet_ntop(AF_INET6, &v6.sin6_addr, &text, socklen_t(text.count)) != nil else { continue }
            found.append(Self.text(text))
        }
        return found
    }
}
