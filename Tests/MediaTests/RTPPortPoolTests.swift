import Media
import Testing

@Suite("RTP port pool")
struct RTPPortPoolTests {
    @Test func neverHandsOutAPortTwiceAndTakesThemBack() throws {
        var pool = try RTPPortPool(range: 10000...10009)
        #expect(pool.capacity == 5)
        var ports = Set<Int>()
        for _ in 0..<5 { ports.insert(try pool.allocate()) }
        #expect(ports == [10000, 10002, 10004, 10006, 10008])
        #expect(throws: RTPPortPool.PoolError.exhausted) { try pool.allocate() }
        pool.release(10004)
        #expect(try pool.allocate() == 10004)
        #expect(pool.allocatedCount == 5)
    }

    @Test func releasedPortsAreNotReusedAtOnce() throws {
        var pool = try RTPPortPool(range: 10000...10099)
        let first = try pool.allocate()
        pool.release(first)
        #expect(try pool.allocate() != first)
    }

    @Test func defaultRangeIsTheProductsSRTPRange() throws {
        let pool = try RTPPortPool()
        #expect(pool.range == 10000...50000)
        #expect(pool.capacity == 20000)
        #expect(throws: RTPPortPool.PoolError.badRange(80...90)) { try RTPPortPool(range: 80...90) }
    }
}
