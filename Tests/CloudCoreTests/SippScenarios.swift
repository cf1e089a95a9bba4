/// sipp scenarios for the cloud-core tests, written out per test (the parts a test varies —
/// expected status, delays, headers to check — are interpolated). sipp fails a scenario, and
/// exits non-zero, on any unexpected message or a failed `check_it`.
enum SippScenario {
    static let domain = "symphony.local"

    private static func wrap(_ name: String, _ body: String) -> String {
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"\(name)\">\n\(body)\n</scenario>\n"
    }

    private static func register(cseq: Int, extra: String) -> String {
        """
          <send retrans="500">
            <![CDATA[
              REGISTER sip:\(domain) SIP/2.0
              Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
              From: <sip:[aor]@\(domain)>;tag=[call_number]
              To: <sip:[aor]@\(domain)>
              Call-ID: [call_id]
              CSeq: \(cseq) REGISTER
              Contact: <[contact_uri]>
              Expires: 300
              Max-Forwards: 70\(extra.isEmpty ? "" : "\n      " + extra)
              Content-Length: 0

            ]]>
          </send>
        """
    }

    /// REGISTER `-key aor` with `-key contact_uri`, answering the digest challenge (-au/-ap).
    static let registerDigest = wrap("register digest", """
        \(register(cseq: 1, extra: ""))
          <recv response="401" auth="true"/>
        \(register(cseq: 2, extra: "[authentication]"))
          <recv response="200"/>
        """)

    /// REGISTER with `Authorization: Bearer [token]` (RFC 8898); expects `status`.
    static func registerBearer(expecting status: Int) -> String {
        wrap("register bearer", """
            \(register(cseq: 1, extra: "Authorization: Bearer [token]"))
              <recv response="\(status)"/>
            """)
    }

    /// REGISTER without credentials, again and again: the flood. Answers may be dropped.
    static let registerFlood = wrap("flood", """
        \(register(cseq: 1, extra: ""))
          <recv response="401" timeout="200" ontimeout="done"/>
          <label id="done"/>
        """)

    private static let sdp = """
        v=0
              o=sipp 1 1 IN IP[local_ip_type] [local_ip]
              s=-
              c=IN IP[media_ip_type] [media_ip]
              t=0 0
              m=audio [media_port] RTP/AVP 9
              a=rtpmap:9 G722/8000
        """

    private static func invite(cseq: Int, auth: Bool, extraHeaders: String = "") -> String {
        """
          <send retrans="500">
            <![CDATA[
              INVITE sip:[callee]@\(domain) SIP/2.0
              Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
              From: <sip:[caller]@\(domain)>;tag=[call_number]
              To: <sip:[callee]@\(domain)>
              Call-ID: [call_id]
              CSeq: \(cseq) INVITE
              Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>
              P-Asserted-Identity: "Forged" <sip:alice@\(domain)>
              P-Preferred-Identity: <sip:carol@\(domain)>\(extraHeaders.isEmpty ? "" : "\n      " + extraHeaders)
              Max-Forwards: 70\(auth ? "\n      [authentication]" : "")
              Content-Type: application/sdp
              Content-Length: [len]

              \(sdp)
            ]]>
          </send>
        """
    }

    private static func ackNon2xx(cseq: Int) -> String {
        """
          <send>
            <![CDATA[
              ACK sip:[callee]@\(domain) SIP/2.0
              [last_Via:]
              From: <sip:[caller]@\(domain)>;tag=[call_number]
              [last_To:]
              Call-ID: [call_id]
              CSeq: \(cseq) ACK
              Max-Forwards: 70
              Content-Length: 0

            ]]>
          </send>
        """
    }

    private static func inDialog(_ method: String, cseq: Int) -> String {
        """
          <send\(method == "ACK" ? "" : " retrans=\"500\"")>
            <![CDATA[
              \(method) [next_url] SIP/2.0
              Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
              From: <sip:[caller]@\(domain)>;tag=[call_number]
              [last_To:]
              Call-ID: [call_id]
              CSeq: \(cseq) \(method)
              [routes]
              Max-Forwards: 70
              Content-Length: 0

            ]]>
          </send>
        """
    }

    enum CallerEnd: Equatable {
        /// 200, ACK, hold `holdMilliseconds`, BYE.
        case hangUp(holdMilliseconds: Int)
        /// 200, ACK, then the core's BYE (duration limit), whose Reason must match.
        case byeFromCore(reasonPattern: String)
        /// A final failure status, ACKed.
        case failure(Int)
    }

