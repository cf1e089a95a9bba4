public import NIOCore

/// The media between two call legs. Each direction produces one leg's output from the other
/// leg's input:
///
///     socket ─▶ receive(leg X) ─▶ latch check ─▶ SRTP unprotect ─▶ RTP header ─▶ direction X→Y
///        passthrough:  rewrite SSRC/seq/ts/PT in place ───────────────────────────┐
///        transcoding:  jitter buffer ─▶ decode/conceal ─▶ resample ─▶ encode ──────┤
///        telephone-event: relay with clock conversion, or a digit for SIP INFO ───┤
///                                                        SRTP protect (leg Y) ◀──┘ ─▶ sink
///
/// Passthrough when both legs agreed on the same codec and packet time (then only the SRTP
/// differs: RTP↔SRTP re-encryption), transcoding otherwise. The bridge is confined to one thread
/// (the event loop of its sockets) like the libsrtp and codec states it owns; times are injected
/// (nanoseconds), so tests drive it without sockets or clocks.
public final class MediaBridge {
    public enum Mode: Sendable, Equatable { case passthrough, transcoding }

    public private(set) var mode: Mode
    private let jitterBufferMax: Duration
    public weak var delegate: (any MediaBridgeDelegate)?
    private unowned let sink: any MediaPacketSink
    private var legs: [Leg]
    private var directions: [Direction]  // index = output leg
    /// One scratch buffer for building output packets (transcoding, DTMF, RTCP).
    private var scratch = [UInt8](repeating: 0, count: 2048)
    private var nextReportAt: UInt64
    public static let reportInterval: UInt64 = 5_000_000_000
    static let concealedPerPlayout = 4

    public enum SetupError: Error, Sendable {
        case srtp(SRTPSession.SetupError)
        case codec(AudioCodecError)
    }

    public init(
        a: MediaLegConfiguration, b: MediaLegConfiguration, jitterBufferMax: Duration = .milliseconds(200),
        sink: any MediaPacketSink, now: UInt64
    ) throws(SetupError) {
        self.sink = sink
        self.jitterBufferMax = jitterBufferMax
        let legs = try [Self.makeLeg(a), Self.makeLeg(b)]
        let mode = Self.mode(legs[0].config, legs[1].config)
        self.mode = mode
        self.directions = try MediaLegSide.allCases.map { output throws(SetupError) in
            try Self.makeDirection(into: output, legs: legs, mode: mode, jitterBufferMax: jitterBufferMax, continuing: nil)
        }
        self.legs = legs
        self.nextReportAt = now + Self.reportInterval
        for side in MediaLegSide.allCases { resetReporter(side) }
    }

    /// Same codec and packet time: only the transport (RTP/SRTP, keys) differs.
    static func mode(_ a: MediaLegConfiguration, _ b: MediaLegConfiguration) -> Mode {
        a.codec == b.codec && a.ptime == b.ptime ? .passthrough : .transcoding
    }

    private static func makeLeg(_ config: MediaLegConfiguration) throws(SetupError) -> Leg {
        do {
            return try Leg(config.checked)
        } catch {
            throw .srtp(error)
        }
    }

    private static func makeDirection(
        into output: MediaLegSide, legs: [Leg], mode: Mode, jitterBufferMax: Duration, continuing previous: RTPOutputStream?
    ) throws(SetupError) -> Direction {
        do {
            var direction = try Direction(input: legs[output.other.rawValue].config, output: legs[output.rawValue].config, mode: mode, jitterBufferMax: jitterBufferMax)
            if let previous { direction.output = previous.continued(clockRate: legs[output.rawValue].config.codec.rtpClockRate) }
            return direction
        } catch {
            throw .codec(error)
        }
    }

    private func resetReporter(_ side: MediaLegSide) {
        let stream = directions[side.rawValue].output
        legs[side.rawValue].reporter = RTCPReporter(ssrc: stream.ssrc, canonicalName: legs[side.rawValue].config.canonicalName, clockRate: stream.clockRate)
    }

