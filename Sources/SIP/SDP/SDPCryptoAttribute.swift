/// An SDES `a=crypto` attribute (RFC 4568 §9.1):
/// `<tag> <crypto-suite> inline:<base64 key‖salt>[|<lifetime>][|<MKI>:<length>] [<session-params>]`.
/// The engine uses one key per line, no MKI and no session parameters; a line with any of those
/// is kept but reported as unusable, so the answerer moves on to the next one (§6.3.1).
public struct SDPCryptoAttribute: Sendable, Equatable {
    public var tag: Int
    public var suite: String
    /// Master key followed by master salt.
    public var keyMaterial: [UInt8]
    public var lifetime: String?
    public var mki: String?
    public var sessionParameters: [String]

    public init(tag: Int, suite: String, keyMaterial: [UInt8]) {
        self.tag = tag
        self.suite = suite
        self.keyMaterial = keyMaterial
        self.lifetime = nil
        self.mki = nil
        self.sessionParameters = []
    }

    public init?(attributeValue: String) {
        let fields = attributeValue.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 3, let tag = Int(fields[0]), (0...999_999_999).contains(tag) else { return nil }
        let keyParams = fields[2].split(separator: ";")
        guard let first = keyParams.first, first.hasPrefix("inline:") else { return nil }
        let parts = first.dropFirst("inline:".count).split(separator: "|", omittingEmptySubsequences: false)
        guard let key = Base64.decode(parts[0]), !key.isEmpty else { return nil }
        self.init(tag: tag, suite: String(fields[1]), keyMaterial: key)
        for part in parts.dropFirst() {
            if part.contains(":") { mki = String(part) } else { lifetime = String(part) }
        }
        if keyParams.count > 1 { sessionParameters.append("(\(keyParams.count) keys)") }
        sessionParameters += fields[3...].map(String.init)
    }

    public var attributeValue: String {
        var key = "inline:" + Base64.encode(keyMaterial)
        if let lifetime { key += "|" + lifetime }
        if let mki { key += "|" + mki }
        return ([String(tag), suite, key] + sessionParameters).joined(separator: " ")
    }

    /// True when the line uses only what the engine implements: one key, no MKI, no session
    /// parameters, and a key of `keyLength` bytes.
    public func isUsable(keyLength: Int) -> Bool {
        mki == nil && sessionParameters.isEmpty && keyMaterial.count == keyLength
    }
}

/// Printed (logs, test output, `dump`) without the key: `a=crypto` keys are the call's secret.
extension SDPCryptoAttribute: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String { "crypto \(tag) \(suite) (key withheld)" }
    public var debugDescription: String { description }
}

extension SDPNegotiatedAudio.SRTP: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String { "SRTP \(suite) (keys withheld)" }
    public var debugDescription: String { description }
}
