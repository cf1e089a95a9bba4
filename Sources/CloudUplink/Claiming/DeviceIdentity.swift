import BoundedJSON
public import Crypto
public import DeviceTrust
public import Foundation
import SwiftASN1
import X509

/// The gateway's identity toward the cloud: its P-256 key, the device certificate the cloud's
/// CA signed, the CA to verify the cloud with, and where to register. Kept in the state
/// directory and reused on every later start.
///
/// Files (docs/GATEWAY.md "Identity files"), each written atomically (`AtomicFile`: temp file,
/// fsync, rename, directory fsync), `device.json` last as the mark of a finished claim:
/// `device-key.pem` (0600), `device.pem` (0600), `cloud-ca.pem` (0644), `device.json` (0600).
/// A key being claimed or renewed for waits in `device-key.next.pem`: kept across retries (so a
/// retry after a lost answer asks for the same key and gets the same certificate), and moved
/// over `device-key.pem` once the certificate for it is stored — at the next start if a power cut
/// came in between.
public struct DeviceIdentity: Sendable, Equatable {
    public var device: String
    public var keyFile: String
    public var certificateFile: String
    public var caFile: String
    /// `sips:host:port` from the claim answer.
    public var sipServer: String
    public var domain: String
    /// `https://host:port` of the claiming service (renewals, revocation lists), if the cloud said.
    public var service: String?
    /// Company and site, from the certificate; nil for a certificate of before site binding.
    public var binding: DeviceBinding?
    public var notBefore: Date
    public var notAfter: Date
    public var serial: String

    public struct Files: Sendable {
        public var key: String
        public var certificate: String
        public var ca: String
        public var metadata: String
        public var nextKey: String
        public var revocations: String
    }

    public static func files(in stateDirectory: String) -> Files {
        Files(
            key: stateDirectory + "/device-key.pem", certificate: stateDirectory + "/device.pem", ca: stateDirectory + "/cloud-ca.pem",
            metadata: stateDirectory + "/device.json", nextKey: stateDirectory + "/device-key.next.pem", revocations: stateDirectory + "/revoked.json")
    }

    /// A file of the identity that cannot be used: named, with what is wrong with it.
    public struct BrokenFile: Error, Sendable, Equatable, CustomStringConvertible {
        public var file: String
        public var problem: String
        public var description: String { "identity file \(file) is broken: \(problem)" }
    }

    /// The identity stored by an earlier claim, or nil when there is none yet (no `device.json`).
    public static func load(from stateDirectory: String) throws(BrokenFile) -> DeviceIdentity? {
        let files = files(in: stateDirectory)
        for file in [files.key, files.certificate, files.ca, files.metadata, files.nextKey, files.revocations] { AtomicFile.removeLeftovers(of: file) }
        guard FileManager.default.fileExists(atPath: files.metadata) else { return nil }
        let metadata: Metadata
        do {
            metadata = try BoundedJSON.decode(Metadata.self, from: Data(contentsOf: URL(fileURLWithPath: files.metadata)))
        } catch {
            throw BrokenFile(file: files.metadata, problem: "not the JSON a claim writes (\(error))")
        }
        // The file is outside input too: the name becomes the AORs, mDNS names and TLS checks.
        guard metadata.isValid else { throw BrokenFile(file: files.metadata, problem: "names no valid device (1–64 letters, digits, '-', '_', '.')") }
        let certificate = try readCertificate(files.certificate)
        _ = try readCertificate(files.ca)
        if (try? readKey(files.key)) != certificate.publicKey {
            // A renewal cut short between storing the certificate and moving its key into place.
            if let next = try? readKey(files.nextKey), next == certificate.publicKey {
                guard rename(files.nextKey, files.key) == 0 else { throw BrokenFile(file: files.key, problem: "cannot move the renewed key into place") }
                AtomicFile.syncDirectory(of: files.key)
            } else {
                throw BrokenFile(file: files.key, problem: FileManager.default.fileExists(atPath: files.key) ? "not the key of \(files.certificate)" : "missing")
            }
        }
        guard DeviceCertificateName.deviceName(of: certificate) == metadata.device else {
            throw BrokenFile(file: files.certificate, problem: "does not name device \(metadata.device)")
        }
        return DeviceIdentity(metadata: metadata, certificate: certificate, files: files)
    }

    init(metadata: Metadata, certificate: Certificate, files: Files) {
        self.init(
            device: metadata.device, keyFile: files.key, certificateFile: files.certificate, caFile: files.ca, sipServer: metadata.sipServer,
            domain: metadata.domain, service: metadata.service, binding: DeviceCertificateName.binding(of: certificate),
            notBefore: certificate.notValidBefore, notAfter: certificate.notValidAfter, serial: DeviceCertificateName.serial(of: certificate))
    }

    public init(
        device: String, keyFile: String, certificateFile: String, caFile: String, sipServer: String, domain: String, service: String?,
        binding: DeviceBinding?, notBefore: Date, notAfter: Date, serial: String
    ) {
        self.device = device
        self.keyFile = keyFile
        self.certificateFile = certificateFile
        self.caFile = caFile
        self.sipServer = sipServer
        self.domain = domain
        self.service = service
        self.binding = binding
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.serial = serial
    }