    /// A leg renegotiated (a re-INVITE: another codec, packet time, keys or address). The bridge
    /// rebuilds what depends on it — possibly switching between passthrough and transcoding — and
    /// keeps both output streams going: same SSRC, the next sequence number, timestamps moving on
    /// (RFC 3550 §5.1), so the far ends see one continuous source across the change.
    public func update(_ side: MediaLegSide, to config: MediaLegConfiguration, now: UInt64) throws(SetupError) {
        var legs = self.legs
        var leg = try Self.makeLeg(config)
        leg.counters = legs[side.rawValue].counters
        legs[side.rawValue] = leg
        let mode = Self.mode(legs[0].config, legs[1].config)
        var directions: [Direction] = []
        for output in MediaLegSide.allCases {
            var previous = self.directions[output.rawValue].output
            previous.catchUp(to: now, frameTicks: legs[output.rawValue].config.frameTicks)
            directions.append(try Self.makeDirection(into: output, legs: legs, mode: mode, jitterBufferMax: jitterBufferMax, continuing: previous))
        }
        self.legs = legs
        self.directions = directions
        self.mode = mode
        resetReporter(side)
    }

    /// A leg's counters; late packets are those its input's jitter buffer had to drop.
    public func counters(_ leg: MediaLegSide) -> MediaLegCounters {
        var counters = legs[leg.rawValue].counters
        counters.latePackets = directions[leg.other.rawValue].jitterBuffer?.late ?? 0
        return counters
    }

    /// What a leg has sent us that shows its peer is there — RTP and RTCP that passed the source
    /// and SRTP checks — and whether its direction says it should be sending at all (not while we
    /// hold it, nor while it says `inactive` or `recvonly`). Inactivity supervision reads these.
    public func activity(_ leg: MediaLegSide) -> (received: UInt64, expected: Bool) {
        let counters = legs[leg.rawValue].counters
        return (counters.packetsReceived &+ counters.rtcpReceived, legs[leg.rawValue].config.receives)
    }

    /// The current added delay of the jitter buffer on the input from `leg` (transcoding only).
    public func jitterBufferDelay(input leg: MediaLegSide) -> Duration? { directions[leg.other.rawValue].jitterBuffer?.delay }
    public func receiveStatistics(_ leg: MediaLegSide) -> RTPReceiveStatistics { legs[leg.rawValue].reporter.receiveStatistics }
    public func roundTripTime(_ leg: MediaLegSide) -> Duration? { legs[leg.rawValue].reporter.roundTripTime }
    /// The SSRC of what the bridge sends on a leg.
    public func outputSSRC(_ leg: MediaLegSide) -> UInt32 { directions[leg.rawValue].output.ssrc }
    /// Where the bridge sends a leg's RTP now (after latching).
    /// The codec a leg runs.
    public func legCodec(_ leg: MediaLegSide) -> AudioCodecKind { legs[leg.rawValue].config.codec }

    /// The RTP clock of what `leg` receives (jitter counts in it).
    public func rtpClockRate(_ leg: MediaLegSide) -> Int { legs[leg.rawValue].config.codec.rtpClockRate }

    public func remoteAddress(_ leg: MediaLegSide) -> SocketAddress { legs[leg.rawValue].remote }

    // MARK: - Receive

