/// An IPv6 link-local address (fe80::/10) and the interface it belongs to.
///
/// ../shared/ARCHITECTURE.md: a zone id (`%eth0`) never goes into SIP or SDP — it means something
/// only on the host that wrote it. The scope travels beside the address instead, taken from the
/// interface a packet arrived on, and the socket of that interface is used to answer.
public struct LinkLocalAddress: Hashable, Sendable, CustomStringConvertible {
    /// The address text without any zone, as it may appear in SIP and SDP.
    public let address: String
    /// The interface (scope) the address is reachable through; never serialized into SIP/SDP.
    public let interface: String

    public enum AddressError: Error, Equatable {
        case notIPv6(String)
        case notLinkLocal(String)
        case missingInterface(String)
    }

    /// From `fe80::1%eth0`, or from an address and the interface it was seen on.
    public init(_ text: String, interface: String? = nil) throws(AddressError) {
        var address = Substring(text)
        var zone: Substring?
        if let percent = text.firstIndex(of: "%") {
            address = text[..<percent]
            zone = text[text.index(after: percent)...]
        }
        guard address.contains(":"), address.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
            throw .notIPv6(text)
        }
        guard Self.isLinkLocal(address) else { throw .notLinkLocal(text) }
        guard let scope = interface ?? zone.map(String.init), !scope.isEmpty else { throw .missingInterface(text) }
        self.address = address.lowercased()
        self.interface = scope
    }

    /// Whether `text` (without zone) is in fe80::/10.
    public static func isLinkLocal(_ text: String) -> Bool { isLinkLocal(Substring(text)) }

    /// fe80::/10: the first 10 bits are 1111 1110 10.
    static func isLinkLocal(_ address: Substring) -> Bool {
        let first = address.split(separator: ":", omittingEmptySubsequences: false).first ?? ""
        guard first.count == 4, let value = UInt16(first, radix: 16) else { return false }
        return value & 0xFFC0 == 0xFE80
    }

    /// `[fe80::1]` for a SIP host part or Via sent-by (RFC 5118), without the zone.
    public var sipHost: String { "[\(address)]" }

    /// For the socket layer only: `fe80::1%eth0`.
    public var scopedText: String { "\(address)%\(interface)" }

    public var description: String { scopedText }
}
