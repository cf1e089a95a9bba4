import Logging
import NIOCore

/// The agent driving each call's `SIPCallTimers`: one wake-up per call at the earliest deadline,
/// and what is due carried out (the 2xx again, BYE, an answer, a refresh).
extension SIPUserAgent {
    func newCallTimers() -> SIPCallTimers {
        let timers = endpoint.configuration.timers
        return SIPCallTimers(t1: Self.seconds(timers.t1), t2: Self.seconds(timers.t2), okGiveUpAfter: Self.seconds(timers.transactionTimeout))
    }

    /// Changes a call's timers at the agent's clock, then sets its wake-up.
    func updateTimers(_ handle: SIPCallHandle, _ change: (inout SIPCallTimers, Double) -> Void) {
        guard var call = calls[handle] else { return }
        change(&call.timers, Self.uptime())
        calls[handle] = call
        rearmTimers(handle)
    }

    /// Sets the call's one wake-up to its earliest deadline (or none).
    func rearmTimers(_ handle: SIPCallHandle) {
        guard let deadline = calls[handle].map({ $0.timers.nextDeadline }) else { return }
        calls[handle]?.wakeUp.set(to: deadline, now: Self.uptime(), on: endpoint.eventLoop) { [self] in
            self.assumeIsolated { $0.callTimersDue(handle) }
        }
    }

    func callTimersDue(_ handle: SIPCallHandle) {
        guard var call = calls[handle] else { return }
        call.wakeUp.fired()
        let due = call.timers.fire(at: Self.uptime())
        calls[handle] = call
        for item in due {
            guard let call = calls[handle] else { return }
            switch item {
            case .answer:
                answer(handle)
            case .retransmitOK:
                if let ok = call.okResponse, let key = call.okTransaction { respond(ok, to: key) }
            case .noACK:
                logger.warning("no ACK for 2xx within 64·T1; ending the call", metadata: ["call": "\(handle)"])
                calls[handle]?.okResponse = nil
                calls[handle]?.state = .established
                sendBYE(handle, endingNow: "no ACK")
            case .durationReached:
                logger.info("call reached the duration limit", metadata: ["call": "\(handle)"])
                sendBYE(handle)
            case .offerUnanswered:
                logger.warning("a mid-call offer went unanswered; refused with 500", metadata: ["call": "\(handle)"])
                refuseOffer(handle, status: 500)
            case .refreshSession:
                guard call.state == .established, !reinvite(handle) else { continue }
                // The peer's exchange is under way: the refresh waits for it.
                updateTimers(handle) { $0.retryReinvite(after: 0.5, attempts: 10, every: 0.5, now: $1) }
            case .retryReinvite:
                guard call.state == .established, !reinvite(handle) else { continue }
                var stillTrying = true
                updateTimers(handle) { stillTrying = $0.reinviteBlocked(now: $1) }
                if !stillTrying { logger.notice("a re-INVITE could not go for the peer's exchanges; given up", metadata: ["call": "\(handle)"]) }
            case .sessionExpired:
                guard call.state == .established else { continue }
                logger.notice("session timer expired without a refresh; BYE", metadata: ["call": "\(handle)"])
                sendBYE(handle, reason: "SIP;cause=408;text=\"session timer expired\"", endingNow: "session timer expired")
            }
        }
        rearmTimers(handle)
    }

    /// Seconds since boot (CLOCK_MONOTONIC, as NIO's deadlines).
    static func uptime() -> Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }

    static func seconds(_ duration: Duration) -> Double { DeadlineWakeUp.seconds(duration) }
}
