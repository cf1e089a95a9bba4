public import Foundation

/// A real program started by a test (sipp, stunnel4, openssl), with its output kept for the
/// failure message. A program that is missing fails the test with the reason: peers are part of
/// the suite, installed by scripts/bootstrap.
public final class PeerProcess: @unchecked Sendable {
    public let name: String
    public let process = Process()
    private let output = Pipe()
    private let lock = NSLock()
    private var collected = Data()

    /// `environment` is added to this process's own.
    public init(_ executable: String, _ arguments: [String], directory: URL? = nil, environment: [String: String] = [:]) throws {
        name = executable
        guard let path = PeerProcess.find(executable) else {
            throw PeerError("\(executable) is not installed; run scripts/bootstrap (it installs the test peers)")
        }
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        if let directory { process.currentDirectoryURL = directory }
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            // read(2) of what is there, rather than `availableData`, which traps on EAGAIN (it
            // happened under the full suite and took the whole test process down), or
            // `read(upToCount:)`, which waits for the count; a would-block is no end.
            var buffer = [UInt8](repeating: 0, count: 65_536)
            let count = buffer.withUnsafeMutableBytes { Glibc.read(handle.fileDescriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EAGAIN || errno == EINTR { return }
            guard let self, count > 0 else {
                handle.readabilityHandler = nil  // EOF or an error: stop being called
                return
            }
            let data = Data(buffer[..<count])
            self.lock.lock()
            self.collected.append(data)
            self.lock.unlock()
        }
        try process.run()
    }

    public static func find(_ executable: String) -> String? {
        if executable.contains("/") { return FileManager.default.isExecutableFile(atPath: executable) ? executable : nil }
        for directory in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"] {
            let path = directory + "/" + executable
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    public var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: collected, as: UTF8.self)
    }

