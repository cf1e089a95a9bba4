import Foundation
import PeerTestSupport

/// sipp as a legacy peer over UDP, for what baresip cannot be made to do: a caller that must
/// get one exact status (busy, unknown number, cloud down), and a station that takes digits only
/// as SIP INFO (no telephone-event in its SDP). sipp exits non-zero on any unexpected message.
enum LegacySipp {
    private static func wrap(_ name: String, _ body: String) -> String {
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"\(name)\">\n\(body)\n</scenario>\n"
    }

    /// 200 OK without a body, to the request just received (same dialog, same transaction).
    private static let okEmpty = """
          <send>
            <![CDATA[
              SIP/2.0 200 OK
              [last_Via:]
              [last_From:]
              [last_To:]
              [last_Call-ID:]
              [last_CSeq:]
              Content-Length: 0

            ]]>
          </send>
        """

    /// The end of a station's scenario: the BYE, answered 200.
    private static let byeAnswered = "<recv request=\"BYE\"/>\n" + okEmpty

    private static func sdp(telephoneEvent: Bool) -> String {
        """
        v=0
              o=sipp 1 1 IN IP4 127.0.0.1
              s=-
              c=IN IP4 127.0.0.1
              t=0 0
              m=audio [media_port] RTP/AVP 9\(telephoneEvent ? " 101" : "")
              a=rtpmap:9 G722/8000\(telephoneEvent ? "\n      a=rtpmap:101 telephone-event/8000" : "")
              a=ptime:20
        """
    }

    /// An INVITE to `[service]` that must end in `status` (then ACK).
    static func call(expecting status: Int) -> String {
        wrap("call expecting \(status)", """
          <send retrans="500">
            <![CDATA[
              INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
              Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
              From: <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
              To: <sip:[service]@[remote_ip]:[remote_port]>
              Call-ID: [call_id]
              CSeq: 1 INVITE
              Contact: <sip:sipp@[local_ip]:[local_port]>
              Max-Forwards: 70
              Content-Type: application/sdp
              Content-Length: [len]

              \(sdp(telephoneEvent: true))
            ]]>
          </send>
          <recv response="100" optional="true"/>
          <recv response="\(status)"/>
          <send>
            <![CDATA[
              ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
              Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
              From: <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
              To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
              Call-ID: [call_id]
              CSeq: 1 ACK
              Max-Forwards: 70
              Content-Length: 0

            ]]>
          </send>
        """)
    }

    /// A station without telephone-event: answers, then must get a door-opener digit as an INFO
    /// with `Signal=<digit>`, and the BYE.
    static func infoOnlyStation(digit: Character) -> String {
        wrap("SIP INFO station", """
          <recv request="INVITE"/>
          <send>
            <![CDATA[
              SIP/2.0 180 Ringing
              [last_Via:]
              [last_From:]
              [last_To:];tag=[pid]sipp[call_number]
              [last_Call-ID:]
              [last_CSeq:]
              Contact: <sip:door@[local_ip]:[local_port]>
              Content-Length: 0

            ]]>
          </send>
          <send retrans="500">
            <![CDATA[
              SIP/2.0 200 OK
              [last_Via:]
              [last_From:]
              [last_To:];tag=[pid]sipp[call_number]
              [last_Call-ID:]
              [last_CSeq:]
              Contact: <sip:door@[local_ip]:[local_port]>
              Content-Type: application/sdp
              Content-Length: [len]

              \(sdp(telephoneEvent: false))
            ]]>
          </send>
          <recv request="ACK"/>
          <recv request="INFO">
            <action>
              <ereg regexp="Signal=\(digit)" search_in="body" check_it="true" assign_to="signal"/>
            </action>
          </recv>
          \(okEmpty)
          \(byeAnswered)
          <Reference variables="signal"/>
        """)
    }

