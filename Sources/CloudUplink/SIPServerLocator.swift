import Foundation
public import NIOCore
public import NIOPosix
public import NetworkAddress
public import SIPTransport

/// Where to send a `sips:` request for a domain (RFC 3263 §4, for TLS only: the cloud leg is SIPS).
///
/// - an IP address, or a name with a port: that, as it is (§4.2: A/AAAA of the name; the
///   endpoint's connect looks the name up);
/// - otherwise NAPTR of the domain (§4.1): records whose service is `SIPS+D2T` and flag `s`, by
///   order then preference, each followed to its SRV name; without usable NAPTR records, SRV of
///   `_sips._tcp.<domain>`; without SRV records, the domain itself on 5061;
/// - SRV targets (RFC 2782) by priority, weighted at random within one, each target's AAAA and A
///   addresses in turn; a single "." target means the service is not offered.
///
/// The TLS peer is checked against the SIP domain, never against a name DNS handed out (RFC 5922
/// §4): a spoofed SRV answer leads only to a server that cannot prove the domain.
public struct SIPServerLocator: Sendable {
    public var resolver: DNSStubResolver

    public init(resolver: DNSStubResolver) {
        self.resolver = resolver
    }

    /// Bounds on what one lookup follows (a hostile DNS server can hand out thousands of
    /// records): NAPTR replacements tried, SRV targets resolved, addresses kept per target.
    public static let maxServiceNames = 4
    public static let maxTargets = 8
    public static let maxAddressesPerTarget = 4

    /// The destinations to try, in order; empty when DNS says the domain offers no SIPS. At most
    /// `maxServiceNames` SRV names, `maxTargets` targets and `maxAddressesPerTarget` addresses
    /// each: a lookup asks at most 1 + 4 + 16 questions, and none after `budget` has passed (what
    /// was found by then is used).
    public func locate(host: String, port: Int?, budget: Duration = .seconds(10)) async throws -> [SIPDestination] {
        var direct = SIPDestination(transport: .tls, host: host, port: port ?? 5061)
        direct.serverName = host
        if port != nil || (try? SocketAddress(ipAddress: host, port: 0)) != nil { return [direct] }
        let deadline = ContinuousClock.now + budget
        let resolver = self.resolver
        func ask(_ name: String, _ type: DNSMessage.RecordType) async -> [DNSMessage.Record] {
            guard ContinuousClock.now < deadline else { return [] }
            return (try? await resolver.query(name, type)) ?? []
        }
        var srvNames: [String] = []
        let naptr = await ask(host, .naptr)
        let usable = naptr.compactMap { record -> (UInt16, UInt16, String)? in
            guard case .naptr(let order, let preference, let flags, let services, _, let replacement) = record.data,
                flags.lowercased() == "s", services.uppercased() == "SIPS+D2T", !replacement.isEmpty
            else { return nil }
            return (order, preference, replacement)
        }
        srvNames = Array(usable.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map(\.2).prefix(Self.maxServiceNames))
        if srvNames.isEmpty { srvNames = ["_sips._tcp.\(host)"] }
        var targets: [(host: String, port: Int)] = []
        var sawService = false
        for name in srvNames {
            let records = await ask(name, .srv)
            let srv = records.compactMap { record -> (priority: UInt16, weight: UInt16, port: UInt16, target: String)? in
                guard case .srv(let priority, let weight, let port, let target) = record.data else { return nil }
                return (priority, weight, port, target)
            }
            guard !srv.isEmpty else { continue }
            sawService = true
            if srv.count == 1, srv[0].target.isEmpty || srv[0].target == "." { return [] }  // RFC 2782: not offered
            var generator = SystemRandomNumberGenerator()
            for entry in Self.order(srv, using: &generator) where entry.port > 0 && !entry.target.isEmpty {
                targets.append((entry.target, Int(entry.port)))
            }
            if !targets.isEmpty { break }
        }
        guard sawService else { return [direct] }
        var destinations: [SIPDestination] = []
        for target in targets.prefix(Self.maxTargets) {
            var addresses: [String] = []
            for type in [DNSMessage.RecordType.aaaa, .a] {
                for record in await ask(target.host, type) {
                    switch record.data {
                    case .aaaa(let bytes), .a(let bytes):
                        if let text = Self.text(of: bytes) { addresses.append(text) }
                    default: break
                    }
                }
            }
            // A target DNS cannot resolve here is left to the system's resolver (/etc/hosts).
            for address in addresses.isEmpty ? [target.host] : Array(addresses.prefix(Self.maxAddressesPerTarget)) {
                var destination = SIPDestination(transport: .tls, host: address, port: target.port)
                destination.serverName = host
                destinations.append(destination)
            }
        }
        return destinations
    }

