import Foundation
import Gateway
import MeshTestSupport
import PeerTestSupport
import Testing

/// Real networks (issue 19, docs/TESTING.md "Behind NAT"): network namespaces with iptables
/// MASQUERADE (`MeshNetwork.createBehindNAT`). The gateway and its door station sit behind the
/// site's NAT, a cloud client behind a carrier NAT, the core on the "Internet" side. Each end
/// writes its private address in its SDP, so the media can only meet at the core's anchor; the
/// gateway's TLS flow lives through the site NAT by its RFC 5626 keepalives, and finds its way
/// back when the NAT's address changes.
@Suite("Behind NAT", .serialized)
struct NATTraversalTests {
    struct Site {
        let network: MeshNetwork
        let gateway: PeerProcess
        let door: Baresip
        let alice: Baresip
    }

    /// Core (anchor `anchor`), gw1 claimed through the site NAT with channel 1 (`101`: cloud
    /// target alice, legacy target the door station), alice registered through the carrier NAT.
    static func startSite(_ network: MeshNetwork, coreMedia: String, beforeGateway: () async throws -> Void = {}) async throws -> Site {
        let (coreConfig, caFile) = try await network.startCore(extra: coreMedia)
        let doorTone = network.scratch.path("door.wav")
        let aliceTone = network.scratch.path("alice.wav")
        try await Baresip.tone(doorTone, frequency: 800, seconds: 300, rate: 16000, channels: 1)
        try await Baresip.tone(aliceTone, frequency: 1200, seconds: 300, rate: 48000, channels: 2)
        let door = try network.station("door", beside: "gw1", tone: doorTone)
        try door.start(seconds: 300)
        try await door.waitUntilReady()
        try await beforeGateway()
        let gateway = try network.startGateway("gw1", channels: [
            .init(index: 1, number: "101", cloudTarget: "alice", legacyTargets: ["sip:door@127.0.0.1:\(door.sipPort)"])
        ], claimCode: try await network.claimCode("gw1", coreConfig: coreConfig), caFile: caFile)
        let alice = try Baresip(
            "alice", in: network.scratch, modules: ["opus.so", "g722.so", "srtp.so"],
            account: "<sip:alice@symphony.local;transport=tls>;auth_pass=alice-pw;outbound=\"sip:\(MeshNetwork.internetCore):5063;transport=tls\";regint=300;mediaenc=srtp-mand;audio_codecs=opus/48000/2;answermode=auto",
            tone: aliceTone, caFile: caFile, rtpPorts: 32000...32999, namespace: network.mobileHost)
        try alice.start(seconds: 300)
        try await network.eventually("gw1 registered through the site NAT and alice through hers", timeout: .seconds(30)) {
            gateway.process.text.contains("cloud uplink registered") && alice.output.contains("200 OK")
        }
        return Site(network: network, gateway: gateway.process, door: door, alice: alice)
    }

    /// The TLS flows the core sees on 5061 and 5063 (`ss`): the peers' addresses.
    static func coreFlows(_ network: MeshNetwork) async throws -> String {
        try await network.run(in: network.coreHost, "ss", ["-Htn", "state", "established", "( sport = :5061 or sport = :5063 )"])
    }

