import Mesh
import Testing

@Suite("Link-local addresses")
struct LinkLocalAddressTests {
    @Test func zoneStaysOutOfSIP() throws {
        let address = try LinkLocalAddress("fe80::1:2ff:fe03:405%eth0")
        #expect(address.interface == "eth0")
        #expect(address.sipHost == "[fe80::1:2ff:fe03:405]")
        #expect(!address.sipHost.contains("%"))
        #expect(address.scopedText == "fe80::1:2ff:fe03:405%eth0")
    }

    @Test func scopeComesFromTheArrivalInterface() throws {
        let address = try LinkLocalAddress("FE80::A", interface: "veth1")
        #expect(address.address == "fe80::a")
        #expect(address.interface == "veth1")
    }

    @Test func otherAddressesAreRefused() {
        #expect(throws: LinkLocalAddress.AddressError.notLinkLocal("2001:db8::1%eth0")) { try LinkLocalAddress("2001:db8::1%eth0") }
        #expect(throws: LinkLocalAddress.AddressError.notIPv6("192.0.2.1")) { try LinkLocalAddress("192.0.2.1") }
        #expect(throws: LinkLocalAddress.AddressError.missingInterface("fe80::1")) { try LinkLocalAddress("fe80::1") }
        #expect(throws: LinkLocalAddress.AddressError.notLinkLocal("fec0::1%eth0")) { try LinkLocalAddress("fec0::1%eth0") }
    }
}

import NetworkAddress
import NIOCore

@Suite("Scoped socket addresses")
struct ScopedSocketAddressTests {
    @Test func theZoneBecomesTheScopeAndNeverTheText() throws {
        let address = try SocketAddress(ipAddressWithZone: "fe80::1%lo", port: 5061)
        #expect(address.scopeID == NetworkInterface.index(of: "lo"))
        #expect(address.ipAddress == "fe80::1", "the text form carries no zone")
        let numeric = try SocketAddress(ipAddressWithZone: "fe80::1%1", port: 5061)
        #expect(numeric.scopeID == 1)
        #expect(try SocketAddress(ipAddressWithZone: "10.0.0.1", port: 1).scopeID == 0)
        #expect(throws: SocketAddress.ZoneError.unknownInterface("nosuch0")) { try SocketAddress(ipAddressWithZone: "fe80::1%nosuch0", port: 1) }
    }
}
