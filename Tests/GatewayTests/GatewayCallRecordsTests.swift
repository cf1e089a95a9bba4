import Foundation
import Gateway
import PeerTestSupport
import Testing

/// The gateway's call records: written off the caller's thread, read back, purged after the
/// retention on a fixed clock, kept in a file across a reopen.
@Suite("Gateway call records")
struct GatewayCallRecordsTests {
    static func write(_ records: GatewayCallRecords, _ record: GatewayCallRecord) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            records.record(record) { error in if let error { continuation.resume(throwing: error) } else { continuation.resume() } }
        }
    }

    static func call(startedDaysAgo days: Double, now: Double, channel: Int = 3) -> GatewayCallRecord {
        let start = now - days * 86400
        return GatewayCallRecord(
            startedAt: start, answeredAt: start + 4, endedAt: start + 64, direction: .legacyToCloud, channel: channel, peer: "concierge",
            status: .answered, codec: "G722/opus", reason: nil)
    }

    @Test func recordsArePurgedAfterTheRetentionOnAFixedClock() async throws {
        let records = try GatewayCallRecords(path: nil)
        let now = 1_800_000_000.0
        for days in [200.0, 180.5, 179.0, 0.5] { try await Self.write(records, Self.call(startedDaysAgo: days, now: now)) }
        #expect(try await records.purge(retentionDays: 180, now: Date(timeIntervalSince1970: now)) == 2)
        #expect(try records.all().map(\.startedAt) == [now - 179 * 86400, now - 0.5 * 86400])
        #expect(try await records.purge(retentionDays: 180, now: Date(timeIntervalSince1970: now)) == 0)
    }

    @Test func recordsSurviveAReopen() async throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("state/calls.sqlite")
        let now = Date().timeIntervalSince1970
        do {
            let records = try GatewayCallRecords(path: path)
            try await Self.write(records, Self.call(startedDaysAgo: 1, now: now, channel: 7))
        }
        let reopened = try GatewayCallRecords(path: path)
        let all = try reopened.all()
        #expect(all.count == 1 && all.first?.channel == 7 && all.first?.direction == .legacyToCloud && all.first?.codec == "G722/opus")
    }
}
