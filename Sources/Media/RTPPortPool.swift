/// Hands out RTP ports from a range (the product's SRTP ports are 10000–50000) and never the same
/// port twice while it is in use. RTP takes the even port and RTCP the odd one above it
/// (RFC 3550 §11), so the pool deals in even ports; with rtcp-mux (RFC 5761) the odd one simply
/// stays unused.
public struct RTPPortPool: Sendable {
    public let range: ClosedRange<Int>
    private var inUse = Set<Int>()
    private var next: Int
    /// Ports at random (an anchor on the Internet: a port an outsider cannot guess is one it
    /// cannot race the peer to, RTP bleed); else round-robin.
    public let randomized: Bool
    /// The ports released last, not handed out again at random while they are here.
    private var cooling: [Int] = []

    public enum PoolError: Error, Equatable {
        case badRange(ClosedRange<Int>)
        case exhausted
    }

    public init(range: ClosedRange<Int> = 10000...50000, randomized: Bool = false) throws(PoolError) {
        let first = range.lowerBound + (range.lowerBound % 2)
        guard range.lowerBound >= 1024, range.upperBound <= 65535, first + 1 <= range.upperBound else { throw .badRange(range) }
        self.range = range
        self.next = first
        self.randomized = randomized
    }

    /// How many RTP/RTCP pairs the range holds.
    public var capacity: Int {
        let first = range.lowerBound + (range.lowerBound % 2)
        return (range.upperBound - first + 1) / 2
    }

    public var allocatedCount: Int { inUse.count }

    /// The next free even port, round-robin through the range so that a port just released is
    /// not reused at once (late packets of the old call would land in the new one).
    public mutating func allocate() throws(PoolError) -> Int {
        guard inUse.count < capacity else { throw .exhausted }
        let first = range.lowerBound + (range.lowerBound % 2)
        if randomized {
            // A few draws find a free port unless the range is nearly full; then round-robin.
            for _ in 0..<32 {
                let candidate = first + 2 * Int.random(in: 0..<capacity)
                if !cooling.contains(candidate), inUse.insert(candidate).inserted { return candidate }
            }
        }
        while true {
            let candidate = next
            next += 2
            if next + 1 > range.upperBound { next = first }
            if inUse.insert(candidate).inserted { return candidate }
        }
    }

    /// Gives a port back; releasing one not allocated is a no-op.
    public mutating func release(_ port: Int) {
        guard inUse.remove(port) != nil else { return }
        if randomized {
            cooling.append(port)
            if cooling.count > min(64, capacity / 4) { cooling.removeFirst() }
        }
    }
}
