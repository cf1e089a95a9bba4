import Foundation
import Media
import Mesh
import NetworkAddress
import NIOCore
import PeerTestSupport
import SIP
import SIPTransport
import SIPUserAgent
import Testing

/// The abuse suite (docs/RELIABILITY.md): hostile input against the running daemons over real
/// sockets — SDP values, RTP/RTCP/SRTP on answered calls, SIP byte streams, mDNS on the mesh link
/// from a LAN host in its own network namespace, claiming requests — sent from the LAN side, from
/// an authenticated cloud user through the core, and from unauthenticated TLS clients. After
/// every case both daemons still run, neither printed a crash report (the log, not only the pid:
/// Swift's backtracer keeps a dying process alive for seconds), the gateway answers OPTIONS and
/// the core a TLS request. At the end a normal call each way carries audio.
@Suite("Hostile input against the running daemons", .serialized)
struct HostileInputTests {
    static func legacyOffer(port: Int = 40000, formats: String = "9 100", _ extra: String...) -> String {
        var lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0", "m=audio \(port) RTP/AVP \(formats)",
                     "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000", "a=rtpmap:100 telephone-event/8000"]
        lines += extra
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    static func cloudOffer(port: Int = 41000, _ extra: String...) -> String {
        let key = Base64.encode([UInt8](repeating: 0x42, count: 30))
        var lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0", "m=audio \(port) RTP/SAVP 111 9 101",
                     "a=rtpmap:111 opus/48000/2", "a=rtpmap:9 G722/8000", "a=rtpmap:101 telephone-event/48000",
                     "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:\(key)"]
        lines += extra
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    static func rtp(pt: UInt8, sequence: UInt16, timestamp: UInt32, ssrc: UInt32 = 0x5EED, payload: [UInt8], marker: Bool = false) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 12)
        bytes.withUnsafeMutableBytes { RTPHeader(marker: marker, payloadType: pt, sequenceNumber: sequence, timestamp: timestamp, ssrc: ssrc).writeFixed(into: $0) }
        return bytes + payload
    }

    @Test func hostileCasesLeaveBothDaemonsRunningAndCallsStillWorkAfter() async throws {
        let site = try await HostileSite.start()
        var cases: [String] = []
        /// Runs one case, then checks both daemons. Calls end after it unless `keepCalls` (the
        /// media cases share an answered call).
        func check(_ name: String, keepCalls: Bool = false, _ body: () async throws -> Void) async {
            cases.append(name)
            do {
                try await body()
            } catch {
                Issue.record("\(name): the case could not be run: \(error)")
            }
            if let problem = await site.unhealthy() { Issue.record("after \(name): \(problem)") }
            if !keepCalls {
                await site.lan.hangUpAll()
                await site.bob.hangUpAll()
                try? await Task.sleep(for: .milliseconds(200))
            }
        }

        // MARK: SDP from the LAN side (an INVITE to a channel number)
        let refusedOffers: [(String, String)] = [
            ("RTP port 65535 without rtcp-mux (RTCP 65536)", Self.legacyOffer(port: 65535)),
            ("a=rtcp:70000", Self.legacyOffer("a=rtcp:70000")),
            ("a=rtcp:-1", Self.legacyOffer("a=rtcp:-1")),
            ("c= a host name", Self.legacyOffer().replacingOccurrences(of: "c=IN IP4 127.0.0.1", with: "c=IN IP4 door.example")),
            ("no shared codec, rtpmap clocks 0 and 2^63", Self.legacyOffer(formats: "96 97", "a=rtpmap:96 G722/0", "a=rtpmap:97 PCMU/9223372036854775807")),
        ]
        for (name, offer) in refusedOffers {
            await check("LAN offer: \(name)") {
                let outcome = try await site.lanCall(offer)
                #expect(outcome == .failed(488), "\(name): \(outcome)")
            }
        }
        let takenOffers: [(String, String)] = [
            ("a=ptime:999999999999999", Self.legacyOffer("a=ptime:999999999999999")),
            ("a=ptime:0", Self.legacyOffer("a=ptime:0")),
            ("a=ptime:-20 and a=maxptime:9223372036854775808", Self.legacyOffer("a=ptime:-20", "a=maxptime:9223372036854775808")),
            ("telephone-event/9000000000000000000", Self.legacyOffer().replacingOccurrences(of: "telephone-event/8000", with: "telephone-event/9000000000000000000")),
            ("16,000 payload formats in 60 KB", Self.legacyOffer(formats: "9 " + (0..<16000).map { _ in "100" }.joined(separator: " "))),
            ("crypto lines on plain RTP with lifetime 2^99999 and MKI", Self.legacyOffer("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|2^99999|99999999999:4")),
        ]
        for (name, offer) in takenOffers {
            await check("LAN offer: \(name)") {
                let outcome = try await site.lanCall(offer)
                guard case .answered = outcome else {
                    Issue.record("\(name): a usable offer was not answered: \(outcome)")
                    return
                }
                try await Task.sleep(for: .milliseconds(600))  // media set up and running
            }
        }

        // MARK: Media on answered calls (G.722 and PCMU on the legacy leg, Opus SRTP on the cloud leg)
        let g722 = try await site.mediaCall(formats: "9 100")
        let sender = try UDPSocket()
        var sequence: UInt16 = 100
        var timestamp: UInt32 = 16000
        func legacy(_ packets: [[UInt8]], to call: HostileSite.MediaCall? = nil) {
            for packet in packets { sender.send(packet, to: (call ?? g722).gatewayLegacyPort) }
        }
        func genuine(_ count: Int, pt: UInt8 = 9) -> [[UInt8]] {
            (0..<count).map { _ in
                sequence &+= 1
                timestamp &+= 160
                return Self.rtp(pt: pt, sequence: sequence, timestamp: timestamp, payload: [UInt8](repeating: 0x5A, count: 160))
            }
        }
        legacy(genuine(20))
        let mediaCases: [(String, () -> [[UInt8]])] = [
            ("G.722 payload of 1,500 bytes", { genuine(3) + [Self.rtp(pt: 9, sequence: sequence &+ 1, timestamp: timestamp &+ 160, payload: [UInt8](repeating: 0xD5, count: 1500))] + genuine(3) }),
            ("empty payloads", { (0..<5).map { _ in Self.rtp(pt: 9, sequence: sequence &+ 1, timestamp: timestamp, payload: []) } }),
            ("padding count past the payload", { [Self.rtp(pt: 9, sequence: 1, timestamp: 1, payload: [0, 0, 0, 250]).enumerated().map { $0.offset == 0 ? $0.element | 0x20 : $0.element }] }),
            ("15 CSRCs in a 20-byte packet", { [[0x8F, 9, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]] }),
            ("header extension of 0xFFFF words", { [[0x90, 9, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1, 0xBE, 0xDE, 0xFF, 0xFF, 1, 2, 3, 4]] }),
            ("timestamp jumps of 2^31 back and forth", { (0..<20).map { n in
                sequence &+= 1
                return Self.rtp(pt: 9, sequence: sequence, timestamp: timestamp &+ (n.isMultiple(of: 2) ? 1 << 31 : 0), payload: [UInt8](repeating: 1, count: 160)) } }),
            ("one packet 32,767 ahead, then the stream", { [Self.rtp(pt: 9, sequence: sequence &+ 32767, timestamp: timestamp, payload: [UInt8](repeating: 2, count: 160))] + genuine(10) }),
            ("a new SSRC every packet", { (0..<50).map { n in
                sequence &+= 1
                return Self.rtp(pt: 9, sequence: sequence, timestamp: timestamp, ssrc: UInt32(n), payload: [UInt8](repeating: 3, count: 160)) } }),
            ("every payload type nobody negotiated", { (0..<128).map { Self.rtp(pt: UInt8($0), sequence: UInt16($0), timestamp: 0, payload: [UInt8](repeating: 4, count: 40)) } }),
            ("a 4,000-byte datagram", { [Self.rtp(pt: 9, sequence: sequence, timestamp: timestamp, payload: [UInt8](repeating: 5, count: 3988))] }),
            ("500 digit ends with new timestamps (a digit flood)", { (0..<500).map { n in
                Self.rtp(pt: 100, sequence: UInt16(truncatingIfNeeded: 2000 + n), timestamp: UInt32(n * 3), payload: [5, 0x8A, 0x01, 0x40]) } }),
            ("events 255 with duration 0xFFFF", { (0..<20).map { n in Self.rtp(pt: 100, sequence: UInt16(3000 + n), timestamp: 99, payload: [255, 0xBF, 0xFF, 0xFF]) } }),
            ("RTCP with lying lengths and counts", { [
                [0x9F, 200, 0xFF, 0xFF, 0, 0, 0, 1], [0x81, 201, 0, 1, 0, 0, 0, 1], [0x81, 202, 0, 3, 0, 0, 0, 1, 1, 255, 0x41, 0x41],
                [0x9F, 203, 0, 1, 0, 0, 0, 1], [0x80, 204, 0, 0], [0x80, 200, 0, 6] + [UInt8](repeating: 0xFF, count: 24),
            ] }),
        ]
        for (name, packets) in mediaCases {
            await check("legacy media: \(name)", keepCalls: true) {
                legacy(packets())
                legacy(genuine(5))
                try await Task.sleep(for: .milliseconds(150))
            }
        }
        let endedBefore = site.gateway.text.components(separatedBy: "call ended").count
        await site.lan.hangUpAll()
        // The call's statistics (its "call ended" line) count what was dropped for not fitting.
        try await site.eventually("the first media call's statistics") { site.gateway.text.components(separatedBy: "call ended").count > endedBefore }
        let line = site.gateway.text.components(separatedBy: "call ended").last?.prefix { $0 != "\n" } ?? ""
        let oversized = line.components(separatedBy: "oversized=").dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
        #expect(oversized >= 7, "the legacy leg's oversized packets counted in the call's statistics: \(line)")
        await check("legacy media: a PCMU payload of 1,400 bytes") {
            let pcmu = try await site.mediaCall(formats: "0 100")
            legacy(genuine(5, pt: 0) + [Self.rtp(pt: 0, sequence: sequence &+ 1, timestamp: timestamp &+ 160, payload: [UInt8](repeating: 0xFF, count: 1400))] + genuine(5, pt: 0), to: pcmu)
            try await Task.sleep(for: .milliseconds(300))
        }
        // The cloud leg, SRTP with bob's own key: the packets authenticate and reach the decoder.
        let g722Again = try await site.mediaCall(formats: "9 100")
        let cloudCases: [(String, [(payloadType: UInt8, payload: [UInt8], protect: Bool)])] = [
            ("empty Opus payloads (SRTP, authenticated)", Array(repeating: (111, [], true), count: 5)),
            ("1,400 bytes of Opus garbage (SRTP, authenticated)", Array(repeating: (111, [UInt8](repeating: 0xFC, count: 1400), true), count: 3)),
            ("SRTP that does not authenticate", (0..<50).map { n in (111, (0..<200).map { UInt8(truncatingIfNeeded: $0 * n) }, false) }),
            ("telephone-event 255 with duration 0xFFFF (SRTP)", Array(repeating: (101, [255, 0xBF, 0xFF, 0xFF], true), count: 10)),
        ]
        for (name, packets) in cloudCases {
            await check("cloud media: \(name)", keepCalls: true) {
                try site.sendCloud(g722Again, packets)
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        await check("cloud media: SRTCP garbage and RTCP in the clear", keepCalls: true) {
            let socket = try UDPSocket()
            for n in 0..<30 { socket.send((0..<80).map { UInt8(truncatingIfNeeded: $0 &+ n) }.enumerated().map { $0.offset == 1 ? 200 : $0.element }, to: g722Again.gatewayCloudPort) }
            try await Task.sleep(for: .milliseconds(200))
        }
        await check("in-dialog INFO: Signal=ß (uppercases to two letters) and Duration=99999999999") {
            await site.lan.sendInfo(g722Again.lanHandle, body: SIPMessageBody(contentType: "application/dtmf-relay", text: "Signal=ß\r\nDuration=160\r\n"))
            await site.lan.sendInfo(g722Again.lanHandle, body: SIPMessageBody(contentType: "application/dtmf-relay", text: "Signal=5\r\nDuration=99999999999\r\n"))
            await site.lan.sendInfo(g722Again.lanHandle, body: SIPMessageBody(contentType: "text/plain", text: "Signal=\u{0}\r\n"))
            try await Task.sleep(for: .milliseconds(300))
        }

        // MARK: Mid-call offers from the LAN side (re-INVITE on an answered call, issue 15)
        let renegotiated = try await site.mediaCall(formats: "9 100")
        let reoffers: [(String, String)] = [
            ("a=rtcp:70000", Self.legacyOffer("a=rtcp:70000")),
            ("RTP port 65535 without rtcp-mux", Self.legacyOffer(port: 65535)),
            ("c=0.0.0.0 (the RFC 2543 hold) with a=ptime:999999999999999",
             Self.legacyOffer("a=ptime:999999999999999").replacingOccurrences(of: "c=IN IP4 127.0.0.1", with: "c=IN IP4 0.0.0.0")),
            ("inactive at the session level, no shared codec", Self.legacyOffer(formats: "96", "a=rtpmap:96 G729/8000").replacingOccurrences(of: "t=0 0", with: "t=0 0\r\na=inactive")),
            ("16,000 payload formats", Self.legacyOffer(formats: "9 " + (0..<16000).map { _ in "100" }.joined(separator: " "))),
            ("back to G.722, sendrecv", Self.legacyOffer()),
        ]
        for (name, offer) in reoffers {
            await check("LAN re-INVITE: \(name)", keepCalls: true) {
                _ = await site.lan.reinvite(renegotiated.lanHandle, body: SIPMessageBody(contentType: "application/sdp", text: offer))
                try await Task.sleep(for: .milliseconds(400))
                legacy(genuine(5), to: renegotiated)
            }
        }
        #expect(await site.lan.activeCallCount >= 1, "the re-INVITEs left the call up")
        let refused = site.gateway.text.components(separatedBy: "legacy INVITE offer refused").count - 1
        let taken = site.gateway.text.components(separatedBy: "legacy leg renegotiated by INVITE").count - 1
        #expect(refused >= 3 && taken >= 2, "re-INVITEs answered 488 (\(refused)) or taken (\(taken)), none dropped")

        // The other way round, and genuine: the cloud user moves its media to another port with
        // another key and another codec (Opus → G.722) in a re-INVITE; the station's audio
        // follows to the new port, in the new codec, under the key the gateway answered with.
        await check("bob moves port, SRTP key and codec in a re-INVITE: the station's stream follows") {
            await site.lan.hangUpAll()  // the re-INVITE cases' call holds the channel
            try await site.eventually("the channel is free") { await site.lan.activeCallCount == 0 }
            try await Task.sleep(for: .milliseconds(300))
            let before = Set(site.bobAnswers.withLockedValue { Array($0.keys) })
            let moving = try await site.mediaCall(formats: "9 100")
            guard let bobHandle = site.bobAnswers.withLockedValue({ $0.keys.first { !before.contains($0) } }) else {
                Issue.record("bob's side of the call not found")
                return
            }
            let newPort = try UDPSocket()
            let newKey = SRTPKeyMaterial.random(.aesCM128HMACSHA1_80)
            let offer = SDPOfferAnswer.makeOffer(
                policy: SDPAudioPolicy(codecs: [.g722], srtp: .required, cryptoSuites: [("AES_CM_128_HMAC_SHA1_80", 30)]),
                address: "127.0.0.1", port: newPort.port, sessionID: "9", sessionVersion: 2, makeKey: { _ in newKey.bytes })
            let sent = await site.bob.reinvite(bobHandle, body: SIPMessageBody(contentType: "application/sdp", text: offer.serialized))
            #expect(sent)
            guard case .answerReceived(_, let answerBody)? = await site.bobEvents.wait(for: bobHandle, timeout: .seconds(5), { if case .answerReceived = $0 { true } else { false } }),
                let answer = try? SDPParser.parse(answerBody.text), let negotiated = try? SDPOfferAnswer.negotiate(offer: offer, answer: answer),
                let srtp = negotiated.srtp
            else {
                Issue.record("the gateway's answer to bob's re-INVITE is missing or unusable")
                return
            }
            #expect(negotiated.codec == .g722 && negotiated.remotePort == moving.gatewayCloudPort, "\(negotiated)")
            let gatewayKey = try SRTPKeyMaterial(suite: .aesCM128HMACSHA1_80, bytes: srtp.remoteKey)
            let receiving = try SRTPSession(key: gatewayKey, direction: .inbound)
            newPort.drain()
            legacy(genuine(25), to: moving)
            var received = 0, g722 = 0
            while let packet = try await newPort.receive(timeout: .milliseconds(600)) {
                var buffer = packet + [UInt8](repeating: 0, count: 64)
                guard let length = try? buffer.withUnsafeMutableBytes({ try receiving.unprotect($0, length: packet.count) }),
                    let header = try? buffer.withUnsafeBytes({ try RTPHeader.parse(UnsafeRawBufferPointer(rebasing: $0[..<length])) })
                else { continue }
                received += 1
                if header.payloadType == 9 { g722 += 1 }
            }
            #expect(received >= 20 && g722 == received, "the station's packets reach bob's new port, G.722, under the gateway's key: \(received) (\(g722) G.722)")
        }

        // MARK: SIP bytes on the LAN side (UDP)
        await check("the RFC 4475 torture messages, each as a datagram") {
            let folder = #filePath.split(separator: "/").dropLast(2).joined(separator: "/") + "/SIPTests/Fixtures/rfc4475"
            let files = try FileManager.default.contentsOfDirectory(atPath: "/" + folder).filter { $0.hasSuffix(".dat") }
            #expect(files.count >= 40, "\(files.count) torture messages")
            let socket = try UDPSocket()
            for file in files { socket.send(Array(try Data(contentsOf: URL(fileURLWithPath: "/\(folder)/\(file)"))), to: site.legacyPort) }
            try await Task.sleep(for: .milliseconds(300))
        }
        await check("REGISTERs from the LAN: 405 with Allow, the gateway is no registrar and keeps nothing") {
            // From one socket, every answer read: none may reach the health check's probe.
            // In rounds of 20 (a burst of 200 is a test of UDP buffers, not of the registrar).
            let socket = try UDPSocket()
            var answers: [String] = []
            for round in 0..<10 {
                for user in (round * 20)..<(round * 20 + 20) {
                    let register = site.options().replacingOccurrences(of: "OPTIONS sip:101@127.0.0.1", with: "REGISTER sip:127.0.0.1")
                        .replacingOccurrences(of: "CSeq: 1 OPTIONS", with: "CSeq: 1 REGISTER\r\nContact: <sip:m\(user)@127.0.0.1:9>")
                        .replacingOccurrences(of: "To: <sip:101@127.0.0.1>", with: "To: <sip:m\(user)@127.0.0.1>")
                    socket.send(Array(register.utf8), to: site.legacyPort)
                }
                while answers.count < round * 20 + 20, let answer = try await socket.receive(timeout: .seconds(3)) {
                    answers.append(String(decoding: answer, as: UTF8.self))
                }
            }
            #expect(answers.count == 200 && answers.allSatisfy { $0.hasPrefix("SIP/2.0 405") }, "\(answers.count) answers; first: \(answers.first ?? "none")")
            let allow = answers.first?.split(separator: "\r\n").first { $0.hasPrefix("Allow: ") }
            #expect(allow?.contains("INVITE") == true && allow?.contains("REGISTER") == false, "\(allow ?? "no Allow")")
        }
        let datagrams: [(String, [UInt8])] = [
            ("60 KB of bare line feeds", [UInt8](repeating: 0x0A, count: 60000)),
            ("65,507 bytes of one header", Array(("OPTIONS sip:101@127.0.0.1 SIP/2.0\r\nX: " + String(repeating: "a", count: 65400)).utf8)),
            ("an INVITE whose Content-Length says 99999999", Array((site.options().replacingOccurrences(of: "Content-Length: 0", with: "Content-Length: 99999999")).utf8)),
            ("a Via with maddr and port 65536", Array(site.options().replacingOccurrences(of: "127.0.0.1:9;", with: "127.0.0.1:65536;maddr=224.0.0.1;").utf8)),
            // SwiftNIO closes a UDP socket whose send fails with EACCES: one such datagram left
            // the legacy side deaf (now never answered to maddr, and a closed socket is rebound).
            ("a Via with a broadcast maddr and no rport", Array(site.options().replacingOccurrences(of: ";rport", with: ";maddr=255.255.255.255").utf8)),
        ]
        for (name, bytes) in datagrams {
            await check("LAN datagram: \(name)") {
                _ = try await site.udpExchange(bytes, to: site.legacyPort, wait: .milliseconds(300))
            }
        }

        // MARK: An INVITE flood at a busy channel (2,000 a second from a LAN host) while a station calls
        await check("2,000 INVITE/s at a busy channel from 127.0.0.2 while another station places a normal call") {
            // Channel 101 busy with a call; the flood is for it; the normal call is for 103.
            guard case .answered = try await site.lanCall(Self.legacyOffer()) else { throw PeerError("channel 101's call was not answered") }
            let refusedBefore = try site.gatewayRecords().filter { $0.status == .busy }.count
            try site.scratch.write("invite-flood.xml", Self.inviteFlood)
            let flood = try PeerProcess("sipp", [
                "-sf", site.scratch.path("invite-flood.xml"), "-t", "u1", "-i", "127.0.0.2", "-p", String(try freePort(udp: true)),
                "-s", "101", "-m", "10000", "-r", "2000", "-l", "20000", "-nostdin", "-timeout", "30s", "127.0.0.1:\(site.legacyPort)",
            ], directory: site.scratch.url)
            try await Task.sleep(for: .seconds(1))
            let dialled = ContinuousClock.now
            let normal = try await site.lanCall(Self.legacyOffer(port: 40100), number: "103")
            let setUp = ContinuousClock.now - dialled
            guard case .answered = normal else { throw PeerError("the normal call during the flood: \(normal)\n\(site.gateway.text.suffix(3000))") }
            #expect(setUp < .seconds(2), "answered during the flood in \(setUp)")
            _ = try? await flood.wait(timeout: .seconds(40))
            #expect(flood.text.contains("10000") || flood.process.terminationStatus == 0, "sipp sent its 10,000: \(flood.text.suffix(1500))")
            // Refusals are counted, not written one by one: at most the first of the minute.
            try await Task.sleep(for: .milliseconds(500))
            let busyRecords = try site.gatewayRecords().filter { $0.status == .busy }.count - refusedBefore
            #expect(busyRecords <= 2, "\(busyRecords) busy records for the flood")
            let refusalLines = site.gateway.text.components(separatedBy: "call refused with 486").count - 1
            #expect(refusalLines <= 2, "\(refusalLines) log lines for the refusals")
            #expect(site.gateway.text.contains("past the transaction limits"), "the per-source cap was reached and said so:\n\(site.gateway.text.suffix(2000))")
        }

        // MARK: SDP from an authenticated cloud user, through the core to gw1-ch1
        site.bobAnswersCalls.withLockedValue { $0 = false }
        let cloudOffers: [(String, String)] = [
            ("RTP port 65535 without rtcp-mux", Self.cloudOffer(port: 65535)),
            ("a=rtcp:70000", Self.cloudOffer("a=rtcp:70000")),
            ("a=ptime:999999999999999", Self.cloudOffer("a=ptime:999999999999999")),
            ("telephone-event/9000000000000000000", Self.cloudOffer().replacingOccurrences(of: "telephone-event/48000", with: "telephone-event/9000000000000000000")),
            ("a key of 100 bytes and an MKI", Self.cloudOffer().replacingOccurrences(of: "inline:", with: "inline:\(Base64.encode([UInt8](repeating: 7, count: 100)))|2^20|1:4 inline:")),
            ("10,000 formats", Self.cloudOffer().replacingOccurrences(of: "RTP/SAVP 111 9 101", with: "RTP/SAVP 111 " + (0..<10000).map { _ in "101" }.joined(separator: " "))),
        ]
        for (name, offer) in cloudOffers {
            await check("cloud user's offer: \(name)") {
                _ = try await site.cloudCall(offer)
            }
        }
        site.bobAnswersCalls.withLockedValue { $0 = true }

        // MARK: Unauthenticated TLS clients at the core's SIPS port, and at the gateway's mesh port
        let streams: [(String, [UInt8], Int)] = [
            ("256 KiB of bare line feeds", [UInt8](repeating: 0x0A, count: 256 * 1024), 1),
            ("256 KiB of CR LF CR and a letter", Array(String(repeating: "\r\n\rX", count: 64 * 1024).utf8), 4),
            ("an 8 KB head a byte per record", Array(("OPTIONS sip:a@b SIP/2.0\r\nX: " + String(repeating: "b", count: 8000)).utf8), 8000),
            ("Content-Length: 999999999", Array("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 999999999\r\n\r\n".utf8), 1),
            ("a 70 KB head that never ends", Array(("OPTIONS sip:a@b SIP/2.0\r\nX: " + String(repeating: "c", count: 70000)).utf8), 7),
            ("64 KB of binary", (0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7919) }, 16),
        ]
        for (name, bytes, chunks) in streams {
            await check("unauthenticated TLS client: \(name)") {
                _ = try await site.tlsExchange(port: site.corePort, bytes: bytes, chunks: chunks, wait: .milliseconds(500))
            }
        }
        await check("plain TCP garbage at the core's SIPS and claiming ports and the gateway's mesh port") {
            for port in [site.corePort, site.claimPort, site.meshPort] {
                _ = try? await runCommand("bash", ["-c", "head -c 20000 /dev/urandom > /dev/tcp/127.0.0.1/\(port)"])
            }
        }

        // MARK: Claiming requests (HTTPS, before any authentication)
        let claims: [(String, String)] = [
            ("a body that is not JSON", "POST /v1/claim HTTP/1.1\r\nHost: core\r\nContent-Length: 5\r\n\r\n{{{{{"),
            ("Content-Length past Int", "POST /v1/claim HTTP/1.1\r\nHost: core\r\nContent-Length: 99999999999999999999\r\n\r\n{}"),
            ("a CSR that is not one", "POST /v1/claim HTTP/1.1\r\nHost: core\r\nContent-Length: 38\r\n\r\n{\"code\": \"X\", \"csr\": \"-----BEGIN x\"}"),
            ("a chunked body of 1 MB", "POST /v1/claim HTTP/1.1\r\nHost: core\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n" + String(repeating: "[", count: 0x100000) + "\r\n0\r\n\r\n"),
            ("a 100 KB request line", "GET /" + String(repeating: "a", count: 100_000) + " HTTP/1.1\r\n\r\n"),
            ("a body of exactly 513 nested arrays (JSONDecoder trapped on it)", "POST /v1/claim HTTP/1.1\r\nHost: core\r\nContent-Length: 513\r\n\r\n" + String(repeating: "[", count: 513)),
        ]
        for (name, request) in claims {
            await check("claiming request: \(name)") {
                let answer = try await site.tlsExchange(port: site.claimPort, bytes: Array(request.utf8), chunks: 4, wait: .milliseconds(500))
                #expect(!answer.hasPrefix("HTTP/1.1 200"), "\(name) claimed: \(answer.prefix(200))")
            }
        }

        // MARK: mDNS from a host on the mesh link
        await check("mDNS: a genuine announcement of another gateway of the site (the control: it is learned)") {
            try await site.multicastFromLAN([Self.announcement(device: "gw9", txt: ["device=gw9", "site=acme/lobby", "numbers=901"])])
            try await site.eventually("gw9 learned") { site.gateway.text.contains("mesh peers: gw9@") }
        }
        let mdns: [(String, [[UInt8]])] = [
            ("a TXT string that is just '='", [Self.announcement(device: "gw8", txt: ["=", "device=gw8", "site=acme/lobby"])]),
            ("empty and 255-byte TXT strings", [Self.announcement(device: "gw7", txt: ["", String(repeating: "=", count: 255), String(repeating: "x", count: 255), "device=gw7", "site=acme/lobby"])]),
            ("200 invented gateways with a TTL of 136 years", (0..<200).map { Self.announcement(device: "fake\($0)", txt: ["device=fake\($0)", "site=acme/lobby", "numbers=101"], ttl: .max) }),
            ("a compression pointer loop", [[0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 1, 0]]),
            ("50 packets of 1,400 random bytes", (0..<50).map { n in (0..<1400).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ n) } }),
        ]
        for (name, packets) in mdns {
            await check("mDNS: \(name)") {
                try await site.multicastFromLAN(packets)
                try await Task.sleep(for: .milliseconds(300))
            }
        }

        #expect(cases.count >= 40, "\(cases.count) hostile cases")
        print("abuse suite: \(cases.count) hostile cases")

        // MARK: kill -9 during a call (issue 18): its record, written at the start, is closed as interrupted
        site.bobAnswersCalls.withLockedValue { $0 = true }
        await site.lan.hangUpAll()
        guard case .answered = try await site.lanCall(Self.legacyOffer(port: 40200), number: "103") else {
            throw PeerError("the call to be interrupted was not answered:\n\(site.gateway.text.suffix(3000))")
        }
        try await Task.sleep(for: .seconds(2))
        let open = try site.gatewayRecords(open: true).last
        #expect(open?.status == .inProgress && open?.answeredAt != nil && open?.channel == 3, "the call's record is on disk while it runs: \(String(describing: open))")
        try await site.killAndRestartGateway()
        await site.lan.hangUpAll()
        await site.bob.hangUpAll()
        let closed = try site.gatewayRecords(open: true).first { $0.ref == open?.ref }
        #expect(closed?.status == .interrupted, "\(String(describing: closed))")
        if let closed, let answered = closed.answeredAt, let ended = closed.endedAt {
            #expect(ended >= answered && ended - answered < 30, "ended at the last time the gateway was known alive: \(ended - answered) s after the answer")
        }
        #expect(try site.gatewayRecords(open: true).allSatisfy { $0.status != .inProgress }, "no record left open")

        // MARK: Normal calls, each way, carry audio
        try await site.normalCallsEachWay()
        await site.stop()
    }

    /// One INVITE per call and nothing else: no ACK for the answers, as a flooder does.
    static let inviteFlood = """
        <?xml version="1.0" encoding="ISO-8859-1" ?>
        <scenario name="invite flood">
          <send>
            <![CDATA[
              INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
              Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
              From: <sip:flood@[local_ip]>;tag=[call_number]
              To: <sip:[service]@[remote_ip]>
              Call-ID: [call_id]
              CSeq: 1 INVITE
              Contact: <sip:flood@[local_ip]:[local_port]>
              Max-Forwards: 70
              Content-Type: application/sdp
              Content-Length: [len]

              v=0
              o=- 1 1 IN IP4 [local_ip]
              s=-
              c=IN IP4 [local_ip]
              t=0 0
              m=audio 40000 RTP/AVP 9
              a=rtpmap:9 G722/8000
            ]]>
          </send>
        </scenario>
        """

    /// An announcement as a gateway makes it (`MeshDiscovery.records`), with the caller's TXT.
    /// `address`: the 16 bytes of the AAAA record (fe80::99 when not given).
    static func announcement(device: String, txt: [String], ttl: UInt32 = 120, address: [UInt8]? = nil) -> [UInt8] {
        let instance = "\(device).\(MeshDiscovery.serviceType)"
        let address: [UInt8] = address ?? [0xFE, 0x80] + Array(repeating: 0, count: 13) + [0x99]
        return DNSMessage(flags: DNSMessage.responseFlags, answers: [
            .init(name: MeshDiscovery.serviceType, data: .ptr(instance), ttl: ttl),
            .init(name: instance, data: .srv(priority: 0, weight: 0, port: 5061, target: "symphony-\(device).local"), cacheFlush: true, ttl: ttl),
            .init(name: instance, data: .txt(txt), cacheFlush: true, ttl: ttl),
            .init(name: "symphony-\(device).local", data: .aaaa(address), cacheFlush: true, ttl: ttl),
        ]).encoded()
    }
}
