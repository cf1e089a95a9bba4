/// Builds responses to a request as RFC 3261 §8.2.6.2 says: Via (all, in order), From, To,
/// Call-ID and CSeq copied; a To tag added where the response creates or belongs to a dialog.
public enum SIPResponseFactory {
    public static func response(
        to request: SIPMessage, status: Int, reason: String? = nil, toTag: String? = nil
    ) -> SIPMessage {
        var response = SIPMessage.response(status, reason: reason)
        for index in 0..<request.headers.count {
            let name = request.headers.name(at: index)
            switch name {
            case .via, .from, .callID, .cseq:
                // Record-Route goes only into dialog-creating responses (§12.1.1): the caller
                // adds it with `copyRecordRoute`.
                response.headers.add(name, request.headers.value(at: index))
            case .to:
                let value = request.headers.value(at: index)
                // §8.2.6.2: add a tag when none is present (never for 100 Trying).
                if let toTag, status != 100, var to = request.to, to.tag == nil {
                    to.tag = toTag
                    response.headers.add(.to, to.description)
                } else {
                    response.headers.add(.to, value)
                }
            default:
                continue
            }
        }
        return response
    }

    /// Copies Record-Route from the request into a dialog-establishing response (RFC 3261 §12.1.1).
    public static func copyRecordRoute(from request: SIPMessage, into response: inout SIPMessage) {
        for value in request.headers.values(.recordRoute) { response.headers.add(.recordRoute, value) }
    }

    /// The response a validator rejection asks for.
    public static func response(to request: SIPMessage, rejection: SIPRequestValidator.Rejection, toTag: String?) -> SIPMessage {
        var response = response(to: request, status: rejection.statusCode, toTag: toTag)
        for header in rejection.headers {
            response.headers.add(SIPHeaderName(header.name), header.value ?? "")
        }
        return response
    }
}