    /// An A or AAAA record's address as text (`inet_ntop`).
    static func text(of bytes: [UInt8]) -> String? {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        var buffer = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        let done = bytes.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) }
        guard done != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// RFC 2782's order: lowest priority first; within one, a weighted random draw without
    /// replacement (weight 0 entries first in the running sum, so they are chosen rarely).
    typealias ServiceEntry = (priority: UInt16, weight: UInt16, port: UInt16, target: String)

    static func order<Generator: RandomNumberGenerator>(_ entries: [ServiceEntry], using generator: inout Generator) -> [ServiceEntry] {
        typealias Entry = ServiceEntry
        var result: [Entry] = []
        for priority in Set(entries.map(\.priority)).sorted() {
            var pool = entries.filter { $0.priority == priority }.sorted { $0.weight < $1.weight }
            while !pool.isEmpty {
                let total = pool.reduce(0) { $0 + Int($1.weight) }
                let draw = total == 0 ? 0 : Int.random(in: 0...total, using: &generator)
                var running = 0
                var index = pool.count - 1
                for (candidate, entry) in pool.enumerated() {
                    running += Int(entry.weight)
                    if running >= draw { index = candidate; break }
                }
                result.append(pool.remove(at: index))
            }
        }
        return result
    }
}

/// A small DNS client for the lookups above: UDP queries with recursion desired to the name
/// servers of /etc/resolv.conf (or the ones given), each answer checked against the query (id,
/// question, source) before it is read; a malformed answer counts as none, and a truncated one
/// (TC) is asked again over TCP (RFC 7766 §5: a big SRV set does not fit 512 bytes).
public struct DNSStubResolver: Sendable {
    public var nameServers: [SocketAddress]
    public var timeout: Duration
    public var group: any EventLoopGroup

    public init(nameServers: [SocketAddress], timeout: Duration = .seconds(2), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.nameServers = nameServers
        self.timeout = timeout
        self.group = group
    }

    /// The name servers of `resolvConf` (at most 3, as the C library reads; none → 127.0.0.1).
    public static func system(resolvConf: String = "/etc/resolv.conf") -> DNSStubResolver {
        let text = (try? String(contentsOfFile: resolvConf, encoding: .utf8)) ?? ""
        let servers = text.split(separator: "\n").compactMap { line -> SocketAddress? in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2, words[0] == "nameserver" else { return nil }
            return try? SocketAddress(ipAddress: String(words[1]), port: 53)
        }
        return DNSStubResolver(nameServers: servers.isEmpty ? [try! SocketAddress(ipAddress: "127.0.0.1", port: 53)] : Array(servers.prefix(3)))
    }

    public enum Failure: Error, CustomStringConvertible {
        case noAnswer(String)
        public var description: String {
            switch self {
            case .noAnswer(let name): "no DNS answer for \(name)"
            }
        }
    }

    /// The answer records of `type` for `name` from the first server that answers (NXDOMAIN and
    /// empty answers are answers: no records).
    public func query(_ name: String, _ type: DNSMessage.RecordType) async throws -> [DNSMessage.Record] {
        let id = UInt16.random(in: 0...UInt16.max)
        let query = DNSMessage(id: id, flags: 0x0100, questions: [DNSMessage.Question(name: name, type: type)]).encoded()
        func answer(_ reply: [UInt8]) -> DNSMessage? {
            guard let message = try? DNSMessage(decoding: reply), message.id == id, message.isResponse,
                message.questions.first.map({ $0.name.lowercased() == name.lowercased() }) ?? false
            else { return nil }
            return message
        }
        for server in nameServers {
            guard let reply = try? await exchange(query, with: server), var message = answer(reply) else { continue }
            if message.flags & 0x0200 != 0 {
                // TC: the datagram was cut; the whole answer comes over TCP, or none from here.
                guard let whole = try? await exchangeTCP(query, with: server), let full = answer(whole), full.flags & 0x0200 == 0 else { continue }
                message = full
            }
            let rcode = message.flags & 0x000F
            guard rcode == 0 || rcode == 3 else { continue }
            return message.answers.filter { $0.data.type == type.rawValue && $0.name.lowercased() == name.lowercased() }
                + message.answers.filter { $0.data.type == type.rawValue && $0.name.lowercased() != name.lowercased() && Self.isAlias(of: name, in: message) }
        }
        throw Failure.noAnswer(name)
    }

