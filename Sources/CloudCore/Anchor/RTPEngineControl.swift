import Foundation
import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import NIOPosix

/// A client of rtpengine's ng control protocol (UDP; `<cookie> <bencode>`): the core anchors the
/// media of the calls it routes there (`[media] anchor = "rtpengine"`, issue 19). A command is
/// sent up to three times with the same cookie (rtpengine answers a repeat from its cache), one
/// second apart; a reply is taken only from the configured address, for a cookie in flight, and
/// only when it decodes; `result` must be "ok".
public final class RTPEngineControl: Sendable {
    public let server: SocketAddress
    private let channel: any Channel
    private let pending = NIOLockedValueBox<[String: EventLoopPromise<Bencode>]>([:])
    private let nextCookie = NIOLockedValueBox<UInt64>(UInt64.random(in: 1...1 << 40))
    let attempts: Int
    let interval: Duration

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func connect(to server: SocketAddress, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, attempts: Int = 3, interval: Duration = .seconds(1)) async throws -> RTPEngineControl {
        let bind = server.protocol == .inet6 ? try SocketAddress(ipAddress: "::", port: 0) : try SocketAddress(ipAddress: "0.0.0.0", port: 0)
        let box = NIOLockedValueBox<RTPEngineControl?>(nil)
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ReplyHandler(owner: box)) }
            }
            .bind(to: bind).get()
        let control = RTPEngineControl(server: server, channel: channel, attempts: attempts, interval: interval)
        box.withLockedValue { $0 = control }
        return control
    }

    private init(server: SocketAddress, channel: any Channel, attempts: Int, interval: Duration) {
        self.server = server
        self.channel = channel
        self.attempts = attempts
        self.interval = interval
    }

    public func close() {
        channel.close(promise: nil)
        let waiting = pending.withLockedValue { dictionary in
            defer { dictionary = [:] }
            return Array(dictionary.values)
        }
        for promise in waiting { promise.fail(Failure(description: "rtpengine control closed")) }
    }

    /// Sends `command` and returns rtpengine's reply dictionary (`result` "ok"), or throws with
    /// its `error-reason`, or after the last attempt without a reply.
    public func command(_ command: [String: Bencode]) async throws -> Bencode {
        let cookie = nextCookie.withLockedValue { value in
            defer { value += 1 }
            return String(value, radix: 36)
        }
        let promise = channel.eventLoop.makePromise(of: Bencode.self)
        pending.withLockedValue { $0[cookie] = promise }
        defer { _ = pending.withLockedValue { $0.removeValue(forKey: cookie) } }
        let datagram = Array("\(cookie) ".utf8) + Bencode.dictionary(command).encoded
        let (server, channel, attempts, interval) = (server, channel, attempts, interval)
        let tries = NIOLockedValueBox(0)
        let resend = channel.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: TimeAmount(interval)) { task in
            // The first send and the repeats; past the last one, the wait ends with an error.
            let sent = tries.withLockedValue { count in
                count += 1
                return count
            }
            if sent > attempts {
                task.cancel()
                self.pending.withLockedValue { $0.removeValue(forKey: cookie) }?.fail(
                    Failure(description: "rtpengine at \(server) did not answer \(command["command"]?.string ?? "?") (\(attempts) tries, \(interval) apart)"))
                return
            }
            channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: ByteBuffer(bytes: datagram)), promise: nil)
        }
        defer { resend.cancel() }
        let reply = try await promise.futureResult.get()
        guard reply["result"]?.string == "ok" else {
            throw Failure(description: "rtpengine refused \(command["command"]?.string ?? "?"): \(reply["error-reason"]?.string ?? reply["result"]?.string ?? "no result")")
        }
        return reply
    }

    fileprivate func received(_ bytes: ByteBuffer, from source: SocketAddress) {
        guard source == server, bytes.readableBytes <= 65_536, let space = bytes.readableBytesView.firstIndex(of: UInt8(ascii: " ")) else { return }
        let cookie = String(decoding: bytes.readableBytesView[..<space], as: UTF8.self)
        guard let reply = try? Bencode(decoding: Array(bytes.readableBytesView[(space + 1)...])) else { return }
        // Taken out as it is answered: a second reply (to a resend) finds nothing to complete.
        pending.withLockedValue { $0.removeValue(forKey: cookie) }?.succeed(reply)
    }

    private final class ReplyHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let owner: NIOLockedValueBox<RTPEngineControl?>

        init(owner: NIOLockedValueBox<RTPEngineControl?>) {
            self.owner = owner
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            owner.withLockedValue { $0 }?.received(envelope.data, from: envelope.remoteAddress)
        }
    }

    // MARK: Calls

    /// The flags every offer and answer carries: rtpengine's address in o= and c=, no ICE.
    static let flags: [String: Bencode] = [
        "replace": .list([.string("origin"), .string("session-connection")]),
        "ICE": .string("remove"),
    ]

    /// The description `sdp` becomes toward the other party of `callID`, offered by `fromTag`.
    public func offer(callID: String, fromTag: String, sdp: String) async throws -> String {
        var command = Self.flags
        command["command"] = .string("offer")
        command["call-id"] = .string(callID)
        command["from-tag"] = .string(fromTag)
        command["sdp"] = .string(sdp)
        guard let rewritten = try await self.command(command)["sdp"]?.string else { throw Failure(description: "rtpengine's offer reply has no SDP") }
        return rewritten
    }

    /// The answer `sdp` of `toTag` to `fromTag`'s offer, as it goes back to the offerer.
    public func answer(callID: String, fromTag: String, toTag: String, sdp: String) async throws -> String {
        var command = Self.flags
        command["command"] = .string("answer")
        command["call-id"] = .string(callID)
        command["from-tag"] = .string(fromTag)
        command["to-tag"] = .string(toTag)
        command["sdp"] = .string(sdp)
        guard let rewritten = try await self.command(command)["sdp"]?.string else { throw Failure(description: "rtpengine's answer reply has no SDP") }
        return rewritten
    }

    /// Ends the call's media at rtpengine (best effort: a call it does not know is no error here).
    public func delete(callID: String, fromTag: String) async {
        _ = try? await command(["command": .string("delete"), "call-id": .string(callID), "from-tag": .string(fromTag)])
    }
}
