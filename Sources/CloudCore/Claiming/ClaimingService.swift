import BoundedJSON
public import DeviceTrust
import DurableState
public import Foundation
public import Logging
import NIOConcurrencyHelpers
import X509

/// The logic behind the claiming HTTPS endpoint (docs/CLOUD-CORE.md "Claiming"), transport-free
/// so that tests call it directly and `ClaimingHTTPServer` stays a thin NIO handler:
///
/// - `POST /v1/claim` (`ClaimWire`): rate limit per source, the CSR checked (self-signature)
///   before anything is spent, then code and certificate in one transaction. Idempotent for the
///   key of the CSR while the code is valid: a gateway whose answer was lost gets the same
///   certificate again.
/// - `POST /v1/renew` (mutual TLS with the device's current certificate): a new certificate for
///   the CSR's key; the old one is revoked.
/// - `GET /v1/revoked` (mutual TLS): the revocation list the gateways use on the mesh.
public final class ClaimingService: Sendable {
    let directory: Directory
    let authority: DeviceCertificateAuthority
    let validDays: Int
    let sipServer: String
    let domain: String
    /// `https://host:port` of the claiming listener, told to gateways for their renewals (set
    /// once the listener is bound: its port may have been 0).
    let service: NIOLockedValueBox<String?>
    let logger: Logger
    let clock: @Sendable () -> Date
    private let limiter: NIOLockedValueBox<SourceRateLimiter>

    public init(
        directory: Directory, authority: DeviceCertificateAuthority, validDays: Int, sipServer: String, domain: String, service: String? = nil,
        attemptsPerMinute: Int, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.service = NIOLockedValueBox(service)
        self.directory = directory
        self.authority = authority
        self.validDays = validDays
        self.sipServer = sipServer
        self.domain = domain
        self.logger = logger
        self.clock = clock
        self.limiter = NIOLockedValueBox(SourceRateLimiter(rate: Double(attemptsPerMinute) / 60, burst: Double(attemptsPerMinute)))
    }

    public func setService(_ url: String) { service.withLockedValue { $0 = url } }

    /// Answers one claim. Every refusal is logged with its reason and the source.
    public func claim(_ body: [UInt8], source: String) -> Result<ClaimAnswer, ClaimError> {
        let now = clock()
        guard admit(source, now: now, what: "claim") else { return .failure(.rateLimited(retryAfter: 60)) }
        let result = processClaim(body, source: source, now: now)
        switch result {
        case .success(let answer):
            logger.notice("device claimed", metadata: ["device": "\(answer.device)", "source": "\(source)"])
        case .failure(let error):
            logger.notice("claim refused", metadata: ["source": "\(source)", "reason": "\(error)"])
        }
        return result
    }

    /// Answers one renewal from `device` (the name in the client certificate the TLS handshake
    /// verified against our CA) presenting the certificate with `serial`.
    public func renew(_ body: [UInt8], device: String?, serial: String?, source: String) -> Result<ClaimAnswer, ClaimError> {
        let now = clock()
        guard admit(source, now: now, what: "renewal") else { return .failure(.rateLimited(retryAfter: 60)) }
        guard let device, let serial else {
            logger.notice("renewal refused", metadata: ["source": "\(source)", "reason": "no device certificate of ours"])
            return .failure(.notAuthorized("a device certificate is required"))
        }
        let request: CertificateSigningRequest
        do {
            request = try DeviceCertificateAuthority.verifiedRequest(try ClaimWire.decode(RenewRequest.self, from: body).csr)
        } catch {
            logger.notice("renewal refused", metadata: ["device": "\(device)", "source": "\(source)", "reason": "\(error)"])
            return .failure(.badRequest("body must be JSON {\"csr\": …} with a valid CSR"))
        }
        do {
            let keyHash = Directory.keyHash(Array(request.publicKey.subjectPublicKeyInfoBytes))
            let pem = try directory.renew(device: device, presentedSerial: serial, keyHash: keyHash, now: now) { binding in
                try self.issue(binding, publicKey: request.publicKey, now: now)
            }
            logger.notice("device certificate renewed", metadata: ["device": "\(device)", "source": "\(source)"])
            return .success(answer(device: device, certificate: pem))
        } catch {
            logger.notice("renewal refused", metadata: ["device": "\(device)", "source": "\(source)", "reason": "\(error)"])
            return .failure(.notAuthorized("this certificate cannot be renewed (revoked or replaced)"))
        }
    }

    /// The revocation list of the site the device belongs to, for a device that presents its
    /// current certificate.
    public func revocations(device: String?, serial: String?, source: String) -> Result<RevocationList, ClaimError> {
        let now = clock()
        guard let device, let serial, directory.isCurrentCertificate(device: device, serial: serial) else {
            logger.notice("revocation list refused", metadata: ["source": "\(source)", "reason": "no current device certificate"])
            return .failure(.notAuthorized("a current device certificate is required"))
        }
        do {
            let site = try directory.binding(ofDevice: device)?.siteKey
            return .success(RevocationList(serials: try directory.revokedSerials(now: now, site: site), issuedAt: Int(now.timeIntervalSince1970)))
        } catch {
            logger.error("revocation list unavailable", metadata: ["error": "\(error)"])
            return .failure(.badRequest("directory unavailable"))
        }
    }

    private func admit(_ source: String, now: Date, what: String) -> Bool {
        // On the monotonic clock: a step of the wall clock neither opens nor closes the gate.
        let allowed = limiter.withLockedValue { $0.allow(source, now: MonotonicTime.seconds()) }
        if !allowed { logger.notice("\(what) refused", metadata: ["source": "\(source)", "reason": "rate limit"]) }
        return allowed
    }

    private func processClaim(_ body: [UInt8], source: String, now: Date) -> Result<ClaimAnswer, ClaimError> {
        guard let request = try? ClaimWire.decode(ClaimRequest.self, from: body) else {
            return .failure(.badRequest("body must be JSON {\"code\": …, \"csr\": …}"))
        }
        // The CSR is checked whole (its signature too) before the code is spent.
        let csr: CertificateSigningRequest
        do { csr = try DeviceCertificateAuthority.verifiedRequest(request.csr) } catch { return .failure(.badRequest("\(error)")) }
        let keyHash = Directory.keyHash(Array(csr.publicKey.subjectPublicKeyInfoBytes))
        do {
            let (device, pem) = try directory.claim(code: request.code, keyHash: keyHash, source: source, now: now) { binding in
                try self.issue(binding, publicKey: csr.publicKey, now: now)
            }
            return .success(answer(device: device, certificate: pem))
        } catch {
            return .failure(error)
        }
    }

    private func issue(_ binding: DeviceBinding, publicKey: Certificate.PublicKey, now: Date) throws -> Directory.IssuedCertificate {
        let certificate = try authority.issueDevice(binding, publicKey: publicKey, validDays: validDays, now: now)
        return Directory.IssuedCertificate(
            pem: try certificate.serializeAsPEM().pemString, serial: DeviceCertificateName.serial(of: certificate), notAfter: certificate.notValidAfter)
    }

    private func answer(device: String, certificate: String) -> ClaimAnswer {
        ClaimAnswer(device: device, certificate: certificate, ca: authority.pem, sipServer: sipServer, domain: domain, service: service.withLockedValue { $0 })
    }
}
