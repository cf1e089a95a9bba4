import Logging
import NIOCore
import NIOPosix

/// The endpoint's stream listeners under pressure (issue 16): every accepted connection is
/// admitted or refused by `ConnectionAdmission` (caps per address and in all), must finish its
/// TLS handshake and send one valid message in time, and accept pauses for a second instead of
/// spinning when the process is out of file descriptors. What is refused is logged once a minute.
extension SIPEndpoint {
    /// The server channel's handlers: accept backs off on EMFILE/ENFILE (SwiftNIO adds no
    /// `AcceptBackoffHandler` to `ServerBootstrap.bind`), and the error is reported.
    nonisolated func configureListener(_ channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler(shouldForwardIOErrorCaught: true))
        try channel.pipeline.syncOperations.addHandler(ListenerErrorHandler(endpoint: self))
    }

    /// An accepted connection: admitted (its deadlines set, its place freed when it closes) or
    /// refused (the initializer throws and SwiftNIO closes it).
    func admitConnection(_ channel: any Channel, id: UInt64, tls: Bool) throws {
        let address = channel.remoteAddress?.ipAddress ?? "?"
        if let filter = sourceFilter, let remote = channel.remoteAddress, !filter.allows(remote) {
            // Not a source that may send requests here: no connection either.
            _ = sourceFilter?.check(remote, now: Self.monotonicSeconds())
            reportSources()
            throw SIPTransportError.connectionRefused
        }
        let verdict = admission.admit(id, from: address, tls: tls)
        guard verdict.accepts else {
            reportAdmission()
            throw SIPTransportError.connectionRefused
        }
        if case .acceptEvicting(let victim) = verdict {
            connections[victim]?.pipeline.fireUserInboundEventTriggered(StreamAbortHandler.Abort())
            reportAdmission()
        }
        let limits = admission.limits
        let handshakeDeadline = tls
            ? channel.eventLoop.scheduleTask(in: TimeAmount(limits.handshakeTimeout)) { [self] in
                self.assumeIsolated { $0.connectionDeadline(channel, id: id, handshakeOnly: true) }
            } : nil
        let messageDeadline = channel.eventLoop.scheduleTask(in: TimeAmount(limits.firstMessageTimeout)) { [self] in
            self.assumeIsolated { $0.connectionDeadline(channel, id: id, handshakeOnly: false) }
        }
        channel.closeFuture.whenComplete { [self] _ in
            // The deadlines hold the channel: cancelled, it goes at once (a flood of short TLS
            // connections otherwise kept 30 s of them, some 300 MB at 1,000 a second).
            handshakeDeadline?.cancel()
            messageDeadline.cancel()
            self.assumeIsolated { $0.admission.closed(id) }
        }
    }

    private func connectionDeadline(_ channel: any Channel, id: UInt64, handshakeOnly: Bool) {
        guard admission.deadlinePassed(id, handshakeOnly: handshakeOnly) else { return }
        // Below TLS: a connection that never finished its handshake has no close_notify to wait for.
        channel.pipeline.fireUserInboundEventTriggered(StreamAbortHandler.Abort())
        reportAdmission()
    }

    /// One line a minute at most, however many connections are refused.
    func reportAdmission() {
        if let text = admission.report(now: Self.monotonicSeconds()) {
            logger.notice("stream connections: \(text)")
        }
    }

    func reportTransactionRefusals() {
        if let text = transactionAdmission.report(now: Self.monotonicSeconds()) {
            logger.notice("\(text)")
        }
    }

    func reportSources() {
        if let text = sourceFilter?.report(now: Self.monotonicSeconds()) {
            logger.notice("\(text)")
        }
    }

    func acceptFailed(_ error: any Error) {
        let now = Self.monotonicSeconds()
        guard now - lastAcceptFailureReport >= 60 else { return }
        lastAcceptFailureReport = now
        logger.error("accepting connections paused for 1 s: \(error) (open: \(admission.openCount); raise LimitNOFILE or lower the caps)")
    }

    static func monotonicSeconds() -> Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }
}

/// After the accept backoff on a listener: accept errors reach the endpoint's log.
final class ListenerErrorHandler: ChannelInboundHandler {
    typealias InboundIn = Any
    private let endpoint: SIPEndpoint

    init(endpoint: SIPEndpoint) {
        self.endpoint = endpoint
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        endpoint.assumeIsolated { $0.acceptFailed(error) }
    }

}

/// How many entries the endpoint keeps per connection, table by table (tests: a closed
/// connection must leave none).
public struct ConnectionTables: Sendable, Equatable, CustomStringConvertible {
    public var connections = 0
    public var flows = 0
    public var keepAlives = 0
    public var certificates = 0
    public var admitted = 0

    public init() {}

    public var description: String {
        "connections \(connections), flows \(flows), keepalives \(keepAlives), certificates \(certificates), admitted \(admitted)"
    }
}

extension SIPEndpoint {
    public var connectionTables: ConnectionTables {
        var tables = ConnectionTables()
        tables.connections = connections.count
        tables.flows = connectionFlows.count
        tables.keepAlives = keepAlives.count
        tables.certificates = peerCertificates.count
        tables.admitted = admission.openCount
        return tables
    }
}
