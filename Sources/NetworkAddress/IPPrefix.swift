#if canImport(Glibc)
import Glibc
#endif
public import NIOCore

/// An IP address prefix (`192.168.10.0/24`, `10.0.0.5`, `fd00::/8`, `2001:db8::1`): who may send
/// the gateway's legacy side requests (`[legacy] allow`, issue 16). A zone (`%eth0`) is not part
/// of a prefix: link-local sources match by address.
public struct IPPrefix: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6), the bits past `length` zero.
    public let bytes: [UInt8]
    public let length: Int

    /// Parses `address` or `address/length`; nil for anything else (names included: a prefix is
    /// an address).
    public init?(_ text: String) {
        guard text.utf8.count <= 64 else { return nil }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let bytes = Self.parse(String(parts[0])) else { return nil }
        let maximum = bytes.count * 8
        var length = maximum
        if parts.count == 2 {
            guard (1...3).contains(parts[1].count), parts[1].allSatisfy(\.isASCII), let value = Int(parts[1]), (0...maximum).contains(value) else { return nil }
            length = value
        }
        self.length = length
        self.bytes = Self.masked(bytes, to: length)
    }

    /// The prefix of exactly this address (its full length).
    public init?(address: SocketAddress) {
        guard let bytes = Self.bytes(of: address) else { return nil }
        self.bytes = bytes
        self.length = bytes.count * 8
    }

    /// Whether `address` (IPv4, IPv6, or IPv4-mapped IPv6) lies within this prefix.
    public func contains(_ address: SocketAddress) -> Bool {
        guard var candidate = Self.bytes(of: address) else { return false }
        if candidate.count == 16, bytes.count == 4, candidate.prefix(12) == Self.mappedPrefix[...] { candidate = Array(candidate.suffix(4)) }
        guard candidate.count == bytes.count else { return false }
        return Self.masked(candidate, to: length) == bytes
    }

    public var description: String {
        let text: String
        if bytes.count == 4 {
            text = bytes.map(String.init).joined(separator: ".")
        } else {
            var storage = in6_addr()
            withUnsafeMutableBytes(of: &storage) { raw in for (index, byte) in bytes.enumerated() { raw[index] = byte } }
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            text = inet_ntop(AF_INET6, &storage, &buffer, socklen_t(buffer.count)) != nil
                ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        }
        return length == bytes.count * 8 ? text : "\(text)/\(length)"
    }

    private static let mappedPrefix: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]

    private static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    private static func bytes(of address: SocketAddress) -> [UInt8]? {
        switch address {
        case .v4(let v4): withUnsafeBytes(of: v4.address.sin_addr) { Array($0) }
        case .v6(let v6): withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
        default: nil
        }
    }

    private static func masked(_ bytes: [UInt8], to length: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let bitsHere = min(8, max(0, length - index * 8))
            return bitsHere == 8 ? byte : bitsHere == 0 ? 0 : byte & UInt8(truncatingIfNeeded: 0xFF << (8 - bitsHere))
        }
    }
}