    /// Waits for the program to exit by itself, at most `timeout`; kills it past that.
    public func wait(timeout: Duration) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline {
                stop()
                throw PeerError("\(name) did not finish within \(timeout); output:\n\(text)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(50))  // let the pipe drain
        return process.terminationStatus
    }

    /// Waits until the output contains `marker`.
    public func waitForOutput(_ marker: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while !text.contains(marker) {
            guard process.isRunning else { throw PeerError("\(name) exited before printing '\(marker)':\n\(text)") }
            guard ContinuousClock.now < deadline else { throw PeerError("\(name) did not print '\(marker)':\n\(text)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Ends the program with SIGKILL: children spawned from a process whose threads block
    /// signals may not see SIGTERM (stunnel4 here), and nothing of theirs needs a clean exit.
    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

public struct PeerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Runs a command to completion and returns its output; a non-zero exit throws.
@discardableResult
public func runCommand(_ executable: String, _ arguments: [String], directory: URL? = nil) async throws -> String {
    let peer = try PeerProcess(executable, arguments, directory: directory)
    let status = try await peer.wait(timeout: .seconds(60))
    guard status == 0 else { throw PeerError("\(executable) \(arguments.joined(separator: " ")) exited \(status):\n\(peer.text)") }
    return peer.text
}

/// A scratch directory for one test, removed afterwards.
public final class ScratchDirectory: @unchecked Sendable {
    public let url: URL

    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("symphony-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    public func write(_ name: String, _ text: String) throws {
        try text.write(toFile: path(name), atomically: true, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}

/// A CA and a leaf certificate for 127.0.0.1 / ::1 / localhost, made with openssl for one test.
public struct TestCertificates {
    public let caFile: String
    public let certificateFile: String
    public let keyFile: String

    public static func make(in scratch: ScratchDirectory, name: String = "server") async throws -> TestCertificates {
        let ca = scratch.path("ca.pem"), caKey = scratch.path("ca.key")
        if !FileManager.default.fileExists(atPath: ca) {
            try await runCommand("openssl", [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-subj", "/CN=Symphony Test CA", "-keyout", caKey, "-out", ca,
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        }
        let key = scratch.path("\(name).key"), csr = scratch.path("\(name).csr"), cert = scratch.path("\(name).pem")
        try await runCommand("openssl", [
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=\(name)",
            "-keyout", key, "-out", csr,
        ])
        try scratch.write("\(name).ext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
        try await runCommand("openssl", [
            "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-days", "2",
            "-extfile", scratch.path("\(name).ext"), "-out", cert,
        ])
        return TestCertificates(caFile: ca, certificateFile: cert, keyFile: key)
    }
}

/// A port nobody listens on right now (bound and released), for peers that need one up front.
public func freePort(udp: Bool = false) throws -> Int {
    try bindTest(udp: udp, port: 0) ?? 0
}

/// Whether `port` can be bound on 127.0.0.1 right now.
public func portIsFree(_ port: Int, udp: Bool = false) -> Bool {
    (try? bindTest(udp: udp, port: port)) != nil
}

private func bindTest(udp: Bool, port: Int) throws -> Int? {
    let fd = socket(AF_INET, udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw PeerError("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port)).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    guard bound == 0 else {
        if port != 0 { return nil }
        throw PeerError("bind() failed")
    }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Polls `ss` until something listens on the port (sipp and stunnel take a moment to bind).
public func waitUntilListening(port: Int, udp: Bool, timeout: Duration = .seconds(10)) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let output = try await runCommand("ss", ["-Hln", udp ? "-u" : "-t"])
        if output.split(separator: "\n").contains(where: { $0.contains(":\(port) ") }) { return }
        try await Task.sleep(for: .milliseconds(30))
    }
    throw PeerError("nothing listens on port \(port) after \(timeout)")
}

/// stunnel4 in front of a TCP-only peer (Debian's sipp has no TLS): a client tunnel that takes
/// plain TCP on `accept` and speaks TLS to `connect`, verifying the server against `caFile`
/// (`checkIP 127.0.0.1`), or a server tunnel that takes TLS on `accept` with `certificate`/`key`
/// and speaks plain TCP to `connect`. Returns once the tunnel listens.
public enum Stunnel {
    /// A client tunnel on a free port of its own; returns it with the port.
    public static func client(connect: Int, caFile: String, in scratch: ScratchDirectory) async throws -> (tunnel: PeerProcess, port: Int) {
        try await start("client", in: scratch) { accept in
            """
            client = yes
            accept = 127.0.0.1:\(accept)
            connect = 127.0.0.1:\(connect)
            CAfile = \(caFile)
            verifyChain = yes
            checkIP = 127.0.0.1
            """
        }
    }

    /// A server tunnel on a free port of its own; returns it with the port.
    public static func server(connect: Int, certificate: String, key: String, in scratch: ScratchDirectory) async throws -> (tunnel: PeerProcess, port: Int) {
        try await start("server", in: scratch) { accept in
            """
            accept = 127.0.0.1:\(accept)
            connect = 127.0.0.1:\(connect)
            cert = \(certificate)
            key = \(key)
            """
        }
    }

    /// A free port can be taken between the test's check and stunnel's bind (the other suites
    /// run in parallel and open connections all the time): a tunnel that exits instead of
    /// listening is started again on another port, three times at most, and its output tells why.
    private static func start(_ kind: String, in scratch: ScratchDirectory, service: (Int) -> String) async throws -> (tunnel: PeerProcess, port: Int) {
        var failures: [String] = []
        for _ in 0..<3 {
            let accept = try freePort()
            let name = "\(kind)-\(accept)"
            try scratch.write("stunnel-\(name).conf", "foreground = yes\npid =\n[\(name)]\n\(service(accept))\n")
            let tunnel = try PeerProcess("stunnel4", [scratch.path("stunnel-\(name).conf")], directory: scratch.url)
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline, tunnel.process.isRunning {
                let output = try await runCommand("ss", ["-Hlnt"])
                if output.split(separator: "\n").contains(where: { $0.contains("127.0.0.1:\(accept) ") }) { return (tunnel, accept) }
                try await Task.sleep(for: .milliseconds(30))
            }
            tunnel.stop()
            failures.append("port \(accept): \(tunnel.text.suffix(500))")
        }
        throw PeerError("stunnel4 did not listen:\n\(failures.joined(separator: "\n"))")
    }
}

/// One of the project's executables, built next to the test bundle in the build folder.
public func builtExecutable(_ name: String) throws -> String {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for folder in [bundle, bundle.deletingLastPathComponent()] {
        let candidate = folder.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw PeerError("\(name) is not built next to the tests (\(bundle.path)); `make test` builds it")
}