    /// Whether the answer's other records of the type are reached through a CNAME of `name`.
    private static func isAlias(of name: String, in message: DNSMessage) -> Bool {
        message.answers.contains { $0.name.lowercased() == name.lowercased() && $0.data.type == 5 }
    }

    private func exchange(_ query: [UInt8], with server: SocketAddress) async throws -> [UInt8] {
        let bind = server.protocol == .inet6 ? try SocketAddress(ipAddress: "::", port: 0) : try SocketAddress(ipAddress: "0.0.0.0", port: 0)
        let answer = group.next().makePromise(of: [UInt8].self)
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ReplyHandler(server: server, answer: answer)) }
            }
            .bind(to: bind).get()
        defer { channel.close(promise: nil) }
        let handler = try await channel.pipeline.handler(type: ReplyHandler.self).get()
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) { handler.finish(.failure(Failure.noAnswer("\(server)"))) }
        defer { timer.cancel() }
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: ByteBuffer(bytes: query))).get()
        return try await answer.futureResult.get()
    }

    /// The query over TCP (RFC 1035 §4.2.2: each message after its two-byte length), one answer
    /// back within the timeout; at most 64 KiB, as the length allows.
    private func exchangeTCP(_ query: [UInt8], with server: SocketAddress) async throws -> [UInt8] {
        guard let length = UInt16(exactly: query.count) else { throw Failure.noAnswer("a query of \(query.count) bytes") }
        let answer = group.next().makePromise(of: [UInt8].self)
        let handler = StreamReplyHandler(answer: answer)
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(timeout))
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) } }
            .connect(to: server).get()
        defer { channel.close(promise: nil) }
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) { handler.finish(.failure(Failure.noAnswer("\(server) over TCP"))) }
        defer { timer.cancel() }
        var framed = ByteBuffer()
        framed.writeInteger(length)
        framed.writeBytes(query)
        try await channel.writeAndFlush(framed).get()
        return try await answer.futureResult.get()
    }

    /// Collects one length-prefixed answer from the stream.
    private final class StreamReplyHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let answer: EventLoopPromise<[UInt8]>
        private var received = ByteBuffer()
        private var done = false

        init(answer: EventLoopPromise<[UInt8]>) { self.answer = answer }

        func finish(_ result: Result<[UInt8], any Error>) {
            guard !done else { return }
            done = true
            answer.completeWith(result)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            received.writeBuffer(&bytes)
            guard let length = received.getInteger(at: received.readerIndex, as: UInt16.self),
                let message = received.getBytes(at: received.readerIndex + 2, length: Int(length))
            else { return }
            finish(.success(message))
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) { finish(.failure(Failure.noAnswer("the connection closed"))) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { finish(.failure(error)) }
    }

    /// The first datagram from the server (others — a spoofer elsewhere — are ignored).
    private final class ReplyHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let server: SocketAddress
        let answer: EventLoopPromise<[UInt8]>
        /// Completed once: by the first datagram from the server, or by the timeout (both on the
        /// channel's event loop).
        private var done = false

        init(server: SocketAddress, answer: EventLoopPromise<[UInt8]>) {
            self.server = server
            self.answer = answer
        }

        func finish(_ result: Result<[UInt8], any Error>) {
            guard !done else { return }
            done = true
            answer.completeWith(result)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            guard envelope.remoteAddress == server, envelope.data.readableBytes <= 4096 else { return }
            finish(.success(Array(envelope.data.readableBytesView)))
        }
    }
}