    private static func readCertificate(_ file: String) throws(BrokenFile) -> Certificate {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw BrokenFile(file: file, problem: FileManager.default.fileExists(atPath: file) ? "unreadable" : "missing")
        }
        do { return try Certificate(pemEncoded: text) } catch { throw BrokenFile(file: file, problem: "not a PEM certificate") }
    }

    private static func readKey(_ file: String) throws -> Certificate.PublicKey {
        Certificate.PublicKey(try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: file, encoding: .utf8)).publicKey)
    }

    struct Metadata: Codable {
        var device: String
        var sipServer: String
        var domain: String
        var service: String?

        /// The cloud's naming rule, and server, domain and service short enough to be what they say.
        var isValid: Bool {
            DeviceCertificateName.isDeviceName(device) && !sipServer.isEmpty && sipServer.utf8.count <= 512 && !domain.isEmpty
                && domain.utf8.count <= 255 && (service?.utf8.count ?? 0) <= 512
        }
    }

    /// The key to claim or renew with: the one a cut-short earlier attempt left in
    /// `device-key.next.pem`, else a new one stored there first.
    public static func nextKey(in stateDirectory: String) throws -> P256.Signing.PrivateKey {
        let file = files(in: stateDirectory).nextKey
        if let text = try? String(contentsOfFile: file, encoding: .utf8), let key = try? P256.Signing.PrivateKey(pemRepresentation: text) { return key }
        let key = P256.Signing.PrivateKey()
        try AtomicFile.write(key.pemRepresentation + "\n", to: file, mode: 0o600)
        return key
    }

    /// A fresh key (not stored) and a CSR for it.
    public static func makeKeyAndRequest(hint: String) throws -> (key: P256.Signing.PrivateKey, csrPEM: String) {
        let key = P256.Signing.PrivateKey()
        return (key, try request(for: key, hint: hint))
    }

    /// A CSR for `key` (the subject is only a hint: the cloud names the device).
    public static func request(for key: P256.Signing.PrivateKey, hint: String) throws -> String {
        let request = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName(hint) }, privateKey: .init(key),
            attributes: CertificateSigningRequest.Attributes())
        return try request.serializeAsPEM().pemString
    }

    /// Stores what a claim or renewal returned for `key` (the next key): certificate, CA and
    /// `device.json`, then the key moved into place (`load` finishes that move after a cut).
    public static func store(key: P256.Signing.PrivateKey, answer: ClaimAnswer, in stateDirectory: String) throws -> DeviceIdentity {
        let files = files(in: stateDirectory)
        let metadata = Metadata(device: answer.device, sipServer: answer.sipServer, domain: answer.domain, service: answer.service)
        guard metadata.isValid else { throw ClaimingError.badAnswer("the cloud named the device \"\(answer.device.prefix(80))\", not a device name") }
        let certificate: Certificate
        do { certificate = try Certificate(pemEncoded: answer.certificate) } catch { throw ClaimingError.badAnswer("the certificate is not PEM") }
        guard (try? Certificate(pemEncoded: answer.ca)) != nil else { throw ClaimingError.badAnswer("the CA certificate is not PEM") }
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else { throw ClaimingError.badAnswer("the certificate is not for our key") }
        guard DeviceCertificateName.deviceName(of: certificate) == answer.device else {
            throw ClaimingError.badAnswer("the certificate does not name device \(answer.device)")
        }
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try AtomicFile.write(key.pemRepresentation + "\n", to: files.nextKey, mode: 0o600)
            try AtomicFile.write(answer.certificate, to: files.certificate, mode: 0o600)
            try AtomicFile.write(answer.ca, to: files.ca, mode: 0o644)
            try AtomicFile.write(String(decoding: try JSONEncoder().encode(metadata), as: UTF8.self), to: files.metadata, mode: 0o600)
            guard rename(files.nextKey, files.key) == 0 else { throw ClaimingError.cannotWrite(files.key) }
            AtomicFile.syncDirectory(of: files.key)
        } catch let error as ClaimingError {
            throw error
        } catch {
            throw ClaimingError.cannotWrite("\(error)")
        }
        return DeviceIdentity(metadata: metadata, certificate: certificate, files: files)
    }

    /// When to renew: at two thirds of the certificate's life (issue 17), at once for a
    /// certificate without site binding.
    public var renewalDue: Date {
        binding == nil ? notBefore : notBefore.addingTimeInterval(notAfter.timeIntervalSince(notBefore) * 2 / 3)
    }
}

public enum ClaimingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The cloud refused the claim: its status and its words ("claiming code already used").
    case refused(status: Int, reason: String)
    case unreachable(String)
    case badAnswer(String)
    case notClaimed
    case cannotWrite(String)

    public var description: String {
        switch self {
        case .refused(let status, let reason): "the cloud refused the claim (\(status)): \(reason)"
        case .unreachable(let what): "claiming failed: \(what)"
        case .badAnswer(let what): "the claim answer is not usable: \(what)"
        case .notClaimed: "this gateway is not claimed yet: set [cloud] claim_code (and claim_url) for its first start"
        case .cannotWrite(let file): "cannot write \(file)"
        }
    }
}

extension DeviceIdentity {
    /// Whether `name` can be a device's name (the cloud core's rule).
    public static func isDeviceName(_ name: String) -> Bool { DeviceCertificateName.isDeviceName(name) }
}
