import Foundation
import Logging
import Media
import NIOCore
import SIPUserAgent

/// The router carrying out what a call's state decided (`BridgedCall` actions), the one wake-up
/// for the call's timers (their deadlines are the state's), and the end of a call: record,
/// status, sockets.
extension ChannelRouter {
    // MARK: Timers

    /// Sets the call's one wake-up to its state's earliest deadline (`BridgedCall.nextDeadline`).
    func rearm(_ id: Int) {
        guard let deadline = calls[id].map({ $0.state.nextDeadline }) else { return }
        calls[id]?.wakeUp.set(to: deadline, now: clock(), on: legacy.endpoint.eventLoop) { [self] in
            Task { await self.timersDue(id) }
        }
    }

    func timersDue(_ id: Int) async {
        guard var call = calls[id] else { return }
        call.wakeUp.fired()
        let actions = call.state.tick(at: clock())
        calls[id] = call
        await perform(actions, call: id)
    }

    /// One look at both legs' media for the call's inactivity supervision.
    func checkMedia(_ id: Int) async {
        guard let bridge = calls[id]?.bridge,
            let activity = try? await bridge.withBridge({ bridge in MediaLegSide.allCases.map { bridge.activity($0) } }),
            activity.count == 2, var call = calls[id]
        else { return }
        // While a transfer target rings, the cloud leg may be quiet (its transferor gone).
        let actions = call.state.mediaActivity(
            legacy: (activity[0].received, activity[0].expected), far: (activity[1].received, activity[1].expected && call.transfer == nil), at: clock())
        calls[id] = call
        if case .hangUpBoth(let reason)? = actions.first {
            logger.notice("media stopped; BYE on both legs: \(reason)", metadata: ["channel": "\(call.channel.index)"])
        }
        await perform(actions, call: id)
    }

    // MARK: Doing what the call state says

    func perform(_ actions: [BridgedCall.Action], call id: Int) async {
        for action in actions {
            guard let call = calls[id] else { return }
            let inboundAgent = agent(call.inboundSide)
            let outboundAgent = agent(call.outboundSide)
            switch action {
            case .ringInbound(let early):
                let body = early == nil ? nil : calls[id]?.inboundAnswer
                if let body {
                    calls[id]?.inboundAnswerSent = true
                    calls[id]?.ourDescriptions[call.inboundMediaSide] = body
                }
                on(inboundAgent) { $0.ring(call.inbound, status: body == nil ? 180 : 183, body: body) }
            case .earlyMedia(let branch):
                do { try await connectMedia(id, branch: branch) } catch {
                    logger.warning("early media not bridged: \(error)", metadata: ["channel": "\(call.channel.index)"])
                }
            case .answerInbound(let branch):
                do {
                    try await connectMedia(id, branch: branch)
                } catch {
                    logger.warning("the callee's answer cannot be bridged: \(error)", metadata: ["channel": "\(call.channel.index)"])
                    guard var failing = calls[id] else { return }
                    failing.closedByUs.insert(-1)
                    let abort = failing.state.abort(status: 488, reason: "media: \(error)")
                    calls[id] = failing
                    on(inboundAgent) { $0.reject(call.inbound, status: 488) }
                    await perform(abort.filter { if case .hangUpInbound = $0 { false } else { true } }, call: id)
                    return
                }
                guard let current = calls[id], current.state.phase == .connected else { return }
                let relayHolds = settings.relayHoldToStations && current.stationAllows?.lists(.invite) == true
                calls[id]?.state.relayHolds(toStation: relayHolds)
                calls[id]?.inboundAnswerSent = true
                calls[id]?.ourDescriptions[call.inboundMediaSide] = current.inboundAnswer
                on(inboundAgent) { $0.answer(call.inbound, body: current.inboundAnswer) }
                calls[id]?.answeredAt = recordTime(current)
                if !call.direction.fromLegacy { calls[id]?.peer = call.targets[branch] + " ← " + call.peer }
                if let plan = call.ringPlan { calls[id]?.peer = plan.mode == .chain ? plan.targets[plan.position] : call.targets[branch] }
                if let answered = calls[id] { record(answered) }
                eventContinuation.yield(.channelConnected(channel: call.channel.index, codec: calls[id]?.codec ?? "?", overMesh: call.direction.overMesh))
                logger.info("connected", metadata: ["channel": "\(call.channel.index)", "codec": "\(calls[id]?.codec ?? "?")"])
            case .rejectInbound(let status):
                calls[id]?.closedByUs.insert(-1)
                on(inboundAgent) { $0.reject(call.inbound, status: status) }
            case .cancel(let branches, let reason):
                for branch in branches {
                    guard let handle = call.branches[branch] else { continue }
                    calls[id]?.closedByUs.insert(branch)
                    on(outboundAgent) { $0.hangUp(handle, reason: reason.headerValue) }
                }
            case .hangUpOutbound(let branch):
                guard let handle = call.branches[branch] else { continue }
                calls[id]?.closedByUs.insert(branch)
                on(outboundAgent) { $0.hangUp(handle) }
            case .hangUpInbound:
                guard !call.closedByUs.contains(-1) else { continue }
                calls[id]?.closedByUs.insert(-1)
                on(inboundAgent) { $0.hangUp(call.inbound) }
            case .hangUpBoth(let reason):
                if !call.closedByUs.contains(-1) {
                    calls[id]?.closedByUs.insert(-1)
                    on(inboundAgent) { $0.hangUp(call.inbound, reason: reason) }
                }
                if let branch = call.state.connectedBranch, let handle = call.branches[branch], !call.closedByUs.contains(branch) {
                    calls[id]?.closedByUs.insert(branch)
                    on(outboundAgent) { $0.hangUp(handle, reason: reason) }
                }
            case .finish(let outcome, let reason):
                await finish(id, outcome: outcome, reason: reason)
            case .fallBackToMesh(let reason):
                await fallBack(id, reason: reason)
            case .nextInChain:
                logger.info("chain: no answer within \(call.channel.ringSeconds) s; next target", metadata: ["channel": "\(call.channel.index)"])
                if await !nextInChain(id, after: 480) { await abort(id, status: 480, reason: "no answer from the chain") }
            case .checkMedia:
                await checkMedia(id)
            case .offerToStation(let direction):
                await offerToStation(id, direction)
            }
        }
        rearm(id)
    }

