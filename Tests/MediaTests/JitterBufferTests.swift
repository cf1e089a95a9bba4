import Testing
@testable import Media

@Suite("Jitter buffer")
struct JitterBufferTests {
    let ms: UInt64 = 1_000_000

    func frames(_ buffer: inout JitterBuffer, at now: UInt64) -> [JitterBuffer.Item] {
        var out: [JitterBuffer.Item] = []
        while let item = buffer.pop(now: now) { out.append(item) }
        return out
    }

    @Test("On-time packets play the moment they arrive: no added delay")
    func onTime() {
        var jb = JitterBuffer(clockRate: 8000, frameTicks: 160, maxDelay: .milliseconds(200))
        for n in 0..<10 {
            let t = 1_000 * ms + UInt64(n) * 20 * ms
            jb.insert(sequence: UInt16(truncatingIfNeeded: 65530 + n), timestamp: UInt32(n * 160), payload: [UInt8(n)], arrival: t)
            #expect(frames(&jb, at: t) == [.frame(sequence: UInt16(truncatingIfNeeded: 65530 + n), timestamp: UInt32(n * 160), payload: [UInt8(n)])])
        }
        #expect(jb.delay == .zero && jb.late == 0 && jb.concealed == 0)
    }

    @Test("A lost packet is concealed once the next one is here, with that one offered for FEC")
    func loss() {
        var jb = JitterBuffer(clockRate: 48000, frameTicks: 960, maxDelay: .milliseconds(200))
        jb.insert(sequence: 1, timestamp: 0, payload: [1], arrival: 0)
        #expect(frames(&jb, at: 0).count == 1)
        // 2 is lost; nothing is concealed while nothing newer is here (it may just be late).
        #expect(frames(&jb, at: 30 * ms).isEmpty)
        jb.insert(sequence: 3, timestamp: 1920, payload: [3], arrival: 40 * ms)
        #expect(frames(&jb, at: 40 * ms) == [.lost(sequence: 2, next: [3]), .frame(sequence: 3, timestamp: 1920, payload: [3])])
        #expect(jb.concealed == 1)
    }

    @Test("Reordered packets are put back in order when they arrive within the delay")
    func reorder() {
        var jb = JitterBuffer(clockRate: 8000, frameTicks: 160, maxDelay: .milliseconds(200))
        jb.insert(sequence: 10, timestamp: 0, payload: [0], arrival: 0)
        _ = frames(&jb, at: 0)
        // 12 arrives before 11; 11 comes 1 ms later, before 11 was given up on.
        jb.insert(sequence: 12, timestamp: 320, payload: [2], arrival: 39 * ms)
        jb.insert(sequence: 11, timestamp: 160, payload: [1], arrival: 39 * ms + ms / 2)
        #expect(frames(&jb, at: 40 * ms).map { (item: JitterBuffer.Item) -> UInt16 in if case .frame(let s, _, _) = item { s } else { 0 } } == [11, 12])
    }

    @Test("Late packets grow the delay (up to the maximum); steady arrivals shrink it again")
    func adapts() {
        var jb = JitterBuffer(clockRate: 8000, frameTicks: 160, maxDelay: .milliseconds(60))
        var now: UInt64 = 0
        var seq: UInt16 = 0
        var ts: UInt32 = 0
        func step(arrivalJitter: UInt64) {
            jb.insert(sequence: seq, timestamp: ts, payload: [0], arrival: now + arrivalJitter)
            _ = frames(&jb, at: now + arrivalJitter)
            seq &+= 1
            ts &+= 160
            now += 20 * ms
        }
        step(arrivalJitter: 0)
        // Packet 1 is 35 ms late, 2 on time: 1 is concealed when 2 arrives, then comes late.
        jb.insert(sequence: 2, timestamp: 320, payload: [0], arrival: 40 * ms)
        _ = frames(&jb, at: 40 * ms)
        jb.insert(sequence: 1, timestamp: 160, payload: [0], arrival: 55 * ms)
        #expect(jb.late == 1)
        #expect(jb.delay > .milliseconds(10) && jb.delay <= .milliseconds(60))
        // Many late packets never push it past the maximum.
        for _ in 0..<20 { jb.insert(sequence: 1, timestamp: 160, payload: [0], arrival: 500 * ms) }
        #expect(jb.delay == .milliseconds(60))
        // From now on perfectly steady: the delay comes down a frame at a time.
        seq = 3; ts = 480; now = 60 * ms
        for _ in 0..<400 { step(arrivalJitter: 0) }
        #expect(jb.delay < .milliseconds(20))
        #expect(jb.dropped >= 2)
    }