    /// One datagram that arrived on `leg`'s RTP socket. `buffer` holds it at the start and has
    /// `SRTPSession.maxTrailer` bytes of room after `length`; it is worked on in place.
    public func receive(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: SocketAddress, on side: MediaLegSide, now: UInt64) {
        let legIndex = side.rawValue
        guard Self.sameHost(source, legs[legIndex].config.remote) else {
            legs[legIndex].counters.wrongSource &+= 1
            return
        }
        let packet = UnsafeMutableRawBufferPointer(rebasing: buffer[..<length])
        switch RTPDemultiplexer.classify(UnsafeRawBufferPointer(packet)) {
        case .rtcp:
            receiveRTCP(buffer, length: length, from: source, on: side, now: now)
            return
        case .other:
            legs[legIndex].counters.malformed &+= 1
            return
        case .rtp:
            break
        }
        guard legs[legIndex].config.receives else {
            // On hold by us (sendonly, inactive): whatever still comes is not played.
            legs[legIndex].counters.heldBack &+= 1
            return
        }
        var plainLength = length
        if let inbound = legs[legIndex].inbound {
            do {
                plainLength = try inbound.unprotect(buffer, length: length)
            } catch {
                legs[legIndex].count(error)
                return
            }
        }
        let plain = UnsafeMutableRawBufferPointer(rebasing: buffer[..<plainLength])
        let header: RTPHeader
        do {
            header = try RTPHeader.parse(UnsafeRawBufferPointer(plain))
        } catch {
            legs[legIndex].counters.malformed &+= 1
            return
        }
        let output = side.other
        let inputConfig = legs[legIndex].config
        let isAudio = header.payloadType == inputConfig.payloadType
        guard isAudio || header.payloadType == inputConfig.telephoneEventPayloadType else {
            // Neither its audio nor its events: not the peer's stream, so it neither latches
            // the port nor counts as received.
            legs[legIndex].counters.unknownPayloadType &+= 1
            return
        }
        let payloadRange = header.payloadRange(packetLength: plainLength)
        if isAudio, mode == .transcoding, payloadRange.isEmpty || payloadRange.count > inputConfig.codec.maxPayloadBytes {
            // Outside the frame budget (nothing to decode, or more than 120 ms): dropped, never
            // decoded, so no decoder or queue is sized by what a packet says.
            legs[legIndex].counters.oversized &+= 1
            return
        }
        // Symmetric RTP: answer to where the peer's packets come from (same host as its SDP).
        if source != legs[legIndex].remote { legs[legIndex].remote = source }
        legs[legIndex].counters.packetsReceived &+= 1
        legs[legIndex].counters.bytesReceived &+= UInt64(plainLength)
        legs[legIndex].reporter.received(sequenceNumber: header.sequenceNumber, timestamp: header.timestamp, ssrc: header.ssrc, at: now)
        guard legs[output.rawValue].config.sends else {
            // The other leg is held (recvonly, inactive, c=0.0.0.0): nothing goes into it, and
            // its stream's sequence numbers stay where they were (RFC 3550 §5.1: no false loss).
            legs[output.rawValue].counters.heldBack &+= 1
            return
        }

        if isAudio {
            switch mode {
            case .passthrough:
                forwardPassthrough(buffer, header: header, length: plainLength, to: output, payloadType: legs[output.rawValue].config.payloadType, now: now)
            case .transcoding:
                let payload = Array(UnsafeRawBufferPointer(rebasing: plain[payloadRange]))
                directions[output.rawValue].jitterBuffer?.insert(
                    sequence: header.sequenceNumber, timestamp: header.timestamp, ssrc: header.ssrc, payload: payload, arrival: now)
                playOut(to: output, now: now)
            }
        } else {
            let payload = UnsafeRawBufferPointer(rebasing: plain[header.payloadRange(packetLength: plainLength)])
            guard let event = TelephoneEvent(payload) else {
                legs[legIndex].counters.malformed &+= 1
                return
            }
            relayEvent(event, header: header, buffer: buffer, length: plainLength, from: side, now: now)
        }
    }

    /// A datagram too large for the receive buffer arrived on `leg` (the socket layer saw it
    /// truncated): dropped and counted, never parsed.
    public func dropOversized(on side: MediaLegSide) {
        legs[side.rawValue].counters.oversized &+= 1
    }

    /// An RTCP datagram (on the RTP socket with rtcp-mux, or on the RTCP socket). Like RTP, it
    /// is taken only from the host in the peer's SDP.
    public func receiveRTCP(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: SocketAddress, on side: MediaLegSide, now: UInt64) {
        let legIndex = side.rawValue
        guard Self.sameHost(source, legs[legIndex].config.remoteRTCP ?? legs[legIndex].config.remote) else {
            legs[legIndex].counters.wrongSource &+= 1
            return
        }
        var plainLength = length
        if let inbound = legs[legIndex].inbound {
            do {
                plainLength = try inbound.unprotectRTCP(buffer, length: length)
            } catch {
                legs[legIndex].count(error)
                return
            }
        }
        do {
            let packets = try RTCPPacket.parseCompound(UnsafeRawBufferPointer(rebasing: buffer[..<plainLength]))
            legs[legIndex].reporter.receive(packets, at: now)
            legs[legIndex].counters.rtcpReceived &+= 1
        } catch {
            legs[legIndex].counters.malformed &+= 1
        }
    }

