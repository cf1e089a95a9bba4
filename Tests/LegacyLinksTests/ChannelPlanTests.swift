import LegacyLinks
import Testing

@Suite("Channel plan")
struct ChannelPlanTests {
    @Test func numbersFindTheirEnabledChannel() throws {
        let plan = try ChannelPlan([
            .init(index: 1, number: "101"), .init(index: 2, number: "102", enabled: false), .init(index: 14, number: "*9#"),
        ])
        #expect(plan.channel(forNumber: "101")?.index == 1)
        #expect(plan.channel(forNumber: "102") == nil, "a disabled channel takes no calls")
        #expect(plan.channel(forNumber: "*9#")?.index == 14)
        #expect(plan.channel(forNumber: "999") == nil)
    }

    @Test func mistakesAreNamed() {
        #expect(throws: ChannelPlan.PlanError.indexOutOfRange(15)) { try ChannelPlan([.init(index: 15, number: "1")]) }
        #expect(throws: ChannelPlan.PlanError.duplicateIndex(3)) { try ChannelPlan([.init(index: 3, number: "1"), .init(index: 3, number: "2")]) }
        #expect(throws: ChannelPlan.PlanError.duplicateNumber("7", channels: [1, 2])) {
            try ChannelPlan([.init(index: 1, number: "7"), .init(index: 2, number: "7")])
        }
        #expect(throws: ChannelPlan.PlanError.badNumber(index: 1, number: "12a")) { try ChannelPlan([.init(index: 1, number: "12a")]) }
    }
}
