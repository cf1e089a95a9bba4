import Foundation
import LegacyLinks
import NIOCore
import NIOPosix
import PeerTestSupport
import SIP
import SIPTransport
import Testing

@Suite("Legacy trunk supervision")
struct TrunkSupervisionTests {
    @Test func anyAnswerMeansUpAndTwoMissesMeanDown() {
        var supervision = TrunkSupervision()
        #expect(supervision.answered(status: 405, roundTrip: .milliseconds(3)) == .up, "405 still shows a live server")
        #expect(supervision.lastRoundTrip == .milliseconds(3))
        #expect(supervision.failed() == nil, "one lost probe is not an outage")
        #expect(supervision.answered(status: 200, roundTrip: .milliseconds(2)) == nil)
        #expect(supervision.failed() == nil)
        #expect(supervision.answered(status: 503, roundTrip: .milliseconds(1)) == .down, "503 counts as a failure")
        #expect(supervision.answered(status: 200, roundTrip: .milliseconds(1)) == .up)
    }

    @Test func aServerThatNeverAnswersIsDownFromTheStart() {
        var supervision = TrunkSupervision()
        #expect(supervision.failed() == nil && supervision.state == .unknown)
        #expect(supervision.failed() == .down)
    }
}

/// Against sipp as the legacy server (a UAS answering OPTIONS), over UDP and TCP: up while it
/// answers, down once it is gone, up again when it is back.
@Suite("Legacy trunk against sipp", .serialized)
struct LegacyTrunkTests {
    static let optionsUAS = """
        <?xml version="1.0" encoding="ISO-8859-1" ?>
        <scenario name="options uas">
          <recv request="OPTIONS"/>
          <send>
            <![CDATA[
              SIP/2.0 200 OK
              [last_Via:]
              [last_From:]
              [last_To:];tag=[pid]SIPpTag[call_number]
              [last_Call-ID:]
              [last_CSeq:]
              Allow: INVITE, ACK, CANCEL, BYE, OPTIONS
              Content-Length: 0

            ]]>
          </send>
        </scenario>
        """

    static func sipp(port: Int, transport: SIPTransportProtocol, scratch: ScratchDirectory) async throws -> PeerProcess {
        try scratch.write("options_uas.xml", optionsUAS)
        let sipp = try PeerProcess("sipp", [
            "-sf", scratch.path("options_uas.xml"), "-t", transport == .udp ? "u1" : "t1", "-i", "127.0.0.1", "-p", String(port), "-nostdin",
        ], directory: scratch.url)
        try await waitUntilListening(port: port, udp: transport == .udp)
        return sipp
    }

    @Test(arguments: [SIPTransportProtocol.udp, .tcp])
    func upWhileTheServerAnswersDownWhenItIsGoneUpWhenBack(_ transport: SIPTransportProtocol) async throws {
        let scratch = try ScratchDirectory()
        let port = try freePort(udp: transport == .udp)
        var sipp = try await Self.sipp(port: port, transport: transport, scratch: scratch)
        var configuration = SIPEndpoint.Configuration()
        // Short transaction timers so that a missing server shows within the test (Timer F = 64·T1).
        configuration.timers.t1 = .milliseconds(20)
        let endpoint = try SIPEndpoint(eventLoop: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration)
        try await endpoint.listen(transport == .udp ? .udp : .tcp, on: SocketAddress(ipAddress: "127.0.0.1", port: 0))
        let trunk = LegacyTrunk(endpoint: endpoint, server: SIPDestination(transport: transport, host: "127.0.0.1", port: port), interval: .milliseconds(200))
        var changes = trunk.stateChanges.makeAsyncIterator()
        await trunk.start()
        #expect(await changes.next() == .up)
        #expect(await trunk.supervision.lastRoundTrip.map { $0 < .seconds(1) } == true)

        sipp.stop()
        #expect(await changes.next() == .down)

        sipp = try await Self.sipp(port: port, transport: transport, scratch: scratch)
        #expect(await changes.next() == .up)
        await trunk.stop()
        sipp.stop()
        await endpoint.shutdown()
    }
}
