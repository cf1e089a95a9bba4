import Foundation
public import Logging
public import Media
import NIOCore
import SIP

/// Where the core anchors the media of the calls it routes: the SDP of each offer and answer
/// goes through it on its way (`CloudCoreProxy+Anchor.swift`), and the call's media ends there
/// with the call.
public protocol MediaAnchoring: Sendable {
    /// The description `sdp` becomes toward the other party of `callID`, offered by `fromTag`;
    /// `opensCall`: the offer of an INVITE outside a dialog (else a re-INVITE's, an UPDATE's, a
    /// 2xx's to an offerless re-INVITE).
    func offer(callID: String, fromTag: String, sdp: String, opensCall: Bool) async throws -> String
    /// The answer `sdp` of `toTag` to `fromTag`'s offer, as it goes back to the offerer;
    /// `confirmed`: in a 2xx or an ACK (else a provisional answer, of one branch of several).
    func answer(callID: String, fromTag: String, toTag: String, sdp: String, confirmed: Bool) async throws -> String
    /// Ends the call's media (a call the anchor does not know is no error).
    func delete(callID: String, fromTag: String) async
    func close() async
}

/// rtpengine keeps its calls by Call-ID and tags itself.
extension RTPEngineControl: MediaAnchoring {
    public func offer(callID: String, fromTag: String, sdp: String, opensCall: Bool) async throws -> String {
        try await offer(callID: callID, fromTag: fromTag, sdp: sdp)
    }

    public func answer(callID: String, fromTag: String, toTag: String, sdp: String, confirmed: Bool) async throws -> String {
        try await answer(callID: callID, fromTag: fromTag, toTag: toTag, sdp: sdp)
    }
}