    // MARK: - Passthrough

    /// Rewrites the packet in place for the output leg and sends it: same payload, the output's
    /// SSRC, mapped sequence number and timestamp, the output's payload type.
    private func forwardPassthrough(
        _ buffer: UnsafeMutableRawBufferPointer, header: RTPHeader, length: Int, to output: MediaLegSide, payloadType: UInt8, now: UInt64
    ) {
        let o = output.rawValue
        let (sequence, timestamp) = directions[o].mapPassthrough(header, now: now, frameTicks: legs[o].config.frameTicks)
        RTPHeader.rewrite(buffer, marker: header.marker, payloadType: payloadType, sequenceNumber: sequence, timestamp: timestamp, ssrc: directions[o].output.ssrc)
        send(buffer, length: length, on: output, payloadBytes: length - header.headerLength, timestamp: timestamp, now: now)
    }

    // MARK: - Transcoding

    /// Plays out every frame of the direction into `output` whose time has come.
    private func playOut(to output: MediaLegSide, now: UInt64) {
        let o = output.rawValue
        // Held: no concealment either; resuming (`update`) starts a fresh jitter buffer.
        guard legs[o].config.sends else { return }
        // Frames made up in one go: an outage ends in a burst of concealment; the rest follows
        // on the next ticks (5 ms apart), so no packet buys more than this much codec work.
        var concealedHere = 0
        while concealedHere < Self.concealedPerPlayout, let item = directions[o].jitterBuffer?.pop(now: now) {
            let decoded: Int
            switch item {
            case .frame(_, _, let payload):
                decoded = directions[o].decode(payload)
            case .lost(_, let next):
                concealedHere += 1
                decoded = directions[o].conceal(next: next)
                legs[output.other.rawValue].counters.concealedFrames &+= 1
            }
            guard decoded > 0 else { continue }
            guard directions[o].enqueue(samples: decoded) else {
                legs[output.other.rawValue].counters.oversized &+= 1
                continue
            }
            while directions[o].hasOutputFrame {
                let payloadLength = scratch.withUnsafeMutableBytes { bytes in
                    directions[o].encodeFrame(into: UnsafeMutableRawBufferPointer(rebasing: bytes[12...]))
                }
                guard payloadLength > 0 else { continue }
                directions[o].output.catchUp(to: now, frameTicks: legs[o].config.frameTicks)
                let timestamp = directions[o].output.takeTimestamp(advancingBy: legs[o].config.frameTicks)
                let sequence = directions[o].output.takeSequence(at: now)
                let header = RTPHeader(payloadType: legs[o].config.payloadType, sequenceNumber: sequence, timestamp: timestamp, ssrc: directions[o].output.ssrc)
                scratch.withUnsafeMutableBytes { bytes in
                    header.writeFixed(into: bytes)
                    send(bytes, length: 12 + payloadLength, on: output, payloadBytes: payloadLength, timestamp: timestamp, now: now)
                }
            }
        }
    }

    // MARK: - Hold

