import Foundation
public import Gateway
public import PeerTestSupport

/// One site on one LAN segment, made of network namespaces for one test: a switch (a bridge in
/// its own namespace), a cloud-core host and two gateway hosts, each plugged into the switch by a
/// veth pair. Every host has a real IPv6 link-local address on its `eth0` (duplicate address
/// detection off, so it is usable at once) and an IPv4 address for the cloud path
/// (10.77.0.1 core, .11 gw1, .12 gw2). Nothing outside the namespaces is touched; `destroy`
/// deletes them (and with them the veths and the bridge).
///
/// The daemons run as processes inside their host's namespace (`ip netns exec`), built by
/// `make test` next to the tests; the legacy stations are baresip beside their gateway, on the
/// gateway host's loopback.
public final class MeshNetwork: @unchecked Sendable {
    public let scratch: ScratchDirectory
    public let tag: String
    public var lan: String { "sb\(tag)-lan" }
    public var coreHost: String { "sb\(tag)-core" }
    public func host(_ gateway: String) -> String { "sb\(tag)-\(gateway)" }
    /// The core's address on the site's LAN (`create`).
    public static let coreAddress = "10.77.0.1"
    /// Where the core is in this network: on the LAN, or on the "Internet" (`createBehindNAT`).
    public let coreIP: String
    public private(set) var processes: [String: PeerProcess] = [:]
    /// Every namespace made, for `destroy`.
    private var namespaces: [String] = []

    private init(scratch: ScratchDirectory, tag: String, coreIP: String = MeshNetwork.coreAddress) {
        self.scratch = scratch
        self.tag = tag
        self.coreIP = coreIP
    }

    /// Makes the namespaces, the switch and the hosts' links.
    public static func create(gateways: [String] = ["gw1", "gw2"]) async throws -> MeshNetwork {
        guard getuid() == 0 else {
            throw PeerError("the mesh tests make network namespaces and need root (CI runs as root; run `sudo make test`)")
        }
        let network = MeshNetwork(scratch: try ScratchDirectory(), tag: String(UInt32.random(in: 0..<0xFFFF), radix: 16))
        do {
            try await network.build(gateways: gateways)
        } catch {
            await network.destroy()
            throw error
        }
        return network
    }

    private func addNamespace(_ name: String) async throws {
        try await ip(["netns", "add", name])
        namespaces.append(name)
        try await ip(["-n", name, "link", "set", "lo", "up"])
    }