/// `[media] anchor = "embedded"` (issue 19): the core relays the media of the calls it routes
/// itself, through the Media engine's sockets and threads (`MediaRelay`), so that two ends behind
/// NAT meet at the core — the one-box default for a core on the Internet. Per call two legs, one
/// facing each end, each with its own ports from `[media] rtp_port_min…rtp_port_max` and its own
/// SRTP keys (`AnchoredStream`: latching to the source actually seen, re-keyed per leg).
///
/// The proxy runs the steps of one call in order, so a call's offer, answers and delete never
/// overlap here; different calls do, and share nothing but the table.
public actor EmbeddedMediaAnchor: MediaAnchoring {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    struct Call {
        let handle: MediaAnchorHandle
        /// The tag of the first offerer: its side is `a`, whoever answers is `b`.
        let tagA: String
        /// The tag of the branch whose 2xx was taken: side `b` from then on. Before it, the
        /// latest provisional answer sets side `b`; after it, another branch's answer (a second
        /// 2xx of a fork, which the caller ends) changes nothing.
        var tagB: String?
        let started: ContinuousClock.Instant
        /// The last offer: which side made it, its anchored section, what it said.
        var offer: (offerer: MediaLegSide, section: Int?, description: AnchorSDP.Description?)?
        /// The anchor's SDES keys, per side and suite, kept for the call: a renegotiation that
        /// keeps the suite keeps the key (no re-keying glitch at the ends).
        var keys: [[SRTPCryptoSuite: SRTPKeyMaterial]] = [[:], [:]]

        mutating func key(_ side: MediaLegSide, _ suite: SRTPCryptoSuite) -> SRTPKeyMaterial {
            if let key = keys[side.rawValue][suite] { return key }
            let key = SRTPKeyMaterial.random(suite)
            keys[side.rawValue][suite] = key
            return key
        }
    }

    public nonisolated let relay: MediaRelay
    /// The address the legs are bound to and the one written in SDP (`[media] address`,
    /// `[media] advertise`).
    let bindHost: String
    let sdpAddress: String
    let maxCalls: Int
    /// A call older than this is one whose end was missed: its ports go back at the next offer.
    let maxAge: Duration
    private var calls: [String: Call] = [:]
    private let logger: Logger
    private let clock = ContinuousClock()

    public init(relay: MediaRelay, bindHost: String, sdpAddress: String, maxCalls: Int, maxAge: Duration, logger: Logger) {
        self.relay = relay
        self.bindHost = bindHost
        self.sdpAddress = sdpAddress
        self.maxCalls = maxCalls
        self.maxAge = maxAge
        self.logger = logger
    }

    public var anchoredCalls: Int { calls.count }
    public var anchoredCallIDs: [String] { Array(calls.keys) }

    /// The call's legs, for tests and status: nil when the anchor does not hold the call.
    public func handle(callID: String) -> MediaAnchorHandle? { calls[callID]?.handle }

    public func offer(callID: String, fromTag: String, sdp: String, opensCall: Bool) async throws -> String {
        let session = try parse(sdp)
        var call: Call
        if let known = calls[callID] {
            // A new call reusing a Call-ID that is anchored, or a stranger's tag in the dialog:
            // neither may take over the call's media.
            guard !opensCall else { throw Failure(description: "Call-ID \(callID.prefix(80)) is anchored for another call") }
            guard fromTag == known.tagA || known.tagB.map({ $0 == fromTag }) ?? true else { throw Failure(description: "an offer from a tag not in the call") }
            call = known
        } else {
            // An in-dialog offer for a call the anchor does not hold (ended, or never anchored)
            // opens nothing: its ports would never be released.
            guard opensCall else { throw Failure(description: "no anchored call \(callID.prefix(80))") }
            await sweep()
            guard calls.count < maxCalls else { throw Failure(description: "\(calls.count) calls anchored already (limits.max_calls)") }
            let a = try await relay.openLeg(host: bindHost)
            let b: MediaLegSocket
            do { b = try await relay.openLeg(host: bindHost, alongside: a) } catch {
                await a.close()
                throw error
            }
            let handle: MediaAnchorHandle
            do { handle = try await relay.anchor(a, b, label: "call \(callID.prefix(80))") } catch {
                await a.close()
                await b.close()
                throw error
            }
            call = Call(handle: handle, tagA: fromTag, started: clock.now)
            if let raced = calls[callID] {  // another offer for the call got here first
                await handle.close()
                call = raced
            }
        }
        let offerer: MediaLegSide = fromTag == call.tagA ? .a : .b
        let section = AnchorSDP.anchoredSection(of: session)
        let description = section.flatMap { AnchorSDP.describe(session, section: $0) }
        var lines: [SDPCryptoAttribute]?
        if let description, description.hasCrypto {
            guard !description.crypto.isEmpty else {
                call.offer = nil  // its answer, if one comes, answers nothing the anchor holds
                calls[callID] = call
                throw Failure(description: "the offer's a=crypto lines name no suite the anchor can re-key")
            }
            lines = description.crypto.map { SDPCryptoAttribute(tag: $0.line.tag, suite: $0.line.suite, keyMaterial: call.key(offerer.other, $0.suite).bytes) }
        }
        call.offer = (offerer, section, description)
        calls[callID] = call
        let port = call.handle.socket(offerer.other).port
        return AnchorSDP.rewrite(session, section: section, address: sdpAddress, port: port, crypto: lines).serialized
    }

    public func answer(callID: String, fromTag: String, toTag: String, sdp: String, confirmed: Bool) async throws -> String {
        guard var call = calls[callID], let offer = call.offer else { throw Failure(description: "an answer without an anchored offer") }
        let session = try parse(sdp)
        let offerer = offer.offerer
        let answerer = offerer.other
        let (offererTag, answererTag) = offerer == .a ? (fromTag, toTag) : (toTag, fromTag)
        guard offererTag == call.tagA || offerer == .b && fromTag == call.tagB ?? fromTag else {
            throw Failure(description: "an answer whose tags are not the offer's")
        }
        // Which `b` answers: the branch whose 2xx came first, for good.
        let takes = call.tagB.map { $0 == answererTag } ?? true
        if confirmed, call.tagB == nil { call.tagB = answererTag }
        var offererConfig = AnchorLegConfiguration.unknown
        var answererConfig = AnchorLegConfiguration.unknown
        var lines: [SDPCryptoAttribute]?
        if let section = offer.section, let offered = offer.description, let answered = AnchorSDP.describe(session, section: section), answered.port != 0 {
            let mux = offered.rtcpMux && answered.rtcpMux
            offererConfig = AnchorLegConfiguration(remote: offered.remote, remoteRTCP: offered.remoteRTCP, rtcpMux: mux)
            offererConfig.sendsBeforeLatching = offered.sendsBeforeLatching
            answererConfig = AnchorLegConfiguration(remote: answered.remote, remoteRTCP: answered.remoteRTCP, rtcpMux: mux)
            answererConfig.sendsBeforeLatching = answered.sendsBeforeLatching
            if offered.hasCrypto {
                // RFC 4568 §6.3: the answer names the offered line it took by its tag.
                guard let chosen = answered.crypto.first, let line = offered.crypto.first(where: { $0.line.tag == chosen.line.tag }), line.suite == chosen.suite
                else { throw Failure(description: "the answer's a=crypto matches no offered line") }
                let suite = chosen.suite
                let theirs = try SRTPKeyMaterial(suite: suite, bytes: chosen.line.keyMaterial)
                let offerers = try SRTPKeyMaterial(suite: suite, bytes: line.line.keyMaterial)
                answererConfig.srtp = .init(local: call.key(answerer, suite), remote: theirs)
                offererConfig.srtp = .init(local: call.key(offerer, suite), remote: offerers)
                lines = [SDPCryptoAttribute(tag: chosen.line.tag, suite: chosen.line.suite, keyMaterial: call.key(offerer, suite).bytes)]
            }
        }
        calls[callID] = call
        if takes {
            try await call.handle.update(offerer, to: offererConfig)
            try await call.handle.update(answerer, to: answererConfig)
        }
        let port = call.handle.socket(offerer).port
        return AnchorSDP.rewrite(session, section: offer.section, address: sdpAddress, port: port, crypto: lines).serialized
    }

    public func delete(callID: String, fromTag: String) async {
        guard let call = calls.removeValue(forKey: callID) else { return }
        await call.handle.close()
    }

    public func close() async {
        let all = calls.values.map(\.handle)
        calls.removeAll()
        for handle in all { await handle.close() }
        relay.shutdown()
    }

    /// Calls whose end never came (older than `maxAge`): closed, their ports back in the pool.
    private func sweep() async {
        let now = clock.now
        let stale = calls.filter { now - $0.value.started > maxAge }
        for (callID, call) in stale {
            calls[callID] = nil
            logger.warning("media anchor: a call older than the longest call still held media; released", metadata: ["call-id": "\(callID)"])
            await call.handle.close()
        }
    }

    private func parse(_ sdp: String) throws -> SDPSession {
        do { return try SDPParser.parse(sdp) } catch { throw Failure(description: "\(error)") }
    }
}
