import CloudUplink
import Logging
import Mesh
import NIOCore
import NetworkAddress
import SIP
import SIPTransport
import SIPUserAgent

/// The mesh fallback: when a legacy call leaves the cloud for the mesh, how mesh targets are
/// found (discovery's peer table, a hint) and proven (the TLS handshake with the site CA, and the
/// certificate naming the device discovery promised), and how a chain moves on.
extension ChannelRouter {
    func canUseMesh(_ channel: BridgeConfiguration.Channel) -> Bool {
        mesh != nil && !channel.meshTargets.isEmpty
    }

    /// A mesh target rang: the chain keeps going round (`MeshRingPlan`).
    func chainTargetRang(_ handle: SIPCallHandle, side: Side) {
        guard side == .mesh, let (id, _) = legs[LegKey(side: side, handle: handle)] else { return }
        calls[id]?.ringPlan?.rang()
    }

    /// A failure the router handles by moving on instead of ending the call: a cloud leg that
    /// failed before saying anything (the flow died, a timeout) goes to the mesh; a chain target
    /// that refused hands over to the next.
    func rerouteOnFailure(_ handle: SIPCallHandle, side: Side, status: Int) async -> Bool {
        guard let (id, branch) = legs[LegKey(side: side, handle: handle)], branch != nil, let call = calls[id], call.outboundSide == side else {
            return false
        }
        if side == .cloud, call.direction == .legacyToCloud, canUseMesh(call.channel), call.state.phase == .routing,
            Self.cloudCannotDeliver(status, heardAnything: call.state.heardFromCallee, rang: call.state.calleeRang)
        {
            await fallBack(id, reason: "the cloud leg failed with \(status)\(call.state.heardFromCallee ? "" : " before any answer")")
            return true
        }
        if side == .mesh, call.ringPlan?.mode == .chain {
            legs[LegKey(side: side, handle: handle)] = nil
            if await nextInChain(id, after: status) { return true }
            legs[LegKey(side: side, handle: handle)] = (id, branch)
        }
        return false
    }

    /// Whether a cloud leg's failure means the cloud could not deliver the call (the mesh may),
    /// rather than an answer from the callee: anything before the cloud said a word (the flow
    /// died, a timeout); afterwards a timeout or a server error (the far gateway not registered
    /// again yet after an outage gives 500), or 480 before anything rang. Busy, declined, not
    /// found — the callee's or the directory's answer — end the call as they are.
    public static func cloudCannotDeliver(_ status: Int, heardAnything: Bool, rang: Bool) -> Bool {
        if !heardAnything { return true }
        switch status {
        case 408, 500...599: return true
        case 480: return !rang
        default: return false
        }
    }

    /// Cancels the cloud leg and places the call on the mesh; the caller keeps waiting.
    func fallBack(_ id: Int, reason: String) async {
        guard var call = calls[id], call.direction == .legacyToCloud else { return }
        for (branch, handle) in call.branches.enumerated() {
            guard let handle else { continue }
            call.closedByUs.insert(branch)
            legs[LegKey(side: .cloud, handle: handle)] = nil
            on(cloud) { $0.hangUp(handle, reason: "SIP;cause=503;text=\"mesh fallback\"") }
        }
        let plan = MeshRingPlan(mode: call.channel.ring == .chain ? .chain : .parallel, targets: call.channel.meshTargets)
        guard call.state.reroute(to: .legacyToMesh, branches: plan.mode == .chain ? 1 : plan.targets.count, chain: plan.mode == .chain, at: clock())
        else { return }
        call.outboundSide = .mesh
        call.ringPlan = plan
        call.targets = plan.targets
        call.branches = Array(repeating: nil, count: plan.mode == .chain ? 1 : plan.targets.count)
        call.closedByUs = call.closedByUs.filter { $0 == -1 }
        call.peer = plan.targets.joined(separator: ",")
        let oldLeg = call.farLeg
        call.farLeg = nil
        call.outboundOffer = nil
        calls[id] = call
        logger.notice("mesh fallback: \(reason)", metadata: ["channel": "\(call.channel.index)", "targets": "\(plan.targets.joined(separator: ","))"])
        eventContinuation.yield(.fellBackToMesh(channel: call.channel.index, reason: reason))
        await oldLeg?.close()
        do {
            try await prepareFarLeg(id)
        } catch {
            logger.warning("mesh fallback failed: \(error)", metadata: ["channel": "\(call.channel.index)"])
            await abort(id, status: 503, reason: "mesh fallback: \(error)")
            return
        }
        rearm(id)
        await placeOnMesh(id)
    }

    /// Rings the plan's first target(s).
    func placeOnMesh(_ id: Int) async {
        guard let plan = calls[id]?.ringPlan else { return }
        let first = plan.start()
        if first.isEmpty {
            await failBranch(id, 0, status: 404)
            return
        }
        for index in first {
            await placeMeshTarget(id, target: index, branch: plan.mode == .chain ? 0 : index)
        }
    }

