/// Requests derived from other requests: ACK for a non-2xx final response (RFC 3261 §17.1.1.3)
/// and CANCEL (§9.1). The ACK for a 2xx belongs to the dialog (`SIPDialog.makeACK`).
public enum SIPACKFactory {
    /// Same Request-URI, Call-ID, From, CSeq number and top Via (branch included) as the INVITE;
    /// To from the response (its tag); Route headers of the INVITE.
    public static func ackForNon2xx(request: SIPMessage, response: SIPMessage) -> SIPMessage {
        derived(from: request, method: .ack, to: response.headers[.to])
    }

    /// CANCEL for a pending request (§9.1): like the ACK above, but To as in the request.
    public static func cancel(for request: SIPMessage) -> SIPMessage {
        derived(from: request, method: .cancel, to: nil)
    }

    private static func derived(from request: SIPMessage, method: SIPMethod, to: String?) -> SIPMessage {
        var message = SIPMessage.request(method, request.requestURI ?? .other(scheme: "sip", rest: "invalid"))
        if let topVia = request.headers.indices(of: .via).first {
            // Only the top via-parm (a field may hold a list).
            let via = request.topVia?.description ?? request.headers.value(at: topVia)
            message.headers.add(.via, via)
        }
        message.headers.add(.maxForwards, "70")
        if let from = request.headers[.from] { message.headers.add(.from, from) }
        if let toValue = to ?? request.headers[.to] { message.headers.add(.to, toValue) }
        if let callID = request.headers[.callID] { message.headers.add(.callID, callID) }
        if let cseq = request.cseq { message.headers.add(.cseq, "\(cseq.sequence) \(method)") }
        for route in request.headers.values(.route) { message.headers.add(.route, route) }
        return message
    }
}

/// Random identifiers: branches (with the RFC 3261 §8.1.1.7 cookie), tags (§19.3) and Call-IDs
/// (§8.1.1.4), drawn from the system's CSPRNG.
public enum SIPIdentifiers {
    public static func branch() -> String { SIPVia.magicCookie + random(16) }
    public static func tag() -> String { random(12) }
    public static func callID(host: String) -> String { random(20) + "@" + host }

    /// `count` characters of [0-9a-z]. Each 64-bit draw from the CSPRNG gives 12 characters
    /// (36^12 < 2^64; the bias is below 2^-62), so a tag costs one getrandom call, not twelve.
    public static func random(_ count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return String(unsafeUninitializedCapacity: count) { buffer in
            var value: UInt64 = 0
            for index in 0..<count {
                if index % 12 == 0 { value = generator.next() }
                let digit = UInt8(value % 36)
                value /= 36
                buffer[index] = digit < 10 ? 0x30 + digit : 0x61 + digit - 10
            }
            return count
        }
    }
}
