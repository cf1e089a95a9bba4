import Foundation
public import Logging
import NIOCore
public import NetworkAddress
import SIP

/// Who may send requests to the gateway's legacy side (issue 16; docs/GATEWAY.md): `[legacy]
/// allow` when set, else the legacy server and the hosts of the channels' `sip:` legacy targets
/// — the intercom server and the stations the gateway calls are the ones that call it. Names are
/// resolved once, when the config is read (at start and at each reload).
extension GatewayServer {
    public static func legacySources(_ config: BridgeConfiguration, logger: Logger = Logger(label: "gateway")) -> [IPPrefix] {
        if let allow = config.legacyAllow { return allow.compactMap(IPPrefix.init) }
        var hosts: [String] = []
        if let server = config.legacyServer { hosts.append(server.host) }
        for target in config.channels.flatMap(\.legacyTargets) where target.hasPrefix("sip:") || target.hasPrefix("sips:") {
            if let uri = try? SIPURIParser.parseSIP(target) { hosts.append(uri.host) }
        }
        var prefixes: [IPPrefix] = []
        for host in Set(hosts.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "[]")) }).sorted() {
            if let literal = IPPrefix(host) {
                prefixes.append(literal)
            } else if let resolved = try? SocketAddress.makeAddressResolvingHost(host, port: 5060), let prefix = IPPrefix(address: resolved) {
                prefixes.append(prefix)
            } else {
                logger.warning("legacy host \(host) does not resolve: its requests will be refused until a reload resolves it (or [legacy] allow names it)")
            }
        }
        return prefixes
    }
}