    /// One mesh target: its peer from discovery, a TLS flow whose certificate names that peer,
    /// and the INVITE over it. Failures are the branch's (404 unknown, 503 unreachable, 403 wrong peer).
    /// The connect runs on its own (`meshTargetConnect`): a peer that is gone takes up to 5 s to
    /// fail, and the events of every other call must not wait for it (issue 16).
    func placeMeshTarget(_ id: Int, target index: Int, branch: Int) async {
        guard let call = calls[id], mesh != nil, let plan = call.ringPlan else { return }
        let number = plan.targets[index]
        if plan.mode == .chain {
            calls[id]?.state.chainTargetPlaced(at: clock())
            rearm(id)
        }
        guard let peer = meshPeers.answering(number) else {
            logger.notice("mesh target \(number): no mesh node answers it", metadata: ["channel": "\(call.channel.index)"])
            await failBranch(id, branch, status: 404)
            return
        }
        calls[id]?.meshPlacements += 1
        let placement = calls[id]?.meshPlacements ?? 0
        Task { await self.meshTargetConnect(id, number: number, peer: peer, branch: branch, placement: placement) }
    }

    private func meshTargetConnect(_ id: Int, number: String, peer: MeshPeer, branch: Int, placement: Int) async {
        guard let mesh else { return }
        let destination = SIPDestination(transport: .tls, host: peer.address.scopedText, port: peer.port)
        let result: Result<SIPFlow, any Error>
        do { result = .success(try await mesh.endpoint.flow(to: destination)) } catch { result = .failure(error) }
        // Meanwhile the call may have ended, been answered elsewhere, or its chain moved on.
        guard let call = calls[id], call.meshPlacements == placement || call.ringPlan?.mode != .chain, call.state.phase == .routing,
            let offer = call.outboundOffer
        else { return }
        let flow: SIPFlow
        switch result {
        case .success(let connected): flow = connected
        case .failure(let error):
            logger.warning("mesh peer \(peer.device) at \(peer.address):\(peer.port) unreachable: \(error)", metadata: ["channel": "\(call.channel.index)"])
            await failBranch(id, branch, status: 503)
            return
        }
        // Discovery is a hint; the certificate (verified against the core's CA) says who this is
        // and where it belongs (`MeshTrust`).
        let certificate = onEndpoint(mesh.endpoint) { $0.peerCertificate(on: flow) }
        if let refusal = meshTrust.refusal(of: certificate, expecting: peer.device) {
            logger.error(
                "mesh peer at \(peer.address) (announced as \(peer.device)) is not one of our site: \(refusal); not calling it",
                metadata: ["channel": "\(call.channel.index)"])
            onEndpoint(mesh.endpoint) { $0.close(flow) }
            await failBranch(id, branch, status: 403)
            return
        }
        let body = SIPMessageBody(contentType: "application/sdp", text: offer.serialized)
        let uri = SIPURI(secure: true, user: number, host: peer.address.address, port: peer.port)
        let display = CallerIdentity.towardCloud(channel: call.channel, station: call.inboundCall.from)
        let placed = on(mesh) { $0.call(uri, on: flow, from: call.channel.number, displayName: display, body: body) }
        attach(placed, side: .mesh, call: id, branch: branch)
    }

    /// Runs `body` on an endpoint synchronously: it shares our executor (the event loop).
    func onEndpoint<T: Sendable>(_ endpoint: SIPEndpoint, _ body: (isolated SIPEndpoint) -> T) -> T {
        endpoint.assumeIsolated(body)
    }

    // MARK: Chains

    /// Moves the chain on: the current branch is cancelled (if it still rings), the state starts
    /// a fresh one-branch fork, the next target is called. False when the chain is over.
    func nextInChain(_ id: Int, after status: Int) async -> Bool {
        guard var call = calls[id], var plan = call.ringPlan, plan.mode == .chain, call.state.phase == .routing else { return false }
        guard let next = plan.next() else { return false }
        if let handle = call.branches.first ?? nil {
            legs[LegKey(side: .mesh, handle: handle)] = nil
            on(mesh!) { $0.hangUp(handle, reason: "SIP;cause=480;text=\"next in chain\"") }
        }
        guard call.state.reroute(to: .legacyToMesh, branches: 1, chain: true, at: clock()) else { return false }
        call.ringPlan = plan
        call.branches = [nil]
        call.closedByUs = call.closedByUs.filter { $0 == -1 }
        call.bridgedBranch = nil
        calls[id] = call
        logger.info("chain: ringing \(plan.targets[next]) (after \(status))", metadata: ["channel": "\(call.channel.index)"])
        await placeMeshTarget(id, target: next, branch: 0)
        return true
    }

    // MARK: Media on the mesh

    /// Where the far leg of a mesh call lives: our link-local address on the interface of the
    /// first target's peer (or the first mesh interface), with that interface as scope.
    func meshMediaHost(targets: [String]) -> (bind: String, sdp: String, scope: UInt32)? {
        let interface = targets.lazy.compactMap { self.meshPeers.answering($0)?.address.interface }.first
            ?? meshAddresses.keys.sorted().first
        guard let interface, let address = meshAddresses[interface], let index = NetworkInterface.index(of: interface) else { return nil }
        return ("\(address)%\(interface)", address, index)
    }
}