    /// The other leg sends nothing by agreement (we hold it, or it said `inactive`/`recvonly`):
    /// the leg still on the call gets silence at its packet time instead of no stream at all
    /// (RFC 3264 §8.4 leaves the held side's media to us; a station would take a silent stream
    /// for a dead call). Encoded once per hold with the output's own codec.
    private func playSilence(to output: MediaLegSide, now: UInt64) {
        let o = output.rawValue
        guard legs[o].config.sends, !legs[output.other.rawValue].config.receives else {
            directions[o].nextSilenceAt = nil
            return
        }
        let config = legs[o].config
        if directions[o].silence == nil {
            directions[o].silence = Self.silence(config)
            directions[o].nextSilenceAt = now
        }
        guard let silence = directions[o].silence, !silence.isEmpty, var due = directions[o].nextSilenceAt, due <= now else { return }
        let step = UInt64(min(max(config.ptime, 10), 120)) * 1_000_000  // 10–120 ms (`checked` did it too)
        // After a stall, one packet and the schedule moves on: never a burst.
        if now - due > step { due = now }
        directions[o].nextSilenceAt = due + step
        directions[o].output.catchUp(to: now, frameTicks: config.frameTicks)
        let timestamp = directions[o].output.takeTimestamp(advancingBy: config.frameTicks)
        let sequence = directions[o].output.takeSequence(at: now)
        let header = RTPHeader(payloadType: config.payloadType, sequenceNumber: sequence, timestamp: timestamp, ssrc: directions[o].output.ssrc)
        scratch.withUnsafeMutableBytes { bytes in
            header.writeFixed(into: bytes)
            for (index, byte) in silence.enumerated() { bytes[12 + index] = byte }
            send(bytes, length: 12 + silence.count, on: output, payloadBytes: silence.count, timestamp: timestamp, now: now)
        }
    }

    /// One packet time of silence in a leg's codec (empty if the codec cannot be made).
    static func silence(_ config: MediaLegConfiguration) -> [UInt8] {
        guard let encoder = try? config.codec.makeEncoder(options: config.codecOptions) else { return [] }
        let rate = config.codec.nativeSampleRate
        let zeros = [Int16](repeating: 0, count: rate * config.ptime / 1000)
        var out = [UInt8](repeating: 0, count: 1500)
        var n = 0
        // The encoder's state settles first (ADPCM adapts): the last of a few frames is the one
        // that decodes to silence when repeated.
        for _ in 0..<10 {
            n = zeros.withUnsafeBufferPointer { pcm in out.withUnsafeMutableBytes { (try? encoder.encode(pcm, into: $0)) ?? 0 } }
        }
        return (1...1400).contains(n) ? Array(out.prefix(n)) : []
    }

    // MARK: - DTMF

    private func relayEvent(
        _ event: TelephoneEvent, header: RTPHeader, buffer: UnsafeMutableRawBufferPointer, length: Int, from input: MediaLegSide, now: UInt64
    ) {
        let output = input.other
        let o = output.rawValue
        let outputConfig = legs[o].config
        guard let outputPT = outputConfig.telephoneEventPayloadType else {
            // The other peer takes SIP INFO: report the digit once, at its end.
            let mapped = directions[o].eventRelay.relay(event, inputTimestamp: header.timestamp, outputTimestamp: 0)
            guard mapped?.completesEvent == true, let digit = event.digit, admitDigit(from: input, now: now) else { return }
            legs[input.rawValue].counters.dtmfEvents &+= 1
            let ms = Int(event.duration) * 1000 / legs[input.rawValue].config.eventClockRate
            delegate?.mediaBridge(self, receivedDigit: digit, durationMilliseconds: ms, on: input)
            return
        }
        if mode == .passthrough, legs[input.rawValue].config.eventClockRate == outputConfig.eventClockRate {
            // Same codec, same clocks: the event packets travel like the audio.
            if event.isEnd, directions[o].eventRelay.relay(event, inputTimestamp: header.timestamp, outputTimestamp: 0)?.completesEvent == true,
                admitDigit(from: input, now: now)
            {
                legs[input.rawValue].counters.dtmfEvents &+= 1
                if let digit = event.digit { delegate?.mediaBridge(self, relayedDigit: digit, on: input) }
            }
            forwardPassthrough(buffer, header: header, length: length, to: output, payloadType: outputPT, now: now)
            return
        }
        guard let mapped = directions[o].eventRelay.relay(event, inputTimestamp: header.timestamp, outputTimestamp: directions[o].output.nextTimestamp) else { return }
        if mapped.completesEvent, admitDigit(from: input, now: now) {
            legs[input.rawValue].counters.dtmfEvents &+= 1
            if let digit = event.digit { delegate?.mediaBridge(self, relayedDigit: digit, on: input) }
        }
        sendEvent(mapped.event, marker: mapped.marker, timestamp: mapped.timestamp, payloadType: outputPT, on: output, now: now)
    }

