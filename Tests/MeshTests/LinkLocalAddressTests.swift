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