    /// alice calls channel 1 (the door answers), then the door calls alice through the
    /// gateway; each call 5 s, the tones checked both ways. `calls`: answered calls so far.
    static func callBothWays(_ site: Site, through anchor: String) async throws {
        let (network, door, alice) = (site.network, site.door, site.alice)
        let answeredBefore = alice.output.components(separatedBy: "Call established").count
        try await alice.command("dial", "sip:gw1-ch1@symphony.local")
        try await network.eventually("alice's call to the door established") { alice.output.components(separatedBy: "Call established").count > answeredBefore }
        try await Task.sleep(for: .seconds(5))
        try await alice.command("hangup")
        try await Task.sleep(for: .seconds(1))
        CallPathTests.expectToneIn(try await door.decodedAudio(latest: true), 1200, heardBy: "the door behind the site NAT", from: "alice behind hers, through \(anchor)")
        CallPathTests.expectToneIn(try await alice.decodedAudio(latest: true), 800, heardBy: "alice behind the carrier NAT", from: "the door, through \(anchor)")

        let doorBefore = door.output.components(separatedBy: "Call established").count
        try await door.command("dial", "sip:101@127.0.0.1:5060")
        try await network.eventually("the door's call to alice established", timeout: .seconds(20)) { door.output.components(separatedBy: "Call established").count > doorBefore }
        try await Task.sleep(for: .seconds(5))
        try await door.command("hangup")
        try await Task.sleep(for: .seconds(1))
        CallPathTests.expectToneIn(try await alice.decodedAudio(latest: true), 800, heardBy: "alice", from: "the door calling her, through \(anchor)")
        CallPathTests.expectToneIn(try await door.decodedAudio(latest: true), 1200, heardBy: "the door", from: "alice answering it, through \(anchor)")
    }

    @Test(arguments: ["embedded", "rtpengine"])
    func callsBothWaysMeetAtTheCoresAnchor(_ anchor: String) async throws {
        let network = try await MeshNetwork.createBehindNAT()
        var engine: RTPEngine?
        do {
            var media = "[media]\nanchor = \"embedded\"\n"
            if anchor == "rtpengine" {
                let started = try await RTPEngine(ports: 37000...37999, interface: MeshNetwork.internetCore, namespace: network.coreHost)
                engine = started
                media = "[media]\nanchor = \"rtpengine\"\nrtpengine = \"127.0.0.1:\(started.ngPort)\"\n"
            }
            let site = try await Self.startSite(network, coreMedia: media)
            // The NATs are real: the core sees the NATs' outer addresses, never a private one.
            let flows = try await Self.coreFlows(network)
            #expect(flows.contains("\(MeshNetwork.siteNATAddresses[0]):") && flows.contains("\(MeshNetwork.mobileNATAddress):"), "\(flows)")
            #expect(!flows.contains("192.168.1.10") && !flows.contains("10.9.0.10"), "\(flows)")
            try await Self.callBothWays(site, through: anchor == "embedded" ? "the core's relay" : "rtpengine")
        } catch {
            Issue.record("\(error)\n\(network.logs())\n---- rtpengine:\n\(engine?.log.suffix(3000) ?? "")")
        }
        engine?.stop()
        await network.destroy()
    }