    private func sendEvent(_ event: TelephoneEvent, marker: Bool, timestamp: UInt32, payloadType: UInt8, on output: MediaLegSide, now: UInt64) {
        let o = output.rawValue
        let sequence = directions[o].output.takeSequence(at: now)
        let header = RTPHeader(marker: marker, payloadType: payloadType, sequenceNumber: sequence, timestamp: timestamp, ssrc: directions[o].output.ssrc)
        scratch.withUnsafeMutableBytes { bytes in
            header.writeFixed(into: bytes)
            event.write(into: UnsafeMutableRawBufferPointer(rebasing: bytes[12..<16]))
            send(bytes, length: 16, on: output, payloadBytes: 4, timestamp: timestamp, now: now)
        }
    }

    /// Whether a digit that ended on `input` may be reported (and sent as SIP INFO): a keypad
    /// makes a few digits a second, a flood of end packets with new timestamps would make as many
    /// tasks, log lines, MQTT events and INFO transactions as it has packets.
    private func admitDigit(from input: MediaLegSide, now: UInt64) -> Bool {
        guard legs[input.rawValue].digitBudget.take(now: now) else {
            legs[input.rawValue].counters.digitsThrottled &+= 1
            return false
        }
        return true
    }

    /// Sends a digit into `leg` (it came from the other leg's SIP INFO). With telephone-event on
    /// that leg, as RFC 4733 packets paced by `tick`; returns false when the leg has none.
    @discardableResult
    public func sendDigit(_ digit: Character, durationMilliseconds: Int, on leg: MediaLegSide, now: UInt64) -> Bool {
        guard let event = TelephoneEvent.event(for: digit), legs[leg.rawValue].config.telephoneEventPayloadType != nil else { return false }
        let o = leg.rawValue
        let config = legs[o].config
        directions[o].output.catchUp(to: now, frameTicks: config.frameTicks)
        let clock = config.eventClockRate
        // A digit lasts 40 ms to 5 s whatever the INFO said (its Duration is outside input).
        let milliseconds = min(max(durationMilliseconds, 40), 5000)
        directions[o].pendingDigits.append(TelephoneEventGenerator(
            event: event, duration: milliseconds * clock / 1000, step: clock * config.ptime / 1000, timestamp: directions[o].output.nextTimestamp))
        directions[o].nextDigitPacketAt = min(directions[o].nextDigitPacketAt ?? now, now)
        tick(now: now)
        return true
    }

    // MARK: - Timers

    /// Drives what is not driven by arriving packets: jitter-buffer playout, injected digits,
    /// RTCP reports. The socket layer calls it every few milliseconds.
    public func tick(now: UInt64) {
        for output in MediaLegSide.allCases {
            let o = output.rawValue
            if mode == .transcoding { playOut(to: output, now: now) }
            playSilence(to: output, now: now)
            while let due = directions[o].nextDigitPacketAt, due <= now, !directions[o].pendingDigits.isEmpty {
                guard let pt = legs[o].config.telephoneEventPayloadType, let (event, marker) = directions[o].pendingDigits[0].next() else {
                    directions[o].pendingDigits.removeFirst()
                    continue
                }
                sendEvent(event, marker: marker, timestamp: directions[o].pendingDigits[0].timestamp, payloadType: pt, on: output, now: now)
                if directions[o].pendingDigits[0].isFinished { directions[o].pendingDigits.removeFirst() }
                let step = UInt64(max(legs[o].config.ptime, 10)) * 1_000_000
                directions[o].nextDigitPacketAt = directions[o].pendingDigits.isEmpty ? nil : due + step
            }
        }
        if now >= nextReportAt {
            nextReportAt = now + Self.reportInterval
            for side in MediaLegSide.allCases { sendReport(on: side, now: now) }
        }
    }

