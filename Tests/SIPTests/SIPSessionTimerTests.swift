import Testing
@testable import SIP

/// RFC 4028 negotiation and deadlines, without sockets.
@Suite("Session timers (RFC 4028)")
struct SIPSessionTimerTests {
    static func invite(_ headers: [(String, String)]) -> SIPMessage {
        var request = SIPMessage.request(.invite, .sip(SIPURI(user: "gw1-ch1", host: "192.0.2.1")))
        for (name, value) in headers { request.headers.add(SIPHeaderName(name), value) }
        return request
    }

    @Test func aCallerThatSupportsTimersRefreshesWhatItAskedFor() {
        let answer = SIPSessionTimer.answer(Self.invite([("Supported", "timer"), ("Session-Expires", "1800")]), minimum: 90, preferred: 300)
        guard case .timer(let timer, let headers) = answer else { Issue.record("\(answer)"); return }
        #expect(timer == SIPSessionTimer(interval: 1800, weRefresh: false))
        #expect(headers.map(\.value) == ["1800;refresher=uac", "timer"])
    }

    @Test func aCallerThatAsksForNoneButSupportsTimersGetsOurs() {
        let answer = SIPSessionTimer.answer(Self.invite([("Supported", "100rel, timer")]), minimum: 90, preferred: 300)
        guard case .timer(let timer, _) = answer else { Issue.record("\(answer)"); return }
        #expect(timer.interval == 300 && !timer.weRefresh)
        #expect(SIPSessionTimer.answer(Self.invite([("Supported", "timer")]), minimum: 90, preferred: nil) == .none)
    }

    @Test func aCallerWithoutTimerSupportLeavesTheRefreshesToUs() {
        // A proxy may have asked for it (§8): the UAS refreshes, no Require toward a UAC that cannot.
        let answer = SIPSessionTimer.answer(Self.invite([("Session-Expires", "600")]), minimum: 90, preferred: nil)
        guard case .timer(let timer, let headers) = answer else { Issue.record("\(answer)"); return }
        #expect(timer == SIPSessionTimer(interval: 600, weRefresh: true))
        #expect(headers.map(\.value) == ["600;refresher=uas"])
        #expect(SIPSessionTimer.answer(Self.invite([]), minimum: 90, preferred: 300) == .none)
    }

    @Test func anIntervalBelowTheMinimumIs422() {
        #expect(SIPSessionTimer.answer(Self.invite([("Session-Expires", "60")]), minimum: 90, preferred: nil) == .tooSmall(minimum: 90))
    }

    @Test("Out-of-range and malformed values are as if absent", arguments: ["0", "-5", "99999999999999999999", "86401", "1e3", "", "٣٠٠", "120;refresher=nobody"])
    func hostileValues(_ value: String) {
        let parsed = SIPSessionTimer.sessionExpires(in: Self.invite([("Session-Expires", value)]))
        if value.hasPrefix("120") {
            #expect(parsed?.interval == 120 && parsed?.refresher == nil)
        } else {
            #expect(parsed == nil)
        }
    }

    @Test func theUACTakesWhatThe2xxSettled() {
        var ok = SIPMessage.response(200, reason: "OK")
        #expect(SIPSessionTimer.settled(by: ok) == nil)
        ok.headers.add(.sessionExpires, "400;refresher=uas")
        #expect(SIPSessionTimer.settled(by: ok) == SIPSessionTimer(interval: 400, weRefresh: false))
        ok.headers.set(.sessionExpires, "400")
        #expect(SIPSessionTimer.settled(by: ok) == SIPSessionTimer(interval: 400, weRefresh: true))
    }

    @Test func theRefresherRefreshesAtHalfTheOtherGivesUpBeforeTheEnd() {
        #expect(SIPSessionTimer(interval: 300, weRefresh: true).nextDeadline == (150, true))
        #expect(SIPSessionTimer(interval: 300, weRefresh: false).nextDeadline == (268, false))
        #expect(SIPSessionTimer(interval: 90, weRefresh: false).nextDeadline == (60, false))
    }
}
