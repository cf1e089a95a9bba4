import Crypto
import Foundation

/// The value of the `symcore` parameter on the core's Record-Route URIs: an HMAC only the core
/// can make, over the dialog's Call-ID, the caller's tag and the Record-Route URI itself (the
/// listener and transport the route faces). A Route that carries it proves that the core put it
/// into this dialog's route set (RFC 3261 §16.6 step 4, §16.12): an in-dialog request without a
/// valid one is relayed only along a dialog the core knows (docs/CLOUD-CORE.md "Who the core
/// relays for").
///
/// The key is derived from the core's token key, so routes stay valid across a restart (a BYE
/// for a dialog the core lost still reaches the other side). Pure value.
struct RouteSignature: Sendable {
    /// The key's bytes (`SymmetricKey` is not `Sendable`).
    private let key: [UInt8]
    /// 16 bytes of the MAC, hex: 128 bits are past guessing and keep the URI short.
    static let length = 16

    init(key: SymmetricKey) { self.key = key.withUnsafeBytes { Array($0) } }

    /// The route key derived from a secret the core keeps across restarts.
    init(deriving secret: some ContiguousBytes) {
        self.init(key: HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: secret), info: Data("symphony record-route v1".utf8), outputByteCount: 32))
    }

    /// `uri` is the Record-Route URI without the parameter: `sip:192.0.2.1:5061;transport=tls;lr`.
    func sign(callID: String, callerTag: String, uri: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Self.input(callID: callID, callerTag: callerTag, uri: uri), using: SymmetricKey(data: key))
        return mac.prefix(Self.length).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `value` is our signature for the dialog with either tag as the caller's (the
    /// caller's tag is in From on its requests and in To on the callee's). Constant time in the
    /// value compared.
    func verify(_ value: String, callID: String, tags: [String], uri: String) -> Bool {
        guard value.utf8.count == Self.length * 2 else { return false }
        return tags.contains { tag in
            let expected = sign(callID: callID, callerTag: tag, uri: uri)
            return zip(expected.utf8, value.lowercased().utf8).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
        }
    }

    /// Length-prefixed fields: no two (Call-ID, tag, URI) triples give the same input.
    private static func input(callID: String, callerTag: String, uri: String) -> Data {
        var data = Data()
        for field in [callID, callerTag, uri] {
            let bytes = Data(field.utf8)
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: bytes.count).bigEndian) { data.append(contentsOf: $0) }
            data.append(bytes)
        }
        return data
    }
}