    @Test("A far jump restarts the buffer instead of concealing the gap")
    func restart() {
        var jb = JitterBuffer(clockRate: 8000, frameTicks: 160, maxDelay: .milliseconds(100))
        jb.insert(sequence: 1, timestamp: 0, payload: [1], arrival: 0)
        _ = frames(&jb, at: 0)
        jb.insert(sequence: 30000, timestamp: 999_999, payload: [2], arrival: 20 * ms)
        #expect(frames(&jb, at: 20 * ms) == [.frame(sequence: 30000, timestamp: 999_999, payload: [2])])
        #expect(jb.concealed == 0)
    }

    /// 20 ms G.711 frames from `first` on, one a frame time apart from `start`.
    func stream(_ jb: inout JitterBuffer, from first: UInt16, count: Int, start: UInt64, ssrc: UInt32 = 1, timestampBase: UInt32 = 0) -> [JitterBuffer.Item] {
        var out: [JitterBuffer.Item] = []
        for n in 0..<count {
            let t = start + UInt64(n) * 20 * ms
            let sequence = first &+ UInt16(n)
            jb.insert(sequence: sequence, timestamp: timestampBase &+ UInt32(sequence) &* 160, ssrc: ssrc, payload: [UInt8(truncatingIfNeeded: n)], arrival: t)
            out += frames(&jb, at: t)
        }
        return out
    }

    @Test("One stray packet 32,767 ahead does not mute the stream: two genuine packets in a row take it back (RFC 3550 A.1 probation)")
    func strayFarAhead() {
        var jb = JitterBuffer(clockRate: 8000, frameTicks: 160, maxDelay: .milliseconds(100))
        _ = stream(&jb, from: 100, count: 10, start: 0)
        jb.insert(sequence: 100 &+ 10 &+ 32767, timestamp: 5, ssrc: 1, payload: [0xEE], arrival: 200 * ms)
        _ = frames(&jb, at: 200 * ms)
        let after = stream(&jb, from: 110, count: 20, start: 220 * ms)
        let played = after.filter { if case .frame = $0 { true } else { false } }
        #expect(played.count >= 18, "genuine frames played after the stray: \(played.count) of 20")
    }

    @Test("Another SSRC is a new stream: it plays at once, nothing of the old one is concealed for it")
    func ssrcChange() {
        var jb = JitterBuffer(clockRate: 8000, frameTicks: 160, maxDelay: .milliseconds(100))
        _ = stream(&jb, from: 100, count: 10, start: 0, ssrc: 1)
        let other = stream(&jb, from: 7, count: 10, start: 200 * ms, ssrc: 2)
        #expect(other.first == .frame(sequence: 7, timestamp: 7 * 160, payload: [0]))
        #expect(jb.concealed == 0)
    }

    @Test("A timestamp jump of 2^31 with the next sequence number restarts the buffer instead of moving its playout clock back 74 hours")
    func timestampJump() {
        var jb = JitterBuffer(clockRate: 8000, frameTicks: 160, maxDelay: .milliseconds(100))
        _ = stream(&jb, from: 100, count: 10, start: 0)
        let jumped = stream(&jb, from: 110, count: 10, start: 200 * ms, timestampBase: 1 << 31)
        #expect(jumped.count == 10 && jb.concealed == 0, "each packet plays once, as it arrives")
        // Then packets that claim to be up to 63 frames ahead each: without a floor under the
        // playout clock, every one made all the frames between due at once.
        var concealedAtOnce = 0
        var sequence: UInt16 = 200
        for n in 0..<20 {
            let t = 400 * ms + UInt64(n) * 20 * ms
            sequence &+= 60
            jb.insert(sequence: sequence, timestamp: UInt32(sequence) &* 160 &+ (1 << 31), ssrc: 1, payload: [1], arrival: t)
            concealedAtOnce = max(concealedAtOnce, frames(&jb, at: t).filter { if case .lost = $0 { true } else { false } }.count)
        }
        #expect(concealedAtOnce <= 12, "at most the buffer's delay worth of frames concealed at once: \(concealedAtOnce)")
    }
}

