import Media
import NIOCore
import NetworkAddress
import SIP

/// How the embedded anchor reads and rewrites a relayed SDP (docs/CLOUD-CORE.md "Media
/// anchoring"). One audio stream is anchored — the first `m=audio` with an RTP profile and a
/// port — and every other stream is disabled on the way (port 0, RFC 3264 §8.2), so that no
/// media goes end to end past the anchor. The anchored section gets the anchor's address and
/// port, its SDES lines the anchor's own keys (RFC 4568; one key per side and suite, kept for the
/// call), and loses what only the end could use: `a=rtcp` (RFC 3605: the anchor's RTCP is on the
/// port + 1) and ICE (RFC 8839: the anchor is not a candidate the end gathered).
enum AnchorSDP {
    /// What one side said about the anchored stream.
    struct Description: Sendable {
        /// Where it receives RTP; nil for a hold (`c=0.0.0.0`, RFC 3264 §8.4), a port of 0 or
        /// an address that is not an IP literal (the anchor latches instead).
        var remote: SocketAddress?
        var remoteRTCP: SocketAddress?
        var rtcpMux: Bool
        /// Whether the relay may send to `remote` before hearing from it (`isPublicUnicast`).
        var sendsBeforeLatching: Bool { remote.map(AnchorSDP.isPublicUnicast) ?? false }
        /// Its `a=crypto` lines the engine can work with (RFC 4568 §9.1), in order.
        var crypto: [(line: SDPCryptoAttribute, suite: SRTPCryptoSuite)]
        /// True when it offered or answered SDES at all.
        var hasCrypto: Bool
        /// The stream's port (0: rejected or disabled).
        var port: Int
    }

    /// Addresses that are no peer's to give as a place for the relay to send to before it has
    /// heard from there (RFC 6890 special-purpose and private ranges, multicast): the relay
    /// latches instead. Otherwise an end could make the core send UDP it chose to the core's own
    /// loopback, its LAN or a multicast group.
    static let notPublic: [IPPrefix] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "224.0.0.0/3", "::/127", "::ffff:0:0/96", "64:ff9b:1::/48", "fc00::/7", "fe80::/10", "ff00::/8",
    ].compactMap(IPPrefix.init)

    static func isPublicUnicast(_ address: SocketAddress) -> Bool { !notPublic.contains { $0.contains(address) } }

    static let removedAttributes: Set<String> = [
        "rtcp", "candidate", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite", "ice-mismatch", "end-of-candidates", "remote-candidates", "crypto",
    ]

    /// The section the anchor carries: the first RTP audio stream that is not disabled.
    static func anchoredSection(of session: SDPSession) -> Int? {
        session.media.firstIndex { $0.type == "audio" && $0.port > 0 && $0.proto.uppercased().hasPrefix("RTP/") }
    }

    static func describe(_ session: SDPSession, section: Int) -> Description? {
        guard session.media.indices.contains(section) else { return nil }
        let media = session.media[section]
        let address = (media.connection ?? session.connection)?.address ?? ""
        let held = address == "0.0.0.0" || address == "::"
        let port = media.port
        var remote: SocketAddress?
        if !held, (1...65535).contains(port) { remote = try? SocketAddress(ipAddress: address, port: port) }
        if let multicast = remote, IPPrefix("224.0.0.0/4")!.contains(multicast) || IPPrefix("ff00::/8")!.contains(multicast) { remote = nil }
        var remoteRTCP: SocketAddress?
        if let value = media.attributes(named: "rtcp").first, !held {
            // a=rtcp:<port> [IN IP4 <address>] (RFC 3605 §2.1)
            let fields = value.split(separator: " ")
            if let first = fields.first, let rtcpPort = Int(first), (1...65535).contains(rtcpPort) {
                let rtcpAddress = fields.count >= 3 ? String(fields[2]) : address
                remoteRTCP = try? SocketAddress(ipAddress: rtcpAddress, port: rtcpPort)
            }
        }
        let lines = media.attributes(named: "crypto")
        let crypto = lines.compactMap { value -> (SDPCryptoAttribute, SRTPCryptoSuite)? in
            guard let line = SDPCryptoAttribute(attributeValue: value), let suite = SRTPCryptoSuite(rawValue: line.suite),
                line.isUsable(keyLength: suite.keyMaterialLength)
            else { return nil }
            return (line, suite)
        }
        return Description(
            remote: remote, remoteRTCP: remoteRTCP, rtcpMux: media.hasAttribute("rtcp-mux"), crypto: crypto.map { (line: $0.0, suite: $0.1) },
            hasCrypto: !lines.isEmpty, port: port)
    }

    /// `session` as it goes on: the anchored section at `address`:`port` with `crypto` as its SDES
    /// lines (nil: plain RTP), every other section disabled.
    static func rewrite(_ session: SDPSession, section: Int?, address: String, port: Int, crypto: [SDPCryptoAttribute]?) -> SDPSession {
        var session = session
        let anchoredAddress = section.flatMap { session.media.indices.contains($0) ? (session.media[$0].connection ?? session.connection)?.address : nil }
        let held = anchoredAddress == "0.0.0.0" || anchoredAddress == "::"
        session.origin.addressType = address.contains(":") ? "IP6" : "IP4"
        session.origin.address = address
        session.connection = SDPSession.Connection(address: held ? (anchoredAddress ?? address) : address)
        session.attributes.removeAll { removedAttributes.contains($0.name) }
        for index in session.media.indices {
            session.media[index].connection = nil
            session.media[index].attributes.removeAll { removedAttributes.contains($0.name) }
            guard index == section else {
                session.media[index].port = 0
                continue
            }
            if session.media[index].port != 0 { session.media[index].port = port }
            for line in crypto ?? [] { session.media[index].attributes.append(SDPAttribute("crypto", line.attributeValue)) }
        }
        return session
    }
}
