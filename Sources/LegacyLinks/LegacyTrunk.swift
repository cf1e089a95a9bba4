public import Logging
import NIOCore
import SIP
public import SIPTransport

/// The SIP trunk to the legacy intercom server: OPTIONS supervision every `interval` with up/down
/// state and round-trip time (`TrunkSupervision`), over the endpoint's UDP or TCP. Shares the
/// endpoint's executor. The channel router (gateway issue) takes the trunk's calls.
public actor LegacyTrunk {
    public nonisolated let endpoint: SIPEndpoint
    public nonisolated var unownedExecutor: UnownedSerialExecutor { endpoint.unownedExecutor }

    public let server: SIPDestination
    public let interval: Duration
    /// Our identity in From (`sip:<user>@<our address>`).
    public let user: String
    let logger: Logger
    public private(set) var supervision = TrunkSupervision()
    private var timer: Scheduled<Void>?
    private var running = false
    private let continuation: AsyncStream<TrunkSupervision.State>.Continuation
    /// Every change of the trunk's state.
    public nonisolated let stateChanges: AsyncStream<TrunkSupervision.State>

    public init(endpoint: SIPEndpoint, server: SIPDestination, interval: Duration, user: String = "symphony-bridge", logger: Logger = Logger(label: "legacy-trunk")) {
        self.endpoint = endpoint
        self.server = server
        self.interval = interval
        self.user = user
        self.logger = logger
        (stateChanges, continuation) = AsyncStream.makeStream(of: TrunkSupervision.State.self, bufferingPolicy: .bufferingNewest(64))
    }

    /// Starts probing at once, then every interval.
    public func start() {
        guard !running else { return }
        running = true
        probe()
    }

    public func stop() {
        running = false
        timer?.cancel()
        timer = nil
    }

    private func schedule() {
        guard running else { return }
        timer = endpoint.eventLoop.scheduleTask(in: TimeAmount(interval)) { [self] in
            self.assumeIsolated { $0.probe() }
        }
    }

    private func probe() {
        guard running else { return }
        let started = ContinuousClock.now
        Task { [self] in
            do {
                let flow = try await endpoint.flow(to: server)
                sendOptions(on: flow, started: started)
            } catch {
                outcome(nil, started: started)
            }
        }
    }

    private func sendOptions(on flow: SIPFlow, started: ContinuousClock.Instant) {
        let host = server.host.contains(":") ? "[\(server.host)]" : server.host
        guard let uri = try? SIPURIParser.parseSIP("sip:\(host):\(server.port)") else { return }
        var request = SIPMessage.request(.options, .sip(uri))
        let local = flow.local
        let localHost = local.protocol == .inet6 ? "[\(local.hostText)]" : local.hostText
        request.headers.add(.maxForwards, "70")
        request.headers.add(.from, "<sip:\(user)@\(localHost)>;tag=\(SIPIdentifiers.tag())")
        request.headers.add(.to, "<sip:\(host):\(server.port)>")
        request.headers.add(.callID, SIPIdentifiers.callID(host: localHost))
        request.headers.add(.cseq, "1 OPTIONS")
        request.headers.add(.accept, "application/sdp")
        let probe = request
        endpoint.assumeIsolated { endpoint in
            _ = endpoint.sendRequest(probe, on: flow) { [self] _, event in
                switch event {
                case .response(let response, _):
                    guard let status = response.statusCode, status >= 200 else { return }
                    self.assumeIsolated { $0.outcome(status, started: started) }
                case .timedOut, .transportFailed:
                    self.assumeIsolated { $0.outcome(nil, started: started) }
                }
            }
        }
    }

    /// A probe's final status, or nil for no answer; then the next probe is scheduled.
    private func outcome(_ status: Int?, started: ContinuousClock.Instant) {
        let change = status.map { supervision.answered(status: $0, roundTrip: ContinuousClock.now - started) } ?? supervision.failed()
        if let change {
            if change == .down {
                logger.warning("legacy trunk down", metadata: ["server": "\(server)", "failures": "\(supervision.consecutiveFailures)"])
            } else {
                logger.notice("legacy trunk \(change.rawValue)", metadata: ["server": "\(server)", "rtt": "\(supervision.lastRoundTrip.map { "\($0)" } ?? "-")"])
            }
            continuation.yield(change)
        }
        schedule()
    }
}
