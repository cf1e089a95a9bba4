import BoundedJSON
public import Foundation
public import Logging
import NIOConcurrencyHelpers
import X509

/// What a gateway sends to claim itself: the one-time code and a PEM CSR for its own key.
public struct ClaimRequest: Codable, Sendable {
    public var code: String
    public var csr: String

    public init(code: String, csr: String) {
        self.code = code
        self.csr = csr
    }
}

/// What it gets back: its device name, its certificate, the CA to trust, where to register.
public struct ClaimResponse: Codable, Sendable, Equatable {
    public var device: String
    public var certificate: String
    public var ca: String
    public var sipServer: String
    public var domain: String

    enum CodingKeys: String, CodingKey {
        case device, certificate, ca, domain
        case sipServer = "sip_server"
    }
}

/// The claiming logic behind the HTTPS endpoint (`POST /v1/claim`): rate limit per source,
/// redeem the code, sign the CSR, note the claim. Transport-free, so tests call it directly and
/// `ClaimingHTTPServer` stays a thin NIO handler.
public final class ClaimingService: Sendable {
    let directory: Directory
    let authority: DeviceCertificateAuthority
    let validDays: Int
    let sipServer: String
    let domain: String
    let logger: Logger
    let clock: @Sendable () -> Date
    private let limiter: NIOLockedValueBox<SourceRateLimiter>

    public init(
        directory: Directory, authority: DeviceCertificateAuthority, validDays: Int, sipServer: String, domain: String,
        attemptsPerMinute: Int, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.directory = directory
        self.authority = authority
        self.validDays = validDays
        self.sipServer = sipServer
        self.domain = domain
        self.logger = logger
        self.clock = clock
        self.limiter = NIOLockedValueBox(SourceRateLimiter(rate: Double(attemptsPerMinute) / 60, burst: Double(attemptsPerMinute)))
    }

    /// Answers one claim. Every refusal is logged with its reason and the source.
    public func claim(_ body: [UInt8], source: String) -> Result<ClaimResponse, ClaimError> {
        let now = clock()
        let allowed = limiter.withLockedValue { $0.allow(source, now: now.timeIntervalSince1970) }
        guard allowed else {
            logger.notice("claim refused", metadata: ["source": "\(source)", "reason": "rate limit"])
            return .failure(.rateLimited(retryAfter: 60))
        }
        let result = process(body, source: source, now: now)
        switch result {
        case .success(let response):
            logger.notice("device claimed", metadata: ["device": "\(response.device)", "source": "\(source)"])
        case .failure(let error):
            logger.notice("claim refused", metadata: ["source": "\(source)", "reason": "\(error)"])
        }
        return result
    }

    private func process(_ body: [UInt8], source: String, now: Date) -> Result<ClaimResponse, ClaimError> {
        guard let request = try? BoundedJSON.decode(ClaimRequest.self, from: Data(body)) else {
            return .failure(.badRequest("body must be JSON {\"code\": …, \"csr\": …}"))
        }
        // Check the CSR before spending the code: a broken request should not burn it.
        do {
            _ = try CertificateSigningRequest(pemEncoded: request.csr)
        } catch {
            return .failure(.badRequest("csr is not a PEM certificate signing request"))
        }
        let device: String
        do { device = try directory.redeemClaimingCode(request.code, by: source, now: now) } catch { return .failure(error) }
        do {
            let certificate = try authority.signDeviceRequest(request.csr, device: device, validDays: validDays, now: now)
            try directory.markClaimed(device: device, serial: certificate.serialNumber.description, at: now)
            return .success(ClaimResponse(
                device: device, certificate: try certificate.serializeAsPEM().pemString, ca: authority.pem, sipServer: sipServer, domain: domain))
        } catch {
            return .failure(.badRequest("\(error)"))
        }
    }
}