@Suite("Output stream continuity and DTMF relay")
struct OutputStreamTests {
    @Test("Passthrough mapping keeps input gaps, and continues without a jump across an SSRC change")
    func passthroughMapping() {
        var output = RTPOutputStream(clockRate: 8000, ssrc: 77, sequence: 1000, timestamp: 50_000)
        var mapping = RTPPassthroughMapping()
        let ms: UInt64 = 1_000_000
        var mapped: [(UInt16, UInt32)] = []
        for (n, seq) in [UInt16(5), 6, 8, 9].enumerated() {  // 7 lost
            mapped.append(mapping.map(sequence: seq, timestamp: UInt32(seq) * 160, ssrc: 1, output: &output, now: UInt64(n) * 20 * ms, frameTicks: 160))
        }
        #expect(mapped.map(\.0) == [1000, 1001, 1003, 1004])
        #expect(mapped.map(\.1) == [50_000, 50_160, 50_480, 50_640])
        // The input changes SSRC (a transfer, a re-INVITE to another device) with unrelated numbers.
        let next = mapping.map(sequence: 40000, timestamp: 7, ssrc: 2, output: &output, now: 100 * ms, frameTicks: 160)
        #expect(next.0 == 1005 && next.1 == 50_800)
    }

    @Test("Telephone events: 8 kHz → 48 kHz durations scale; a new event gets the marker and the output's timestamp; end counted once")
    func relay() {
        var relay = TelephoneEventRelay(inputClockRate: 8000, outputClockRate: 48000)
        let first = relay.relay(TelephoneEvent(event: 5, duration: 160), inputTimestamp: 1000, outputTimestamp: 96000)
        #expect(first == .init(event: TelephoneEvent(event: 5, duration: 960), timestamp: 96000, marker: true, completesEvent: false))
        let update = relay.relay(TelephoneEvent(event: 5, duration: 800), inputTimestamp: 1000, outputTimestamp: 99999)
        #expect(update?.timestamp == 96000 && update?.marker == false && update?.event.duration == 4800)
        let end = relay.relay(TelephoneEvent(event: 5, isEnd: true, duration: 1200), inputTimestamp: 1000, outputTimestamp: 0)
        #expect(end?.completesEvent == true && end?.event.duration == 7200 && end?.event.isEnd == true)
        #expect(relay.relay(TelephoneEvent(event: 5, isEnd: true, duration: 1200), inputTimestamp: 1000, outputTimestamp: 0)?.completesEvent == false)
        // 48 kHz durations that would overflow 16 bits are clamped.
        var up = TelephoneEventRelay(inputClockRate: 8000, outputClockRate: 48000)
        #expect(up.relay(TelephoneEvent(event: 1, duration: 20000), inputTimestamp: 0, outputTimestamp: 0)?.event.duration == UInt16.max)
    }

    @Test("A generated digit: marker first, growing durations, three end packets, same timestamp")
    func generator() {
        var generator = TelephoneEventGenerator(event: 11, duration: 800, step: 160, timestamp: 4242)
        var packets: [(TelephoneEvent, Bool)] = []
        while let p = generator.next() { packets.append(p) }
        #expect(packets.count == 7)
        #expect(packets.map(\.1) == [true, false, false, false, false, false, false])
        #expect(packets.map(\.0.duration) == [160, 320, 480, 640, 800, 800, 800])
        #expect(packets.map(\.0.isEnd) == [false, false, false, false, true, true, true])
        #expect(TelephoneEvent(event: 11, duration: 1).digit == "#" && TelephoneEvent.event(for: "d") == 15)
    }
}
