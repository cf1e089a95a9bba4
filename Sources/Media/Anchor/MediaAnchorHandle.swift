public import NIOCore

extension MediaRelay {
    /// Puts an anchored stream (`AnchoredStream`) between two open legs; both start with
    /// `.unknown` until `update` tells them what offer/answer agreed. It runs until `close`.
    public func anchor(_ a: MediaLegSocket, _ b: MediaLegSocket, label: String = "an anchored call") async throws -> MediaAnchorHandle {
        guard a.thread === b.thread else { throw RelayError.notOnSameThread }
        let thread = a.thread
        let contexts = ["a", "b"].map { Array("anchored media of \(label.prefix(160)), leg \($0)".utf8) }
        return try await thread.submit {
            let box = MediaAnchorBox(a: a, b: b, crashContexts: contexts)
            box.stream = try AnchoredStream(a: .unknown, b: .unknown, sink: box)
            box.install()
            return MediaAnchorHandle(box: box, thread: thread, a: a, b: b)
        }
    }
}

/// A running anchored stream; everything on it hops to its media thread.
public final class MediaAnchorHandle: @unchecked Sendable {
    private let box: MediaAnchorBox
    private let thread: MediaIOThread
    public let a: MediaLegSocket
    public let b: MediaLegSocket

    init(box: MediaAnchorBox, thread: MediaIOThread, a: MediaLegSocket, b: MediaLegSocket) {
        self.box = box
        self.thread = thread
        self.a = a
        self.b = b
    }

    public func socket(_ side: MediaLegSide) -> MediaLegSocket { side == .a ? a : b }

    /// Offer/answer agreed (or changed) what `side` faces.
    public func update(_ side: MediaLegSide, to config: AnchorLegConfiguration) async throws {
        let box = self.box
        try await thread.submit { try box.stream?.update(side, to: config) }
    }

    public func counters(_ side: MediaLegSide) async throws -> AnchorLegCounters {
        let box = self.box
        return try await thread.submit { box.stream?.counters(side) ?? AnchorLegCounters() }
    }

    public func configuration(_ side: MediaLegSide) async throws -> AnchorLegConfiguration {
        let box = self.box
        return try await thread.submit { box.stream?.configuration(side) ?? .unknown }
    }

    /// Where `side` sends its RTP now (after latching).
    public func destination(_ side: MediaLegSide) async throws -> SocketAddress? {
        let box = self.box
        return try await thread.submit { box.stream?.destination(side) }
    }

    /// Runs `body` on the stream's media thread (a benchmark's thread CPU clock).
    public func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async throws -> T {
        try await thread.submit { body() }
    }

    /// Stops relaying and closes both legs' sockets (their ports go back to the pool).
    public func close() async {
        let box = self.box
        try? await thread.submit { box.stop() }
        await a.close()
        await b.close()
    }
}

/// The anchored stream with its sockets, on their thread.
final class MediaAnchorBox: MediaPacketSink, MediaDatagramHandler {
    var stream: AnchoredStream?
    private let a: MediaLegSocket
    private let b: MediaLegSocket
    let crashContexts: [[UInt8]]

    init(a: MediaLegSocket, b: MediaLegSocket, crashContexts: [[UInt8]]) {
        self.a = a
        self.b = b
        self.crashContexts = crashContexts
    }

    func install() {
        a.attach(self, as: .a)
        b.attach(self, as: .b)
    }

    func stop() {
        a.detach()
        b.detach()
        stream = nil
    }

    var isActive: Bool { stream != nil }

    func receive(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: SocketAddress, on side: MediaLegSide, rtcpSocket: Bool, now: UInt64) {
        stream?.receive(buffer, length: length, from: source, on: side, rtcpSocket: rtcpSocket, now: now)
    }

    func dropOversized(on side: MediaLegSide) { stream?.dropOversized(on: side) }

    func tick(now: UInt64, everyone: Bool) {}

    func send(_ packet: UnsafeRawBufferPointer, to address: SocketAddress, from leg: MediaLegSide, rtcp: Bool) {
        (leg == .a ? a : b).send(packet, to: address, rtcp: rtcp)
    }
}
