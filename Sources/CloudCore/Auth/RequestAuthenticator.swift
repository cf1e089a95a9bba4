import DeviceTrust
import Foundation
import NIOSSL
import SIP
import SIPTransport
import X509

/// Who sent a request, once proven.
public enum Principal: Sendable, Hashable, CustomStringConvertible {
    /// A gateway, by the device certificate our CA signed (mutual TLS).
    case device(String)
    /// A user, by a client token (RFC 8898 Bearer) or SIP digest.
    case user(String)

    public var description: String {
        switch self {
        case .device(let name): "device:\(name)"
        case .user(let name): "user:\(name)"
        }
    }

    public init?(_ text: String) {
        if text.hasPrefix("device:") { self = .device(String(text.dropFirst(7))) } else if text.hasPrefix("user:") { self = .user(String(text.dropFirst(5))) } else { return nil }
    }

    /// May this principal register or call as `name` (an AOR user part or a From user)? A device
    /// owns its own name and its channels' names; a user only its own.
    public func owns(_ name: String) -> Bool {
        switch self {
        case .user(let user): return name == user
        case .device(let device): return name == device || Directory.channelParts(name)?.device == device
        }
    }
}

/// The authentication stage of the request pipeline: mutual-TLS device certificates, Bearer
/// client tokens (RFC 8898), SIP digest against stored HA1 values. It decides; the pipeline
/// answers. Refusal reasons go to the log only: the peer learns nothing but 401/403.
struct RequestAuthenticator: Sendable {
    let directory: Directory
    let digest: DigestServer
    let tokens: ClientTokenVerifier?

    enum Outcome: Sendable, Equatable {
        case authenticated(Principal, how: String)
        /// No usable credentials: challenge (401/407). `reason` is for the log.
        case challenge(reason: String, stale: Bool)
        /// Credentials were presented and are wrong, or the principal is gone: 403.
        case forbidden(reason: String)
    }

    /// `now` wall time (tokens' expiry is a wall time); `uptime` monotonic (digest nonces' age:
    /// a step of the wall clock makes no nonce stale or young).
    func authenticate(_ request: SIPMessage, peerCertificate: NIOSSLCertificate?, now: Double, uptime: Double) -> Outcome {
        if let peerCertificate {
            // The handshake verified the chain against our CA. The certificate must name a device
            // (`DeviceCertificateName`) and be the one its last claim or renewal pinned: a deleted
            // device's, a re-claimed device's old one, a renewed one stop working at once.
            guard let certificate = DeviceCertificateName.certificate(peerCertificate), let name = DeviceCertificateName.deviceName(of: certificate) else {
                return .forbidden(reason: "client certificate names no device")
            }
            guard directory.isCurrentCertificate(device: name, serial: DeviceCertificateName.serial(of: certificate)) else {
                return .forbidden(reason: directory.deviceExists(name) ? "certificate of device \(name) revoked (replaced by a newer one)" : "certificate for unknown device \(name)")
            }
            return .authenticated(.device(name), how: "mutual TLS")
        }
        let proxy = request.method != .register
        let header: SIPHeaderName = proxy ? .proxyAuthorization : .authorization
        // RFC 8898 §2: `Authorization: Bearer <token>` (Proxy-Authorization toward a proxy);
        // either field is accepted so that clients need not know which role we play.
        for value in request.headers.values(header) + request.headers.values(proxy ? .authorization : .proxyAuthorization) {
            let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else { continue }
            guard let tokens else { return .forbidden(reason: "bearer token but no token key configured") }
            do {
                let claims = try tokens.verify(String(parts[1]).trimmingCharacters(in: .whitespaces), now: Int(now))
                guard directory.userExists(claims.subject) else { return .forbidden(reason: "token for unknown user \(claims.subject)") }
                return .authenticated(.user(claims.subject), how: "bearer token")
            } catch {
                return .forbidden(reason: "bearer token refused: \(error)")
            }
        }
        switch digest.verify(request, proxy: proxy, now: UInt64(max(0, uptime)), ha1: { directory.ha1(user: $0, algorithm: $1) }) {
        case .authenticated(let username):
            return .authenticated(.user(username), how: "digest")
        case .challenge(let reason, let stale):
            // A wrong password is a challenge again (the UA may have a stale nonce or try the
            // next algorithm); the pipeline rate-limits such sources.
            return .challenge(reason: reason, stale: stale)
        }
    }
}
