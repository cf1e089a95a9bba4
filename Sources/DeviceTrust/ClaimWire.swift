import BoundedJSON
import Foundation

/// The claiming protocol's messages (HTTPS, JSON; docs/CLOUD-CORE.md "Claiming"), defined once
/// for the core that answers and the gateway that asks.
public enum ClaimWire {
    public static let claimPath = "/v1/claim"
    /// A new certificate for the key of the CSR, over the device's mutual-TLS identity.
    public static let renewPath = "/v1/renew"
    /// The revoked device certificates still within their validity (mutual TLS).
    public static let revokedPath = "/v1/revoked"

    /// At most this much JSON in a request or answer.
    public static let maxBody = 256 * 1024

    public static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try BoundedJSON.decode(type, from: Data(bytes))
    }
}

/// `POST /v1/claim`: the one-time code and a PEM CSR for the gateway's own key.
public struct ClaimRequest: Codable, Sendable, Equatable {
    public var code: String
    public var csr: String

    public init(code: String, csr: String) {
        self.code = code
        self.csr = csr
    }
}

/// `POST /v1/renew`: a CSR for the key the renewed certificate is for.
public struct RenewRequest: Codable, Sendable, Equatable {
    public var csr: String

    public init(csr: String) { self.csr = csr }
}

/// What a good claim or renewal is answered with: the device name, its certificate, the CA to
/// trust, where to register and the SIP domain.
public struct ClaimAnswer: Codable, Sendable, Equatable {
    public var device: String
    public var certificate: String
    public var ca: String
    public var sipServer: String
    public var domain: String
    /// `https://host:port` of this service, for renewals and revocation lists (a gateway's
    /// config needs `claim_url` only for its first claim).
    public var service: String?

    public init(device: String, certificate: String, ca: String, sipServer: String, domain: String, service: String? = nil) {
        self.device = device
        self.certificate = certificate
        self.ca = ca
        self.sipServer = sipServer
        self.domain = domain
        self.service = service
    }

    enum CodingKeys: String, CodingKey {
        case device, certificate, ca, domain, service
        case sipServer = "sip_server"
    }
}

/// A refusal: `{"error": "<reason>"}` with the HTTP status.
public struct ClaimRefusal: Codable, Sendable, Equatable {
    public var error: String

    public init(error: String) { self.error = error }
}

/// `GET /v1/revoked`: serials (`DeviceCertificateName.serial`) of device certificates the core
/// revoked (deleted or re-claimed devices, renewed certificates) that are not yet expired.
public struct RevocationList: Codable, Sendable, Equatable {
    public var serials: [String]
    /// Seconds since 1970 when the core made the list.
    public var issuedAt: Int

    public init(serials: [String], issuedAt: Int) {
        self.serials = serials
        self.issuedAt = issuedAt
    }

    enum CodingKeys: String, CodingKey {
        case serials
        case issuedAt = "issued_at"
    }

    /// More would not be "a short list" (nor fit the 256 KiB an answer may have): the newest this many.
    public static let maxEntries = 2_000
}