    /// The site NAT forgets an idle TCP flow after 12 s here (a cheap router's minutes, shortened);
    /// the gateway's keepalives (every 5 s) keep its flow, so a call reaches it after 20 s of
    /// quiet, while a control flow without keepalives is gone. Then the NAT's outer address
    /// changes during a call: the flow breaks, and the gateway is reachable again within the
    /// keepalive interval (and the time to reconnect); the call's audio goes on from the new
    /// address, its BYE reaches the gateway over the new flow, and new calls carry audio.
    @Test func keepalivesHoldTheFlowAndANewNATAddressHeals() async throws {
        let network = try await MeshNetwork.createBehindNAT()
        do {
            try await network.shortenSiteNATTimeouts(tcp: 12, udp: 10)
            let site = try await Self.startSite(network, coreMedia: "[media]\nanchor = \"embedded\"\n")

            // A control flow through the same NAT with nothing on it for 20 s, then a word from
            // the core's side: the NAT has forgotten it, so the word never arrives.
            let server = network.scratch.path("idle-server.py"), client = network.scratch.path("idle-client.py")
            try """
                import socket, time
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("\(MeshNetwork.internetCore)", 7070)); s.listen(1)
                c, _ = s.accept(); time.sleep(20)
                try:
                    c.send(b"late\\n")
                except OSError:
                    pass
                time.sleep(10)
                """.write(toFile: server, atomically: true, encoding: .utf8)
            try """
                import socket, time
                for _ in range(50):
                    try:
                        c = socket.create_connection(("\(MeshNetwork.internetCore)", 7070)); break
                    except OSError:
                        time.sleep(0.1)
                print("connected", flush=True)
                c.settimeout(28)
                try:
                    print("received" if c.recv(16) else "closed", flush=True)
                except socket.timeout:
                    print("nothing arrived", flush=True)
                except OSError as e:
                    print("error", e, flush=True)
                """.write(toFile: client, atomically: true, encoding: .utf8)
            try network.start("idle-server", in: network.coreHost, "python3", [server])
            let control = try network.start("idle-client", in: network.host("gw1"), "python3", [client])
            try await network.eventually("the control flow connected") { control.text.contains("connected") }
            try await Task.sleep(for: .seconds(22))
            try await Self.callBothWays(site, through: "the core's relay after 22 s of quiet")
            try await network.eventually("the control flow's end", timeout: .seconds(15)) { control.text.contains("nothing arrived") || control.text.contains("received") || control.text.contains("error") }
            #expect(control.text.contains("nothing arrived"), "the NAT forgot the idle control flow: \(control.text)")

            // The NAT's outer address changes in the middle of a call.
            let (door, alice) = (site.door, site.alice)
            let established = alice.output.components(separatedBy: "Call established").count
            try await alice.command("dial", "sip:gw1-ch1@symphony.local")
            try await network.eventually("alice's call before the change") { alice.output.components(separatedBy: "Call established").count > established }
            try await Task.sleep(for: .seconds(3))
            let registeredBefore = site.gateway.text.components(separatedBy: "cloud uplink registered").count
            let changed = ContinuousClock.now
            try await network.changeSiteNATAddress()
            try await network.eventually("gw1 registered again from the NAT's new address", timeout: .seconds(30)) {
                guard site.gateway.text.components(separatedBy: "cloud uplink registered").count > registeredBefore else { return false }
                return try await Self.coreFlows(network).contains("\(MeshNetwork.siteNATAddresses[1]):")
            }
            let healed = ContinuousClock.now - changed
            print("NAT address change healed in \(healed)")
            // The break shows at the next keepalive (≤ 5 s); reconnecting and registering is
            // quick on a LAN, with the reconnect's own first delay.
            #expect(healed < .seconds(12), "healed in \(healed)")

            // The call goes on: its media from the new address (the relay follows authenticated
            // SRTP), and alice's hang-up reaches the gateway over its new flow.
            try await Task.sleep(for: .seconds(4))
            let byes = site.gateway.text.components(separatedBy: "ended (remote BYE) component=cloud-ua").count
            try await alice.command("hangup")
            try await network.eventually("the gateway got alice's BYE over its new flow", timeout: .seconds(5)) {
                site.gateway.text.components(separatedBy: "ended (remote BYE) component=cloud-ua").count > byes
            }
            try await Task.sleep(for: .seconds(1))
            for (pcm, frequency, who) in [(try await door.decodedAudio(latest: true), 1200.0, "the door"), (try await alice.decodedAudio(latest: true), 800.0, "alice")] {
                // The call's last seconds (after the change), without its very end.
                let tail = pcm.suffix(16000 * 3).prefix(16000 * 2)
                #expect(abs(ToneMeasurement.frequency(tail, sampleRate: 16000) - frequency) < 15 && ToneMeasurement.level(tail) > -20,
                        "\(who) still hears the other end after the NAT's change: \(ToneMeasurement.frequency(tail, sampleRate: 16000)) Hz, \(ToneMeasurement.level(tail)) dBFS")
            }
            try await Self.callBothWays(site, through: "the core's relay from the NAT's new address")
        } catch {
            Issue.record("\(error)\n\(network.logs())")
        }
        await network.destroy()
    }
}
