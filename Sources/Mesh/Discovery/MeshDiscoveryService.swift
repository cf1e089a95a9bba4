import CrashContext
public import Logging
public import NIOCore
import NIOPosix
import NetworkAddress
#if canImport(Glibc)
import Glibc
#endif

/// mDNS on the mesh interfaces: one UDP socket per interface on port 5353, member of ff02::fb
/// there, sending out of that interface only (IPV6_MULTICAST_IF, hop limit 255 as RFC 6762 §11
/// asks). Every socket bound to the port hears every interface's multicast, so each keeps only
/// what arrived on its own interface (IPV6_PKTINFO). The protocol is `MeshDiscovery`'s; this
/// runs its outputs and its timer.
public actor MeshDiscoveryService {
    public nonisolated let eventLoop: any EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { eventLoop.executor.asUnownedSerialExecutor() }
    static let group = "ff02::fb"
    static let port = 5353

    struct Link {
        var discovery: MeshDiscovery
        let index: UInt32
        let channel: any Channel
        let destination: SocketAddress
        /// Our address there, to start again with when the socket is lost.
        let address: LinkLocalAddress
    }

    private var node: MeshNode
    private(set) var links: [String: Link] = [:]
    private var timer: RepeatedTask?
    private var stopped = false
    private let logger: Logger
    private let clock: @Sendable () -> Double
    private let continuation: AsyncStream<[MeshPeer]>.Continuation
    /// The whole peer table after each change.
    public nonisolated let peerChanges: AsyncStream<[MeshPeer]>

    public init(
        node: MeshNode, eventLoop: any EventLoop, logger: Logger = Logger(label: "mesh-discovery"),
        clock: @escaping @Sendable () -> Double = { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }
    ) {
        self.node = node
        self.eventLoop = eventLoop
        self.logger = logger
        self.clock = clock
        (peerChanges, continuation) = AsyncStream.makeStream(of: [MeshPeer].self, bufferingPolicy: .bufferingNewest(16))
    }

    /// Every peer seen on any interface, the most recently heard first.
    public var peers: [MeshPeer] {
        links.values.flatMap { $0.discovery.peers.values }.sorted { $0.lastSeen > $1.lastSeen }
    }


    /// Starts discovery on `interface`, whose link-local address is `address`.
    public func add(interface: String, address: LinkLocalAddress) async throws {
        guard links[interface] == nil else { return }
        guard let index = NetworkInterface.index(of: interface) else { throw SocketAddress.ZoneError.unknownInterface(interface) }
        let device = try System.enumerateDevices().first { $0.name == interface && $0.address?.protocol == .inet6 }
        let channel = try await DatagramBootstrap(group: eventLoop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(ChannelOptions.Types.SocketOption(level: .socket, name: .init(rawValue: SO_REUSEPORT)), value: 1)
            .channelOption(.receivePacketInfo, value: true)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(MDNSHandler(service: self, interface: interface, index: index))
                }
            }
            .bind(to: try SocketAddress(ipAddress: "::", port: Self.port)).get()
        do {
            let options = channel as? any SocketOptionProvider
            _ = try await options?.setIPv6MulticastIF(CUnsignedInt(index)).get()
            _ = try await options?.setIPv6MulticastHops(255).get()
            guard let multicast = channel as? any MulticastChannel else { throw ChannelError.operationUnsupported }
            try await multicast.joinGroup(try SocketAddress(ipAddress: Self.group, port: Self.port), device: device).get()
        } catch {
            try? await channel.close()
            throw error
        }
        let bytes = try SocketAddress(ipAddress: address.address, port: 0)
        guard case .v6(let v6) = bytes else { throw SocketAddress.ZoneError.notIPv6(address.address) }
        let raw = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
        var link = Link(
            discovery: MeshDiscovery(node: node, interface: interface, address: raw), index: index, channel: channel,
            destination: try SocketAddress(ipAddressWithZone: "\(Self.group)%\(index)", port: Self.port), address: address)
        let outputs = link.discovery.start(at: clock())
        links[interface] = link
        perform(outputs, on: interface)
        if timer == nil {
            timer = eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(50), delay: .milliseconds(50)) { [self] _ in
                self.assumeIsolated { $0.tick() }
            }
        }
        logger.info("mesh discovery on \(interface)", metadata: ["address": "\(address.address)", "service": "\(MeshDiscovery.serviceType)"])
    }

    /// New numbers (a reload): announced again on every interface.
    public func update(node: MeshNode) {
        self.node = node
        for name in links.keys {
            guard let outputs = links[name]?.discovery.update(node: node, at: clock()) else { continue }
            perform(outputs, on: name)
        }
    }

    /// Queries every interface again at once.
    public func refresh() {
        for name in links.keys {
            guard let outputs = links[name]?.discovery.queryNow(at: clock()) else { continue }
            perform(outputs, on: name)
        }
    }

    /// Goodbyes on every interface, then the sockets close.
    public func stop() async {
        stopped = true
        timer?.cancel()
        timer = nil
        for (name, link) in links { perform(link.discovery.stop(), on: name) }
        for link in links.values { try? await link.channel.close() }
        links = [:]
    }

    /// An interface's socket closed while discovery runs: SwiftNIO closes a datagram channel on
    /// a send error such as ENETDOWN (the interface went down under a multicast send). Discovery
    /// starts there again — at once, then every 2 s while the interface is not back — so that
    /// the mesh is known again when the LAN is.
    func linkClosed(_ interface: String, channel: any Channel, error: (any Error)?) {
        guard !stopped, let link = links[interface], link.channel === channel else { return }
        links[interface] = nil
        logger.error("mDNS socket on \(interface) closed (\(error.map { "\($0)" } ?? "no error given")); starting discovery there again")
        Task { await self.rejoin(interface, address: link.address) }
    }

    private func rejoin(_ interface: String, address: LinkLocalAddress) async {
        var said = false
        while !stopped, links[interface] == nil {
            do {
                try await add(interface: interface, address: address)
                return
            } catch {
                if !said { logger.warning("mDNS on \(interface) not back yet: \(error); trying every 2 s") }
                said = true
                try? await Task.sleep(for: .seconds(2))
            }
        }
    }

    private func tick() {
        let now = clock()
        for name in links.keys {
            guard let outputs = links[name]?.discovery.tick(at: now) else { continue }
            perform(outputs, on: name)
        }
    }

    func received(_ bytes: [UInt8], from source: SocketAddress, interface: String) {
        CrashContext.set("mDNS packet from \(source.ipAddress ?? "?") on \(interface)")
        guard let link = links[interface], source.ipAddress != MeshDiscovery.text(link.discovery.address) else { return }
        let message: DNSMessage
        do { message = try DNSMessage(decoding: bytes) } catch {
            logger.debug("undecodable mDNS packet on \(interface): \(error)")
            return
        }
        let outputs = links[interface]!.discovery.received(message, from: source.ipAddress ?? "", at: clock(), jitter: Double.random(in: 0..<1))
        perform(outputs, on: interface)
    }

    private func perform(_ outputs: [MeshDiscovery.Output], on interface: String) {
        guard let link = links[interface] else { return }
        for output in outputs {
            switch output {
            case .send(let message):
                let data = link.channel.allocator.buffer(bytes: message.encoded())
                link.channel.writeAndFlush(AddressedEnvelope(remoteAddress: link.destination, data: data), promise: nil)
            case .peersChanged:
                let peers = self.peers
                logger.info("mesh peers: \(peers.map { "\($0.device)@\($0.address.address)%\($0.address.interface):\($0.port) [\($0.numbers.joined(separator: ","))]" }.joined(separator: "; "))")
                continuation.yield(peers)
            }
        }
    }
}

/// Thin: hands datagrams that arrived on its interface to the service.
final class MDNSHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let service: MeshDiscoveryService
    let interface: String
    let index: UInt32

    init(service: MeshDiscoveryService, interface: String, index: UInt32) {
        self.service = service
        self.interface = interface
        self.index = index
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let arrivedOn = envelope.metadata?.packetInfo.map { UInt32($0.interfaceIndex) } ?? envelope.remoteAddress.scopeID
        guard arrivedOn == index else { return }
        let bytes = Array(envelope.data.readableBytesView)
        let (service, interface, source) = (service, interface, envelope.remoteAddress)
        service.assumeIsolated { $0.received(bytes, from: source, interface: interface) }
    }

    private var lastError: (any Error)?

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        lastError = error
    }

    func channelInactive(context: ChannelHandlerContext) {
        let (service, interface, channel, error) = (service, interface, context.channel, lastError)
        service.assumeIsolated { $0.linkClosed(interface, channel: channel, error: error) }
        context.fireChannelInactive()
    }
}