    /// `-key caller` calls `-key callee` through the core, answering the 407 (-au/-ap).
    static func caller(_ end: CallerEnd, extraHeaders: String = "") -> String {
        var body = """
            \(invite(cseq: 1, auth: false, extraHeaders: extraHeaders))
              <recv response="100" optional="true"/>
              <recv response="407" auth="true"/>
            \(ackNon2xx(cseq: 1))
            \(invite(cseq: 2, auth: true, extraHeaders: extraHeaders))
              <recv response="100" optional="true"/>
              <recv response="180" optional="true"/>
              <recv response="183" optional="true"/>
            """
        switch end {
        case .hangUp(let hold):
            body += """
                  <recv response="200" rrs="true"/>
                \(inDialog("ACK", cseq: 2))
                  <pause milliseconds="\(hold)"/>
                \(inDialog("BYE", cseq: 3))
                  <recv response="200"/>
                """
        case .byeFromCore(let pattern):
            body += """
                  <recv response="200" rrs="true"/>
                \(inDialog("ACK", cseq: 2))
                  <recv request="BYE">
                    <action><ereg regexp="\(pattern)" search_in="hdr" header="Reason:" check_it="true" assign_to="reason"/></action>
                  </recv>
                \(okToLast)
                  <Reference variables="reason"/>
                """
        case .failure(let status):
            body += """
                  <recv response="\(status)">
                    <action><ereg regexp=".*" search_in="hdr" header="Min-SE:" check_it="\(status == 422)" assign_to="minse"/></action>
                  </recv>
                \(ackNon2xx(cseq: 2))
                  <Reference variables="minse"/>
                """
        }
        return wrap("caller", body)
    }

    private static let okToLast = """
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

    private static func provisionalOrFinal(_ status: String, withSDP: Bool = false) -> String {
        """
          <send\(status.hasPrefix("1") ? "" : " retrans=\"500\"")>
            <![CDATA[
              SIP/2.0 \(status)
              [last_Via:]
              [last_From:]
              [last_To:];tag=[pid]SIPpTag01[call_number]
              [last_Call-ID:]
              CSeq:[$cseq]
              [last_Record-Route:]
              Contact: <sip:[aor]@[local_ip]:[local_port];transport=[transport]>\(withSDP ? "\n      Content-Type: application/sdp" : "")
              Content-Length: [len]
            \(withSDP ? "\n      " + sdp : "")
            ]]>
          </send>
        """
    }

    enum CalleeBehaviour: Equatable {
        /// Ring, answer after `afterMilliseconds`, then take the caller's BYE.
        case answer(afterMilliseconds: Int)
        /// Ring, answer, then take the core's BYE (duration limit) with this Reason.
        case answerThenByeFromCore(reasonPattern: String)
        /// Ring until cancelled; the CANCEL's Reason must match (empty: any).
        case ringUntilCancelled(reasonPattern: String)
        case reject(String)
        /// As `answer`, after checking the INVITE's P-Asserted-Identity (RFC 3325) against a
        /// pattern, and that no P-Preferred-Identity is left.
        case answerCheckingIdentity(pattern: String)
    }

    static func callee(_ behaviour: CalleeBehaviour) -> String {
        var body = """
              <recv request="INVITE" crlf="true">
                <action><ereg regexp=".*" search_in="hdr" header="CSeq:" assign_to="cseq"/></action>
              </recv>
            """
        switch behaviour {
        case .answer(let delay):
            body += """
                \(provisionalOrFinal("180 Ringing"))
                  <pause milliseconds="\(delay)"/>
                \(provisionalOrFinal("200 OK", withSDP: true))
                  <recv request="ACK" crlf="true"/>
                  <recv request="BYE"/>
                \(okToLast)
                """
        case .answerThenByeFromCore(let pattern):
            body += """
                \(provisionalOrFinal("180 Ringing"))
                \(provisionalOrFinal("200 OK", withSDP: true))
                  <recv request="ACK" crlf="true"/>
                  <recv request="BYE">
                    <action><ereg regexp="\(pattern)" search_in="hdr" header="Reason:" check_it="true" assign_to="reason"/></action>
                  </recv>
                \(okToLast)
                  <Reference variables="reason"/>
                """
        case .ringUntilCancelled(let pattern):
            let check = pattern.isEmpty ? "" : """
                    <action><ereg regexp="\(pattern)" search_in="hdr" header="Reason:" check_it="true" assign_to="reason"/></action>
                """
            body += """
                \(provisionalOrFinal("180 Ringing"))
                  <recv request="CANCEL">
                \(check)
                  </recv>
                \(okToLast)
                \(provisionalOrFinal("487 Request Terminated"))
                  <recv request="ACK"/>
                \(pattern.isEmpty ? "" : "<Reference variables=\"reason\"/>")
                """
        case .reject(let status):
            body += """
                \(provisionalOrFinal(status))
                  <recv request="ACK"/>
                """
        case .answerCheckingIdentity(let pattern):
            body = """
                  <recv request="INVITE" crlf="true">
                    <action>
                      <ereg regexp=".*" search_in="hdr" header="CSeq:" assign_to="cseq"/>
                      <ereg regexp="\(pattern)" search_in="hdr" header="P-Asserted-Identity:" check_it="true" assign_to="pai"/>
                      <ereg regexp="." search_in="hdr" header="P-Preferred-Identity:" check_it_inverse="true" assign_to="ppi"/>
                      <ereg regexp="Forged" search_in="hdr" header="P-Asserted-Identity:" check_it_inverse="true" assign_to="forged"/>
                    </action>
                  </recv>
                \(provisionalOrFinal("180 Ringing"))
                \(provisionalOrFinal("200 OK", withSDP: true))
                  <recv request="ACK" crlf="true"/>
                  <recv request="BYE"/>
                \(okToLast)
                  <Reference variables="pai,ppi,forged"/>
                """
        }
        return wrap("callee", body)
    }
}