    private func sendReport(on side: MediaLegSide, now: UInt64) {
        let i = side.rawValue
        var report = legs[i].reporter.makeReport(at: now)
        let length = report.count
        report += [UInt8](repeating: 0, count: SRTPSession.maxTrailer + 4)
        var sendLength = length
        if let outbound = legs[i].outbound {
            do {
                sendLength = try report.withUnsafeMutableBytes { try outbound.protectRTCP($0, length: length) }
            } catch {
                return
            }
        }
        let destination = legs[i].config.remoteRTCP ?? legs[i].remote
        // The RFC 2543 hold (c=0.0.0.0): nowhere to report to (a datagram to 0.0.0.0 would reach
        // this host).
        if let ip = destination.ipAddress, ip == "0.0.0.0" || ip == "::" { return }
        report.withUnsafeBytes { sink.send(UnsafeRawBufferPointer(rebasing: $0[..<sendLength]), to: destination, from: side, rtcp: legs[i].config.remoteRTCP != nil) }
        legs[i].counters.rtcpSent &+= 1
    }

    // MARK: - Send

    private func send(_ buffer: UnsafeMutableRawBufferPointer, length: Int, on side: MediaLegSide, payloadBytes: Int, timestamp: UInt32, now: UInt64) {
        let i = side.rawValue
        guard legs[i].config.sends else {
            // A held stream (recvonly, inactive, c=0.0.0.0): nothing goes into it (digits that
            // were due, for one).
            legs[i].counters.heldBack &+= 1
            return
        }
        var sendLength = length
        if let outbound = legs[i].outbound {
            do {
                sendLength = try outbound.protect(buffer, length: length)
            } catch {
                return
            }
        }
        legs[i].reporter.sent(payloadBytes: payloadBytes, timestamp: timestamp, at: now)
        legs[i].counters.packetsSent &+= 1
        sink.send(UnsafeRawBufferPointer(rebasing: buffer[..<sendLength]), to: legs[i].remote, from: side, rtcp: false)
    }

    static func sameHost(_ a: SocketAddress, _ b: SocketAddress) -> Bool {
        switch (a, b) {
        case (.v4(let x), .v4(let y)): x.address.sin_addr.s_addr == y.address.sin_addr.s_addr
        case (.v6(let x), .v6(let y)): withUnsafeBytes(of: x.address.sin6_addr) { xa in withUnsafeBytes(of: y.address.sin6_addr) { ya in xa.elementsEqual(ya) } }
        default: false
        }
    }
}

extension MediaBridge {
    /// A leg's socket-facing state: SRTP sessions, the latched peer address, RTCP, counters.
    struct Leg {
        let config: MediaLegConfiguration
        let inbound: SRTPSession?
        let outbound: SRTPSession?
        var remote: SocketAddress
        var reporter: RTCPReporter
        var counters = MediaLegCounters()
        var digitBudget = DigitBudget()

        init(_ config: MediaLegConfiguration) throws(SRTPSession.SetupError) {
            self.config = config
            self.remote = config.remote
            if let keys = config.srtp {
                inbound = try SRTPSession(key: keys.remote, direction: .inbound)
                outbound = try SRTPSession(key: keys.local, direction: .outbound)
            } else {
                inbound = nil
                outbound = nil
            }
            reporter = RTCPReporter(ssrc: 0, canonicalName: config.canonicalName, clockRate: config.codec.rtpClockRate)
        }

        /// At most `burst` digits at once, then one per `interval`: more than a hand on a keypad.
        struct DigitBudget {
            static let burst = 10
            static let interval: UInt64 = 100_000_000
            private var tokens = DigitBudget.burst
            private var refilledAt: UInt64?

            mutating func take(now: UInt64) -> Bool {
                if let last = refilledAt {
                    if now > last {
                        let earned = (now - last) / Self.interval
                        if earned > 0 {
                            tokens = Int(min(UInt64(Self.burst), UInt64(tokens) + earned))
                            refilledAt = last + earned * Self.interval
                        }
                    }
                } else {
                    refilledAt = now
                }
                guard tokens > 0 else { return false }
                tokens -= 1
                return true
            }
        }

        mutating func count(_ error: SRTPSession.Failure) {
            switch error {
            case .authentication: counters.authenticationFailures &+= 1
            case .replay: counters.replayed &+= 1
            case .malformed, .other: counters.malformed &+= 1
            }
        }
    }
}
