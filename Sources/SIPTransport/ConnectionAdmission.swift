import Foundation

/// Which inbound stream connections a listener takes, and how long it gives them to prove
/// themselves (issue 16): whoever can reach a port can open connections, so their number is
/// capped per remote address and in all, and a connection that has not finished its TLS
/// handshake, or sent one valid message, within its time is closed. A value: the listener asks
/// it and carries out the verdict; `ConnectionAdmissionTests` runs the rules alone.
///
/// Shared by every stream listener of both daemons (SIP TCP/TLS, the mesh's SIPS, the claiming
/// HTTPS server).
public struct ConnectionAdmission: Sendable {
    public struct Limits: Sendable, Equatable {
        /// Inbound connections open at once, all addresses together.
        public var maxConnections: Int
        /// Inbound connections from one IP address (a NAT's users share one).
        public var maxPerAddress: Int
        /// A TLS connection that has not finished its handshake by then is closed.
        public var handshakeTimeout: Duration
        /// A connection that has not sent one valid message (a SIP request or response, an HTTP
        /// request) by then is closed; after that, what it says keeps it (RFC 5626 keepalives).
        public var firstMessageTimeout: Duration

        public init(maxConnections: Int = 1024, maxPerAddress: Int = 64, handshakeTimeout: Duration = .seconds(10), firstMessageTimeout: Duration = .seconds(30)) {
            self.maxConnections = maxConnections
            self.maxPerAddress = maxPerAddress
            self.handshakeTimeout = handshakeTimeout
            self.firstMessageTimeout = firstMessageTimeout
        }

        /// These limits within a process allowed `fileLimit` descriptors: at most half of them
        /// for inbound connections (the rest for outbound flows, media sockets, files).
        public func fitted(toFileLimit fileLimit: Int) -> Limits {
            var fitted = self
            fitted.maxConnections = max(1, min(maxConnections, fileLimit / 2))
            fitted.maxPerAddress = max(1, min(maxPerAddress, fitted.maxConnections))
            return fitted
        }

        /// The process's soft limit on open files (RLIMIT_NOFILE; from /proc/self/limits should a
        /// seccomp filter refuse the call; 1024, Linux's default, when neither answers).
        public static var processFileLimit: Int {
            var limit = rlimit()
            if getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 {
                return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
            }
            let text = (try? String(contentsOfFile: "/proc/self/limits", encoding: .utf8)) ?? ""
            let line = text.split(separator: "\n").first { $0.hasPrefix("Max open files") }
            let soft = line?.dropFirst("Max open files".count).split(separator: " ").first
            return soft.flatMap { Int($0) }.map { max(1, $0) } ?? 1024
        }
    }

    public enum Verdict: Sendable, Equatable {
        case accept
        /// Taken in the place of the oldest connection that has not proven itself yet, which the
        /// listener closes: idle sockets held by someone cannot lock everyone else out.
        case acceptEvicting(UInt64)
        case refuseAddress
        case refuseGlobal

        public var accepts: Bool {
            switch self {
            case .accept, .acceptEvicting: true
            case .refuseAddress, .refuseGlobal: false
            }
        }
    }

    public let limits: Limits
    /// Open inbound connections: their address, whether their TLS handshake is done (or there
    /// is none), and whether they have proven themselves with a valid message.
    private var open: [UInt64: (address: String, handshaken: Bool, proven: Bool)] = [:]
    private var perAddress: [String: Int] = [:]
    /// Refusals and closes not reported yet, and when the last report went.
    private var refusedForAddress = 0
    private var refusedInAll = 0
    private var closedUnproven = 0
    private var evicted = 0
    private var lastReport: Double?
    /// Connections in the order they came, the oldest first from `head`; ids that have proven
    /// themselves or closed are skipped when met and dropped at compaction.
    private var arrivals: [UInt64] = []
    private var head = 0

    public init(limits: Limits) {
        self.limits = limits
    }

    public var openCount: Int { open.count }
    public func count(from address: String) -> Int { perAddress[address] ?? 0 }

    /// A connection from `address` was accepted by the kernel: take it (`id` names it until
    /// `closed`) or refuse it.
    /// When all places are taken, the oldest connection that has not sent a valid message yet
    /// makes room (`acceptEvicting`); only when every open one has proven itself is it refused.
    public mutating func admit(_ id: UInt64, from address: String, tls: Bool = false) -> Verdict {
        guard perAddress[address, default: 0] < limits.maxPerAddress else {
            refusedForAddress += 1
            return .refuseAddress
        }
        var verdict = Verdict.accept
        if open.count >= limits.maxConnections {
            guard let victim = oldestUnproven() else {
                refusedInAll += 1
                return .refuseGlobal
            }
            closed(victim)
            evicted += 1
            verdict = .acceptEvicting(victim)
        }
        open[id] = (address, !tls, false)
        perAddress[address, default: 0] += 1
        arrivals.append(id)
        if arrivals.count - head > 2 * open.count + 1024 {
            arrivals = arrivals[head...].filter { open[$0]?.proven == false }
            head = 0
        }
        return verdict
    }

    private mutating func oldestUnproven() -> UInt64? {
        defer {
            if head > 1024, head * 2 > arrivals.count {
                arrivals.removeFirst(head)
                head = 0
            }
        }
        while head < arrivals.count {
            let id = arrivals[head]
            head += 1
            if open[id]?.proven == false { return id }
        }
        return nil
    }

    /// The connection's TLS handshake is done.
    public mutating func handshaken(_ id: UInt64) {
        open[id]?.handshaken = true
    }

    /// The connection sent a valid message: it stays while it lives.
    public mutating func proven(_ id: UInt64) {
        guard open[id]?.proven == false else { return }
        open[id]?.handshaken = true
        open[id]?.proven = true
    }

    public func isProven(_ id: UInt64) -> Bool { open[id]?.proven ?? false }

    /// The handshake time ran out (`handshakeOnly`) or the first-message time: true when the
    /// connection has not done what it had to and must be closed.
    public mutating func deadlinePassed(_ id: UInt64, handshakeOnly: Bool = false) -> Bool {
        guard let entry = open[id], handshakeOnly ? !entry.handshaken : !entry.proven else { return false }
        closedUnproven += 1
        return true
    }

    public mutating func closed(_ id: UInt64) {
        guard let entry = open.removeValue(forKey: id) else { return }
        let left = (perAddress[entry.address] ?? 1) - 1
        perAddress[entry.address] = left > 0 ? left : nil
    }

    /// What was refused or closed since the last report, at most once a minute (`now` in
    /// seconds on any monotonic clock): one log line, however hard the listener is pushed.
    public mutating func report(now: Double) -> String? {
        guard refusedForAddress + refusedInAll + closedUnproven + evicted > 0 else { return nil }
        if let last = lastReport, now - last < 60 { return nil }
        let text = "refused \(refusedForAddress) over the per-address cap (\(limits.maxPerAddress)) and \(refusedInAll) over the global cap "
            + "(\(limits.maxConnections)); closed \(evicted) silent ones to make room and \(closedUnproven) that sent nothing valid in time; \(open.count) open"
        refusedForAddress = 0
        refusedInAll = 0
        closedUnproven = 0
        evicted = 0
        lastReport = now
        return text
    }
}

#if canImport(Glibc)
import Glibc
private let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
#else
private let RLIMIT_NOFILE_VALUE = RLIMIT_NOFILE
#endif
