import Foundation

/// linphonec (liblinphone 5.1, the stack of the Linphone apps) as a test peer: its own HOME (it
/// keeps a database there and does not start its SIP stack without one), an rc file with one
/// TLS account, commands fed to its standard input by `tail -f` of a file (../shared/PEERS.md).
public final class Linphone: @unchecked Sendable {
    public let peer: PeerProcess

    /// Registers `identity` (`sip:alice@example.net`) through `proxy` (`sip:localhost:5063;transport=tls`)
    /// with `password`, trusting `caFile`. Ports 0 in the rc turn UDP and TCP off, -1 gives TLS a random port.
    public init(scratch: ScratchDirectory, identity: String, proxy: String, username: String, password: String, realm: String, caFile: String) throws {
        let home = scratch.path("linphone-home")
        try FileManager.default.createDirectory(atPath: home + "/.local/share/linphone", withIntermediateDirectories: true)
        let domain = identity.split(separator: "@").last.map(String.init) ?? ""
        let rc = """
            [sip]
            sip_port=0
            sip_tcp_port=0
            sip_tls_port=-1
            root_ca=\(caFile)
            verify_server_certs=1
            verify_server_cn=1
            default_proxy=0
            media_encryption=srtp
            media_encryption_mandatory=1

            [proxy_0]
            reg_proxy=<\(proxy)>
            reg_identity=\(identity)
            reg_expires=600
            reg_sendregister=1
            publish=0

            [auth_info_0]
            username=\(username)
            passwd=\(password)
            realm=\(realm)
            domain=\(domain)

            [sound]
            echocancellation=0

            """
        try scratch.write("linphonerc", rc)
        // Commands go through a FIFO that linphonec's shell holds open for writing too (so it
        // never reads an end): a pipe of the test process's own on linphonec's standard input
        // went wrong under the full suite (SwiftNIO trapped on a reused descriptor).
        commands = scratch.path("linphone-commands")
        guard mkfifo(commands, 0o600) == 0 else { throw PeerError("cannot make the FIFO \(commands)") }
        peer = try PeerProcess("bash", ["-c", "exec 3<>'\(commands)'; exec linphonec -c '\(scratch.path("linphonerc"))' <&3 3<&-"], environment: ["HOME": home])
    }

    private let commands: String

    /// Writes a command line for linphonec into its FIFO (never blocking: its shell holds the
    /// FIFO open for reading).
    public func send(_ line: String) {
        let fd = open(commands, O_WRONLY | O_NONBLOCK)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Asks for the registration state until linphonec says it is registered (or `timeout`).
    public func waitUntilRegistered(timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !peer.text.contains("registered, identity=") {
            guard peer.process.isRunning else { throw PeerError("linphonec exited:\n\(peer.text.suffix(3000))") }
            guard ContinuousClock.now < deadline else { throw PeerError("linphonec did not register within \(timeout):\n\(peer.text.suffix(3000))") }
            send("status register")
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    /// Whether liblinphone asked for a key password: what it does when the server requests a
    /// client certificate (it then waits on standard input for an answer).
    public var askedForAPassword: Bool { peer.text.contains("Password for") }

    /// linphonec, tail and bash: their process group (the test runner starts each child as a
    /// group of its own).
    public func stop() {
        let pid = peer.process.processIdentifier
        if peer.process.isRunning, pid > 1 { kill(-pid, SIGKILL) }
        peer.stop()
    }
}
