import Foundation

/// Debian's rtpengine (userspace: `--table=-1`) for one test, its ng control port on loopback.
public final class RTPEngine: @unchecked Sendable {
    public let ngPort: Int
    public let peer: PeerProcess

    /// `interface`: the address its media sockets use (and write in SDP); `namespace`: the
    /// network namespace it runs in (its ng port on that namespace's loopback).
    public init(ports: ClosedRange<Int>, interface: String = "127.0.0.1", namespace: String? = nil) async throws {
        ngPort = try freePort(udp: true)
        let inNamespace = namespace.map { ["ip", "netns", "exec", $0] } ?? []
        peer = try PeerProcess(inNamespace.first ?? "rtpengine", Array(inNamespace.dropFirst()) + (namespace == nil ? [] : ["rtpengine"]) + [
            // Not Debian's /etc/rtpengine/rtpengine.conf: its HTTP (2225) and CLI (2224) ports
            // would clash with another rtpengine of a test running beside this one.
            "--config-file=none", "--table=-1", "--foreground", "--log-stderr", "--log-level=5", "--interface=\(interface)",
            "--listen-ng=127.0.0.1:\(ngPort)", "--listen-cli=127.0.0.1:\(try freePort())", "--port-min=\(ports.lowerBound)", "--port-max=\(ports.upperBound)",
            "--num-threads=2", "--no-redis-required", "--pidfile=/dev/null",
            // A deleted call goes at once (the default keeps it 30 s for late packets).
            "--delete-delay=0",
        ])
        if let namespace {
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                if (try? await runCommand("ip", ["netns", "exec", namespace, "ss", "-Hlnu"]))?.contains("127.0.0.1:\(ngPort)") == true { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw PeerError("rtpengine did not open its ng port in \(namespace): \(peer.text.suffix(2000))")
        }
        try await waitUntilListening(port: ngPort, udp: true)
    }

    /// Calls rtpengine has set up ("Creating new call" in its log).
    public var callsCreated: Int { peer.text.components(separatedBy: "Creating new call").count - 1 }

    public var log: String { peer.text }

    public func stop() { peer.stop() }

    deinit { stop() }
}