    private func build(gateways: [String]) async throws {
        try await addNamespace(lan)
        try await ip(["-n", lan, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"])
        try await ip(["-n", lan, "link", "set", "br0", "up"])
        var hosts = [(coreHost, Self.coreAddress)]
        for (index, gateway) in gateways.enumerated() { hosts.append((host(gateway), "10.77.0.\(11 + index)")) }
        for (index, (namespace, address)) in hosts.enumerated() {
            try await addNamespace(namespace)
            let port = "p\(index)"
            try await ip(["-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace])
            try await ip(["-n", lan, "link", "set", port, "master", "br0", "up"])
            try await runCommand("ip", ["netns", "exec", namespace, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])
            try await ip(["-n", namespace, "addr", "add", "\(address)/24", "dev", "eth0"])
            try await ip(["-n", namespace, "link", "set", "eth0", "up"])
        }
    }

    // MARK: Behind NAT (issue 19)

    /// The "Internet" side of `createBehindNAT`: the core and the two NATs' outer addresses.
    public static let internetCore = "203.0.113.1"
    public static let siteNATAddresses = ["203.0.113.11", "203.0.113.12"]
    public static let mobileNATAddress = "203.0.113.21"
    public var internet: String { "sb\(tag)-inet" }
    public var siteNAT: String { "sb\(tag)-nat1" }
    public var mobileNAT: String { "sb\(tag)-nat2" }
    /// The cloud client's host, behind the mobile NAT.
    public var mobileHost: String { "sb\(tag)-mobile" }

    /// Real networks (issue 19): the core on an "Internet" segment (203.0.113.0/24, a bridge);
    /// gateway `gw1` (192.168.1.10) and its stations behind the site's NAT (iptables
    /// MASQUERADE to 203.0.113.11); a cloud client's host (10.9.0.10) behind a carrier NAT
    /// (203.0.113.21). Neither private network is routed on the Internet side: what crosses,
    /// crosses through a NAT.
    public static func createBehindNAT() async throws -> MeshNetwork {
        guard getuid() == 0 else {
            throw PeerError("the NAT tests make network namespaces and need root (CI runs as root; run `sudo make test`)")
        }
        let network = MeshNetwork(scratch: try ScratchDirectory(), tag: String(UInt32.random(in: 0..<0xFFFF), radix: 16), coreIP: internetCore)
        do {
            try await network.buildBehindNAT()
        } catch {
            await network.destroy()
            throw error
        }
        return network
    }

    private func buildBehindNAT() async throws {
        try await addNamespace(internet)
        try await ip(["-n", internet, "link", "add", "br0", "type", "bridge"])
        try await ip(["-n", internet, "link", "set", "br0", "up"])
        for (index, (namespace, address)) in [(coreHost, Self.internetCore), (siteNAT, Self.siteNATAddresses[0]), (mobileNAT, Self.mobileNATAddress)].enumerated() {
            try await addNamespace(namespace)
            try await ip(["-n", internet, "link", "add", "p\(index)", "type", "veth", "peer", "name", "wan", "netns", namespace])
            try await ip(["-n", internet, "link", "set", "p\(index)", "master", "br0", "up"])
            try await ip(["-n", namespace, "addr", "add", "\(address)/24", "dev", "wan"])
            try await ip(["-n", namespace, "link", "set", "wan", "up"])
        }
        for (nat, inside, host, hostAddress, router) in [
            (siteNAT, "192.168.1.1/24", host("gw1"), "192.168.1.10/24", "192.168.1.1"), (mobileNAT, "10.9.0.1/24", mobileHost, "10.9.0.10/24", "10.9.0.1"),
        ] {
            try await addNamespace(host)
            try await ip(["-n", nat, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", host])
            try await ip(["-n", nat, "addr", "add", inside, "dev", "lan"])
            try await ip(["-n", nat, "link", "set", "lan", "up"])
            try await runCommand("ip", ["netns", "exec", host, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])
            try await ip(["-n", host, "addr", "add", hostAddress, "dev", "eth0"])
            try await ip(["-n", host, "link", "set", "eth0", "up"])
            try await ip(["-n", host, "route", "add", "default", "via", router])
            try await runCommand("ip", ["netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            try await runCommand("ip", ["netns", "exec", nat, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"])
        }
    }

    /// Shortens the site NAT's connection tracking timeouts (seconds): an idle TCP flow or UDP
    /// stream is forgotten after this, as by a cheap router.
    public func shortenSiteNATTimeouts(tcp: Int, udp: Int) async throws {
        for (key, value) in [
            ("net.netfilter.nf_conntrack_tcp_timeout_established", tcp), ("net.netfilter.nf_conntrack_udp_timeout", udp),
            ("net.netfilter.nf_conntrack_udp_timeout_stream", udp),
        ] {
            try await runCommand("ip", ["netns", "exec", siteNAT, "sysctl", "-qw", "\(key)=\(value)"])
        }
    }

    /// The site NAT's outer address changes (a new lease from the provider): the old one goes,
    /// and with it every flow masqueraded to it; new flows leave from `siteNATAddresses[1]`.
    public func changeSiteNATAddress() async throws {
        // The old lease goes (and with it, in the kernel, every flow masqueraded to it —
        // nf_nat_masquerade), the new one comes: in this order, as a DHCP client does it (the
        // other order would take the new address along, as a secondary of the deleted primary).
        try await ip(["-n", siteNAT, "addr", "del", "\(Self.siteNATAddresses[0])/24", "dev", "wan"])
        try await ip(["-n", siteNAT, "addr", "add", "\(Self.siteNATAddresses[1])/24", "dev", "wan"])
    }

    private func ip(_ arguments: [String]) async throws {
        try await runCommand("ip", arguments)
    }

    /// The link-local address of `eth0` in `namespace` (no zone).
    public func linkLocalAddress(_ namespace: String) async throws -> String {
        let text = try await runCommand("ip", ["-n", namespace, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"])
        guard let field = text.split(separator: " ").first(where: { $0.hasPrefix("fe80:") }) else {
            throw PeerError("no link-local address on eth0 in \(namespace): \(text)")
        }
        return String(field.split(separator: "/")[0])
    }

    /// Cuts the cloud host off the LAN: the switch port toward it goes down. The gateways' own
    /// links stay up and nothing sends a reset, so their TLS flows just go silent, as behind a
    /// dead uplink. (Link down rather than tc netem: the netem qdisc is a kernel module that
    /// the CI machines' kernels do not carry.)
    public func cutCloud() async throws {
        try await ip(["-n", lan, "link", "set", "p0", "down"])
    }

    public func restoreCloud() async throws {
        try await ip(["-n", lan, "link", "set", "p0", "up"])
    }

    /// Starts `executable` in `namespace`, kept for `stop` and for failure messages.
    @discardableResult
    public func start(_ name: String, in namespace: String, _ executable: String, _ arguments: [String], fileLimit: Int? = nil) throws -> PeerProcess {
        let limit = fileLimit.map { ["prlimit", "--nofile=\($0):\($0)"] } ?? []
        let process = try PeerProcess("ip", ["netns", "exec", namespace] + limit + [executable] + arguments)
        processes[name] = process
        return process
    }

    public func run(in namespace: String, _ executable: String, _ arguments: [String]) async throws -> String {
        try await runCommand("ip", ["netns", "exec", namespace, executable] + arguments)
    }

    public func destroy() async {
        for process in processes.values { process.stop() }
        processes = [:]
        for namespace in namespaces.reversed() {
            _ = try? await runCommand("ip", ["netns", "del", namespace])
        }
    }

    // MARK: The site

    /// The cloud core on its host: TLS SIP and claiming on 10.77.0.1, a directory with site
    /// `lobby` of company acme, devices gw1 and gw2 (two channels each) and user alice, and
    /// device gw3 at site `tower` of another company, globex.
    /// `fileLimit`: run it under `prlimit --nofile` (the attack tests).
    /// `extra`: more of cloud-core.toml (a `[media]` table).
    public func startCore(fileLimit: Int? = nil, extra: String = "") async throws -> (config: String, caFile: String) {
        let state = scratch.path("core")
        let seed = scratch.path("seed.toml")
        try """
            [[company]]
            name = "acme"
            [[project]]
            company = "acme"
            name = "hq"
            [[site]]
            company = "acme"
            project = "hq"
            name = "lobby"
            time_zone = "Europe/Berlin"
            [[user]]
            name = "alice"
            site = "lobby"
            password = "alice-pw"
            [[device]]
            name = "gw1"
            site = "lobby"
            channels = 2
            [[device]]
            name = "gw2"
            site = "lobby"
            channels = 2
            # Another customer's gateway on the same core (and, in a test, on the same LAN).
            [[company]]
            name = "globex"
            [[project]]
            company = "globex"
            name = "main"
            [[site]]
            company = "globex"
            project = "main"
            name = "tower"
            [[device]]
            name = "gw3"
            site = "tower"
            channels = 2
            """.write(toFile: seed, atomically: true, encoding: .utf8)
        let config = scratch.path("core.toml")
        try """
            [core]
            domain = "symphony.local"
            state_dir = "\(state)"
            log_level = "notice"
            seed_file = "\(seed)"
            [sip]
            tls_listen = ["\(coreIP):5061"]
            client_tls_listen = ["\(coreIP):5063"]
            advertise = "\(coreIP)"
            digest_algorithms = ["MD5"]
            [claiming]
            listen = "\(coreIP):8443"
            \(extra)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        try start("core", in: coreHost, try builtExecutable("symphony-cloud-core"), ["run", "--config", config], fileLimit: fileLimit)
        let (host, address) = (coreHost, coreIP)
        try await eventually("the cloud core listening", timeout: .seconds(20)) {
            let sockets = try await runCommand("ip", ["netns", "exec", host, "ss", "-Hlnt"])
            return sockets.contains("\(address):5061") && sockets.contains("\(address):8443")
        }
        return (config, state + "/ca.pem")
    }

    /// A one-time claiming code for `device`, made with the core's admin command.
    public func claimCode(_ device: String, coreConfig: String) async throws -> String {
        let output = try await runCommand(try builtExecutable("symphony-cloud-core"), ["admin", "claim-code", "--config", coreConfig, device])
        guard let code = output.split(whereSeparator: \.isWhitespace).last else { throw PeerError("no claiming code in: \(output)") }
        return String(code)
    }

    /// A gateway on its host: legacy trunk on the host's loopback (UDP 5060), the cloud at
    /// 10.77.0.1, the mesh on eth0 with `fallback_after_ms`.
    @discardableResult
    public func startGateway(
        _ id: String, channels: [BridgeConfiguration.Channel], claimCode: String?, caFile: String, fallbackAfterMilliseconds: Int = 1500,
        stateDirectory: String? = nil, extra: String = "", fileLimit: Int? = nil
    ) throws -> (process: PeerProcess, state: String) {
        let state = stateDirectory ?? scratch.path("\(id)-state")
        var text = """
            [gateway]
            id = "\(id)"
            site = "lobby"
            state_dir = "\(state)"
            log_level = "info"
            [legacy]
            listen = "127.0.0.1:5060"
            options_interval_s = 0
            [cloud]
            server = "\(coreIP):5061"
            ca_file = "\(caFile)"
            claim_url = "https://\(coreIP):8443/v1/claim"
            keepalive_s = 5

            """
        if let claimCode { text += "claim_code = \"\(claimCode)\"\n" }
        for channel in channels {
            text += """
                [[channel]]
                index = \(channel.index)
                number = "\(channel.number)"
                cloud_target = "\(channel.cloudTarget)"
                legacy_targets = [\(channel.legacyTargets.map { "\"\($0)\"" }.joined(separator: ", "))]
                mesh_targets = [\(channel.meshTargets.map { "\"\($0)\"" }.joined(separator: ", "))]
                ring = "\(channel.ring.rawValue)"
                ring_s = \(channel.ringSeconds)
                max_call_s = \(channel.maxCallSeconds)
                enabled = \(channel.enabled)

                """
        }
        text += """
            [mesh]
            enabled = true
            interfaces = ["eth0"]
            fallback_after_ms = \(fallbackAfterMilliseconds)
            \(extra)
            """
        let config = scratch.path("\(id).toml")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        let process = try start(id, in: host(id), try builtExecutable("symphony-bridge"), ["run", "--config", config], fileLimit: fileLimit)
        return (process, state)
    }

    /// A legacy station beside gateway `gateway`: baresip on its host's loopback, G.722.
    public func station(_ name: String, beside gateway: String, tone: String, answer: Bool = true) throws -> Baresip {
        try Baresip(
            name, in: scratch, modules: ["g722.so", "g711.so"],
            account: "<sip:\(name)@127.0.0.1>;regint=0;audio_codecs=G722/16000/1;answermode=\(answer ? "auto" : "manual")",
            tone: tone, rtpPorts: 33000...33999, namespace: host(gateway))
    }

    /// Waits until `condition` holds, failing with the daemons' output.
    public func eventually(_ what: String, timeout: Duration = .seconds(15), _ condition: @escaping @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw PeerError("timed out waiting for \(what)\n" + logs())
    }

    public func logs() -> String {
        processes.sorted { $0.key < $1.key }.map { "---- \($0.key):\n\($0.value.text.suffix(5000))" }.joined(separator: "\n")
    }

    /// The gateway's call records (its SQLite file, read while it runs: WAL allows it).
    /// The records of ended calls in a gateway's state directory, read as `symphony-bridge calls`
    /// reads them (read-only: the gateway is running).
    public func records(_ state: String) throws -> [GatewayCallRecord] {
        guard FileManager.default.fileExists(atPath: state + "/calls.sqlite") else { return [] }
        return try GatewayCallRecordFile.read(state + "/calls.sqlite", since: nil).records.filter { $0.endedAt != nil }
    }
}
