public import NIOCore

/// UDP sending that cannot cost the endpoint its socket. SwiftNIO closes a datagram channel on any
/// send error but EMSGSIZE and EHOSTUNREACH: one response sent to a broadcast address (EACCES),
/// from a loopback socket to another host (EINVAL), or into a route that just went away
/// (ENETUNREACH, EPERM from a firewall) would leave the endpoint deaf on that port. So
/// destinations that cannot work are refused before the write (`SIPDatagramDestination`), and a
/// UDP socket that closes anyway is bound again at once.
extension SIPEndpoint {
    /// Writes a datagram unless its destination is refused; a refused one fails the client
    /// transactions of its flow (RFC 3261 §8.1.3.1: as a 503).
    func writeDatagram(_ bytes: ByteBuffer, on flow: SIPFlow) {
        guard let channel = udpChannels.first(where: { $0.localAddress == flow.local }) ?? udpChannels.first else {
            logger.warning("no UDP socket to send on", metadata: ["flow": "\(flow)"])
            transportFailed(on: flow)
            return
        }
        if let local = channel.localAddress, let refusal = SIPDatagramDestination.refusal(to: flow.remote, from: local) {
            logger.notice("UDP message not sent: \(refusal)", metadata: ["flow": "\(flow)"])
            transportFailed(on: flow)
            return
        }
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: flow.remote, data: bytes), promise: nil)
    }

    /// A listening UDP socket closed while the endpoint runs (a send error SwiftNIO does not
    /// tolerate): bound again on the same address, retried every second until it works.
    func datagramChannelClosed(_ channel: any Channel, address: SocketAddress?, error: (any Error)?) {
        guard let index = udpChannels.firstIndex(where: { $0 === channel }) else { return }  // shutdown, or already handled
        udpChannels.remove(at: index)
        guard let address else { return }
        logger.error("UDP socket on \(address.displayText) closed (\(error.map { "\($0)" } ?? "no error given")); listening again")
        Task { await self.rebind(address) }
    }

    private func rebind(_ address: SocketAddress) async {
        while !isShutDown {
            do {
                try await listen(.udp, on: address)
                return
            } catch {
                logger.error("cannot listen on UDP \(address.displayText) again: \(error); retrying in 1 s")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}

/// Which UDP destinations a SIP endpoint sends to: unicast addresses with a port, of the
/// socket's family, reachable from the socket's address. Anything else cannot be delivered and
/// would make the kernel fail the send.
public enum SIPDatagramDestination {
    /// Why a datagram to `remote` from a socket bound to `local` cannot go, or nil when it can.
    /// Runs before every UDP send: a few byte comparisons, no allocation; the addresses are put
    /// into words only for a refusal.
    public static func refusal(to remote: SocketAddress, from local: SocketAddress) -> String? {
        guard let port = remote.port, (1...65535).contains(port) else { return "port \(remote.port ?? 0) is not a destination port" }
        var to: String { remote.ipAddress ?? "?" }
        var from: String { local.ipAddress ?? "?" }
        switch (remote, local) {
        case (.v4(let remote4), .v4(let local4)):
            let first = withUnsafeBytes(of: remote4.address.sin_addr.s_addr) { $0[0] }  // network order
            if first == 0 { return "\(to) is not a destination address" }
            if first >= 224 { return "\(to) is a multicast, broadcast or reserved address" }
            let fromLoopback = withUnsafeBytes(of: local4.address.sin_addr.s_addr) { $0[0] } == 127
            if fromLoopback && first != 127 { return "a socket on \(from) reaches only loopback addresses, not \(to)" }
        case (.v6(let remote6), .v6(let local6)):
            let (unspecified, multicast, toLoopback) = withUnsafeBytes(of: remote6.address.sin6_addr) { bytes in
                (bytes.allSatisfy { $0 == 0 }, bytes[0] == 0xFF, Self.isLoopback(bytes))
            }
            if unspecified { return ":: is not a destination address" }
            if multicast { return "\(to) is a multicast address" }
            let fromLoopback = withUnsafeBytes(of: local6.address.sin6_addr) { Self.isLoopback($0) }
            if fromLoopback && !toLoopback { return "a socket on ::1 reaches only ::1, not \(to)" }
        case (.v4, .v6), (.v6, .v4):
            return "\(remote.displayText) is of the other address family than the socket on \(local.displayText)"
        default:
            return "\(remote) is not an IP address"
        }
        return nil
    }

    /// `::1`, as the 16 bytes of an IPv6 address.
    private static func isLoopback(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count == 16 && bytes.prefix(15).allSatisfy { $0 == 0 } && bytes[15] == 1
    }
}
