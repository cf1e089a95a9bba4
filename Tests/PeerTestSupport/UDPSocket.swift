import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A plain UDP socket on a loopback address (SIP and media attackers, hand-made SIP peers).
public final class UDPSocket: @unchecked Sendable {
    public let fd: Int32
    public let port: Int

    public init(port: Int = 0, host: String = "127.0.0.1") throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = UInt16(port).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard fd >= 0, bound == 0 else { throw PeerError("cannot bind UDP \(host):\(port)") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        var size: Int32 = 1 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4)
    }

    deinit { close(fd) }

    public func send(_ bytes: [UInt8], to port: Int, host: String = "127.0.0.1") {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = UInt16(port).bigEndian
        _ = bytes.withUnsafeBytes { raw in
            withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
    }

    /// The next datagram within `timeout`, or nil.
    public func receive(timeout: Duration) async throws -> [UInt8]? {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { return Array(buffer[..<n]) }
            try await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    /// Empties the socket (what the gateway sent meanwhile).
    public func drain() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while buffer.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
    }
}

extension UDPSocket {
    /// A SIP message as text (line ends as written: use `\r\n`).
    public func send(text: String, to port: Int, host: String = "127.0.0.1") {
        send(Array(text.utf8), to: port, host: host)
    }

    /// The next datagram as text, or nil.
    public func receiveText(timeout: Duration) async throws -> String? {
        try await receive(timeout: timeout).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// A TCP listening socket that only counts who connects: the "victim" a forged route or contact
/// would make a daemon connect to.
public final class TCPVictim: @unchecked Sendable {
    public let fd: Int32
    public let port: Int
    public let host: String

    public init(host: String = "127.0.0.1") throws {
        self.host = host
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard fd >= 0, bound == 0, listen(fd, 64) == 0 else { throw PeerError("cannot listen on TCP \(host)") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = Int(UInt16(bigEndian: address.sin_port))
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit { close(fd) }

    /// Connections accepted since the last call (each is closed at once).
    public func accepted() -> Int {
        var count = 0
        while true {
            let connection = accept(fd, nil, nil)
            guard connection >= 0 else { return count }
            close(connection)
            count += 1
        }
    }

    /// What `ss` lists as connected to this port, one line per socket (empty: nobody).
    public func socketStatistics() async throws -> String {
        try await runCommand("ss", ["-Htn", "state", "all", "dst", "\(host):\(port)"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
