import Foundation

/// dnsmasq (Debian's dnsmasq-base) as a test's DNS server on loopback: NAPTR, SRV and address
/// records given on its command line, nothing else answered (no upstream, no /etc/hosts).
public final class Dnsmasq: @unchecked Sendable {
    public let port: Int
    public let peer: PeerProcess

    /// `records`: dnsmasq options such as `--srv-host=_sips._tcp.example,sip1.example,5061,10,10`.
    private let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("dnsmasq-\(UUID().uuidString).pid").path

    public init(records: [String]) async throws {
        port = try freePort(udp: true)
        // Under `setsid --wait`, as Kamailio: with dnsmasq as its direct child, the test process
        // stopped reaping its other children (Foundation's Process: `ss` stayed a zombie and its
        // `waitUntilExit` never returned).
        peer = try PeerProcess("setsid", [
            "--wait", "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces",
            "--no-resolv", "--no-hosts", "--no-negcache", "--pid-file=\(pidFile)", "--user=root", "--log-queries", "--log-facility=-",
        ] + records)
        try await waitUntilListening(port: port, udp: true)
    }

    /// SIGKILL to dnsmasq (its pid file: it is setsid's child; SIGTERM would wait forever, as
    /// the test runner's blocked signals are inherited), then to setsid.
    public func stop() {
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 {
            kill(pid, SIGKILL)
            try? FileManager.default.removeItem(atPath: pidFile)
        }
        peer.stop()
    }

    deinit { stop() }
}
