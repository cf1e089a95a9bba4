import Foundation

/// An attacker that opens thousands of TCP connections and holds them (issue 16): to each
/// target in turn, from the given source addresses in turn; every second one sends the first
/// bytes of a TLS ClientHello and stops there (a half-open handshake), the others send nothing.
/// After `holdSeconds` it prints how many of its sockets the other side has closed. A Python
/// script (Debian's python3), run where the test says — in a network namespace with
/// `ip netns exec` — so that the attacker's addresses are its own.
public enum IdleConnectionFlood {
    public struct Target: Sendable {
        public let host: String
        public let port: Int
        public init(_ host: String, _ port: Int) {
            self.host = host
            self.port = port
        }
    }

    public struct Outcome: Sendable {
        public let opened: Int
        public let closedByPeer: Int
        public let stillOpen: Int
    }

    static let script = """
        import os, resource, socket, sys, time
        count, hold = int(sys.argv[1]), float(sys.argv[2])
        sources = sys.argv[3].split(",") if sys.argv[3] else []
        targets = []
        for text in sys.argv[4:]:
            host, port = text.rsplit(":", 1)
            targets.append((host.strip("[]"), int(port)))
        resource.setrlimit(resource.RLIMIT_NOFILE, (count + 256, count + 256))
        # A TLS record header announcing 512 bytes of ClientHello, then only a few of them.
        hello = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]) + os.urandom(32)
        held = []
        for index in range(count):
            host, port = targets[index % len(targets)]
            if ":" in host:
                info = socket.getaddrinfo(host, port, socket.AF_INET6, socket.SOCK_STREAM)[0]
                s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                address = info[4]
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if sources:
                    s.bind((sources[index % len(sources)], 0))
                address = (host, port)
            s.setblocking(False)
            s.connect_ex(address)
            held.append(s)
        time.sleep(1)
        for index, s in enumerate(held):
            if index % 2 == 1:
                try:
                    s.send(hello)
                except OSError:
                    pass
        print("holding %d" % len(held), flush=True)
        time.sleep(hold)
        closed = 0
        states = {}
        for s in held:
            state = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
            states[state] = states.get(state, 0) + 1
            try:
                data = s.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                # Bytes (a TLS alert) may come before the close: read them and look again.
                while data:
                    s.recv(65536, socket.MSG_DONTWAIT)
                    data = s.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        print("tcp states %s" % sorted(states.items()), flush=True)
        print("result opened=%d closed=%d open=%d" % (len(held), closed, len(held) - closed), flush=True)
        """

    /// Starts the flood with `launch` (given the command line: `ip netns exec …` around it).
    public static func start(
        count: Int, holdSeconds: Double, sources: [String], targets: [Target], in scratch: ScratchDirectory,
        launch: (String, [String]) throws -> PeerProcess
    ) throws -> PeerProcess {
        try scratch.write("idle-flood.py", script)
        return try launch("python3", [scratch.path("idle-flood.py"), String(count), String(holdSeconds), sources.joined(separator: ",")]
            + targets.map { $0.host.contains(":") ? "[\($0.host)]:\($0.port)" : "\($0.host):\($0.port)" })
    }

    /// The counts the flood printed at its end.
    public static func outcome(of process: PeerProcess, timeout: Duration) async throws -> Outcome {
        _ = try await process.wait(timeout: timeout)
        guard let line = process.text.split(separator: "\n").first(where: { $0.hasPrefix("result ") }) else {
            throw PeerError("the flood printed no result:\n\(process.text.suffix(2000))")
        }
        var values: [String: Int] = [:]
        for field in line.dropFirst("result ".count).split(separator: " ") {
            let parts = field.split(separator: "=")
            if parts.count == 2, let value = Int(parts[1]) { values[String(parts[0])] = value }
        }
        return Outcome(opened: values["opened"] ?? 0, closedByPeer: values["closed"] ?? 0, stillOpen: values["open"] ?? -1)
    }
}
