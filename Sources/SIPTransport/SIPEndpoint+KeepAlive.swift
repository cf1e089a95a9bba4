import NIOCore
import SIP

/// RFC 5626 §4.4.1 CRLF keepalives on a stream flow we opened: a ping (CRLFCRLF) every
/// interval; a pong (CRLF) must come back within the pong timeout, or the flow has failed.
struct KeepAliveState {
    var flow: SIPFlow
    var interval: Duration
    var task: Scheduled<Void>?
    var awaitingPongSince: NIODeadline?
}

extension SIPEndpoint {
    /// Starts pinging `flow` every `interval`. On failure (no pong in time, or the connection
    /// closes) the flow-failure handler runs and the connection is closed.
    public func startKeepAlive(on flow: SIPFlow, every interval: Duration) {
        guard flow.transport.isReliable, connections[flow.connectionID] != nil else { return }
        keepAlives[flow.connectionID]?.task?.cancel()
        keepAlives[flow.connectionID] = KeepAliveState(flow: flow, interval: interval)
        scheduleKeepAlive(flow.connectionID, after: interval)
    }

    public func stopKeepAlive(on flow: SIPFlow) {
        keepAlives.removeValue(forKey: flow.connectionID)?.task?.cancel()
    }

    private func scheduleKeepAlive(_ id: UInt64, after delay: Duration) {
        keepAlives[id]?.task = eventLoop.scheduleTask(in: TimeAmount(delay)) { [self] in
            self.assumeIsolated { $0.keepAliveTick(id) }
        }
    }

    private func keepAliveTick(_ id: UInt64) {
        guard let state = keepAlives[id] else { return }
        if state.awaitingPongSince != nil {
            // The pong window passed without a pong.
            keepAlives[id] = nil
            logger.warning("keepalive: no pong; flow failed", metadata: ["flow": "\(state.flow)"])
            flowFailureHandler?(self, state.flow, "no pong within \(configuration.keepAlivePongTimeout)")
            connections[id]?.close(promise: nil)
            return
        }
        write(ByteBuffer(string: "\r\n\r\n"), on: state.flow)
        keepAlives[id]?.awaitingPongSince = .now()
        scheduleKeepAlive(id, after: configuration.keepAlivePongTimeout)
    }

    func pongReceived(on flow: SIPFlow) {
        guard var state = keepAlives[flow.connectionID], let sentAt = state.awaitingPongSince else { return }
        state.awaitingPongSince = nil
        state.task?.cancel()
        keepAlives[flow.connectionID] = state
        // The next ping goes one interval after the last: the interval less the time the pong took.
        let took = Duration.nanoseconds((NIODeadline.now() - sentAt).nanoseconds)
        scheduleKeepAlive(flow.connectionID, after: max(.zero, state.interval - took))
    }
}