    /// How a station takes the holds the gateway relays (issue 15).
    enum HoldStation: String, CaseIterable, Sendable {
        /// Lists INVITE in its Allow and accepts: must get `sendonly`, then `sendrecv`.
        case accepts
        /// Lists INVITE and refuses the hold with 488: must get no second re-INVITE.
        case refuses
        /// Sends no Allow: must get no re-INVITE at all.
        case saysNothing
    }

    /// A station that answers a cloud call and is held and resumed as `kind` says, then gets the BYE.
    static func holdStation(_ kind: HoldStation) -> String {
        func ok(_ direction: String?, allow: Bool) -> String {
            """
              <send retrans="500">
                <![CDATA[
                  SIP/2.0 200 OK
                  [last_Via:]
                  [last_From:]
                  [last_To:]\(direction == nil ? ";tag=[pid]sipp[call_number]" : "")
                  [last_Call-ID:]
                  [last_CSeq:]
                  Contact: <sip:door@[local_ip]:[local_port]>\(allow ? "\n              Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO" : "")
                  Content-Type: application/sdp
                  Content-Length: [len]

                  \(sdp(telephoneEvent: true))\(direction.map { "\n      a=\($0)" } ?? "")
                ]]>
              </send>
              <recv request="ACK"/>
            """
        }
        func reinvite(expecting direction: String, variable: String) -> String {
            """
              <recv request="INVITE">
                <action>
                  <ereg regexp="a=\(direction)" search_in="body" check_it="true" assign_to="\(variable)"/>
                </action>
              </recv>
            """
        }
        let held: String
        switch kind {
        case .accepts:
            held = reinvite(expecting: "sendonly", variable: "hold") + ok("recvonly", allow: true)
                + reinvite(expecting: "sendrecv", variable: "resume") + ok("sendrecv", allow: true)
                + "\n  <Reference variables=\"hold,resume\"/>"
        case .refuses:
            held = reinvite(expecting: "sendonly", variable: "hold") + """
              <send>
                <![CDATA[
                  SIP/2.0 488 Not Acceptable Here
                  [last_Via:]
                  [last_From:]
                  [last_To:]
                  [last_Call-ID:]
                  [last_CSeq:]
                  Content-Length: 0

                ]]>
              </send>
              <recv request="ACK"/>
              <Reference variables="hold"/>
            """
        case .saysNothing:
            held = ""
        }
        return wrap("station that is held: \(kind.rawValue)", """
          <recv request="INVITE"/>
          \(ok(nil, allow: kind != .saysNothing))
          \(held)
          \(byeAnswered)
        """)
    }

    /// Runs `scenario` as a UAC against the gateway's legacy port, calling `number`, once.
    static func runCaller(_ scenario: String, number: String, gatewayPort: Int, in scratch: ScratchDirectory) async throws -> (status: Int32, output: String) {
        let file = scratch.path("sipp-\(number)-\(UUID().uuidString.prefix(6)).xml")
        try scenario.write(toFile: file, atomically: true, encoding: .utf8)
        let sipp = try PeerProcess("sipp", [
            "127.0.0.1:\(gatewayPort)", "-sf", file, "-s", number, "-i", "127.0.0.1", "-p", String(try freePort(udp: true)),
            "-m", "1", "-t", "u1", "-nostdin", "-trace_err", "-timeout", "15s", "-timeout_error",
        ], directory: scratch.url)
        let status = try await sipp.wait(timeout: .seconds(25))
        return (status, sipp.text)
    }

    /// Starts `scenario` as a UAS on `port` (one call), for the gateway to call.
    static func startStation(_ scenario: String, port: Int, in scratch: ScratchDirectory) throws -> PeerProcess {
        let file = scratch.path("sipp-uas-\(port).xml")
        try scenario.write(toFile: file, atomically: true, encoding: .utf8)
        return try PeerProcess("sipp", [
            "-sf", file, "-i", "127.0.0.1", "-p", String(port), "-m", "1", "-t", "u1", "-nostdin", "-trace_err",
            "-timeout", "40s", "-timeout_error",
        ], directory: scratch.url)
    }
}