    func finish(_ id: Int, outcome: BridgedCall.Outcome, reason: String) async {
        guard let call = calls.removeValue(forKey: id) else { return }
        call.wakeUp.cancel()
        if let transfer = call.transfer {
            transferLegs[transfer.handle] = nil
            on(cloud) { $0.hangUp(transfer.handle) }
        }
        if busyChannels[call.channel.index] == id { busyChannels[call.channel.index] = nil }
        legs = legs.filter { $0.value.call != id }
        let ended = recordTime(call)
        var metadata: Logger.Metadata = ["channel": "\(call.channel.index)", "outcome": "\(outcome.rawValue)", "reason": "\(reason)"]
        if let bridge = call.bridge, let legacy = try? await bridge.counters(.a), let far = try? await bridge.counters(.b) {
            // What each leg received, and what the bridge made up for it (loss and lateness).
            metadata["legacy_rx"] = "\(legacy.packetsReceived)"
            metadata["\(call.farSide)_rx"] = "\(far.packetsReceived)"
            metadata["concealed"] = "\(legacy.concealedFrames)/\(far.concealedFrames)"
            metadata["late"] = "\(legacy.latePackets)/\(far.latePackets)"
            // What each leg dropped instead of playing (docs/RELIABILITY.md): malformed, failed
            // SRTP, wrong source or payload type, outside the frame budget; and digits past the keypad rate.
            metadata["dropped"] = "\(legacy.dropped)/\(far.dropped)"
            metadata["oversized"] = "\(legacy.oversized)/\(far.oversized)"
            if legacy.digitsThrottled + far.digitsThrottled > 0 { metadata["digits_throttled"] = "\(legacy.digitsThrottled)/\(far.digitsThrottled)" }
        }
        logger.info("call ended", metadata: metadata)
        eventContinuation.yield(.channelIdle(channel: call.channel.index, outcome: outcome, reason: reason))
        record(call, status: GatewayCallRecord.Status(rawValue: outcome.rawValue) ?? .failed, endedAt: ended, reason: reason)
        if let bridge = call.bridge {
            await bridge.close()
        } else {
            await call.legacyLeg?.close()
            await call.farLeg?.close()
        }
    }
}
