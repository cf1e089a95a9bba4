public import Crypto
public import DeviceTrust
public import Foundation
import SwiftASN1
public import X509

/// The core's own certificate authority (swift-certificates): it signs the core's SIPS server
/// certificate and the device certificates gateways claim with a CSR. Its key is P-256 and stays
/// in the state directory (mode 0600).
public struct DeviceCertificateAuthority: Sendable {
    public let certificate: Certificate
    private let keyBytes: Data

    public enum AuthorityError: Error, Sendable, Equatable, CustomStringConvertible {
        case unreadable(String)
        case badRequest(String)

        public var description: String {
            switch self {
            case .unreadable(let what): "certificate authority: \(what)"
            case .badRequest(let what): "certificate request refused: \(what)"
            }
        }
    }

    var key: P256.Signing.PrivateKey { try! P256.Signing.PrivateKey(rawRepresentation: keyBytes) }

    public init(certificate: Certificate, key: P256.Signing.PrivateKey) {
        self.certificate = certificate
        self.keyBytes = key.rawRepresentation
    }

    /// Loads the CA from its two PEM files, or creates both (10 years) when neither exists.
    public static func loadOrCreate(certificateFile: String, keyFile: String, commonName: String = "Symphony Cloud Core CA", now: Date = Date()) throws -> Self {
        let manager = FileManager.default
        if manager.fileExists(atPath: certificateFile) || manager.fileExists(atPath: keyFile) {
            do {
                let certificate = try Certificate(pemEncoded: try String(contentsOfFile: certificateFile, encoding: .utf8))
                let key = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: keyFile, encoding: .utf8))
                guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
                    throw AuthorityError.unreadable("\(keyFile) does not belong to \(certificateFile)")
                }
                return Self(certificate: certificate, key: key)
            } catch let error as AuthorityError {
                throw error
            } catch {
                throw AuthorityError.unreadable("\(certificateFile) / \(keyFile): \(error)")
            }
        }
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            CommonName(commonName)
            OrganizationName("Symphony Bridge")
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(3650 * 86400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: Certificate.PublicKey(key.publicKey))
            },
            issuerPrivateKey: .init(key))
        try AtomicFile.write(key.pemRepresentation, to: keyFile)
        try AtomicFile.write(try certificate.serializeAsPEM().pemString, to: certificateFile, mode: 0o644)
        return Self(certificate: certificate, key: key)
    }

    public var pem: String { (try? certificate.serializeAsPEM().pemString) ?? "" }

    /// The core's server certificate: host names and IP addresses in subjectAltName, for
    /// server use only (it cannot sign in to the core or a mesh as a client).
    public func issueServer(
        commonName: String, publicKey: Certificate.PublicKey, dnsNames: [String] = [], ipAddresses: [String] = [],
        validDays: Int, now: Date = Date()
    ) throws -> Certificate {
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        for ip in ipAddresses {
            if let bytes = IPAddressBytes(ip) { names.append(.ipAddress(ASN1OctetString(contentBytes: bytes[...]))) }
        }
        return try issue(commonName: commonName, publicKey: publicKey, names: names, usage: [.serverAuth], validDays: validDays, now: now)
    }

    /// A device certificate (`DeviceCertificateName`): the `symphony-device:` URI naming its
    /// company, site and name, no host name or address, CN `Symphony device <name>`; client
    /// use (the core, mesh calls placed) and server use (mesh calls answered, where peers check
    /// the URI, not a host name).
    public func issueDevice(_ binding: DeviceBinding, publicKey: Certificate.PublicKey, validDays: Int, now: Date = Date()) throws -> Certificate {
        try issue(
            commonName: DeviceCertificateName.commonName(device: binding.device), publicKey: publicKey,
            names: [.uniformResourceIdentifier(binding.uri)], usage: [.clientAuth, .serverAuth], validDays: validDays, now: now)
    }

    private func issue(
        commonName: String, publicKey: Certificate.PublicKey, names: [GeneralName], usage: [ExtendedKeyUsage.Usage], validDays: Int, now: Date
    ) throws -> Certificate {
        let subject = try DistinguishedName {
            CommonName(commonName)
            OrganizationName("Symphony Bridge")
        }
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Double(validDays) * 86400),
            issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage(usage)
                if !names.isEmpty { SubjectAlternativeNames(names) }
                AuthorityKeyIdentifier(keyIdentifier: try? certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: .init(key))
    }

    /// A device's CSR (PEM), checked: it parses and carries a valid self-signature (proof that the
    /// sender holds the key). Its subject is ignored: the directory names the device.
    public static func verifiedRequest(_ csrPEM: String) throws(AuthorityError) -> CertificateSigningRequest {
        let request: CertificateSigningRequest
        do { request = try CertificateSigningRequest(pemEncoded: csrPEM) } catch { throw .badRequest("not a PEM certificate signing request") }
        guard request.publicKey.isValidSignature(request.signature, for: request) else { throw .badRequest("the CSR's signature does not verify") }
        return request
    }
}

/// 4 or 16 bytes of an IP literal.
func IPAddressBytes(_ text: String) -> [UInt8]? {
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: v6) { Array($0) } }
    return nil
}

