import BoundedJSON
import Foundation
public import Crypto
import SwiftASN1
import X509
public import NIOSSL

/// The gateway's identity toward the cloud: its P-256 key, the device certificate the cloud's
/// CA signed at claiming, the CA to verify the cloud with, and where to register. Kept in the
/// state directory (key and certificate 0600) and reused on every later start.
public struct DeviceIdentity: Sendable, Equatable {
    public var device: String
    public var keyFile: String
    public var certificateFile: String
    public var caFile: String
    /// `sips:host:port` from the claim answer.
    public var sipServer: String
    public var domain: String

    /// Files in `stateDirectory`: `device-key.pem`, `device.pem`, `cloud-ca.pem`, `device.json`.
    public static func files(in stateDirectory: String) -> (key: String, certificate: String, ca: String, metadata: String) {
        (stateDirectory + "/device-key.pem", stateDirectory + "/device.pem", stateDirectory + "/cloud-ca.pem", stateDirectory + "/device.json")
    }

    /// The identity stored by an earlier claim, or nil when there is none yet.
    public static func load(from stateDirectory: String) throws -> DeviceIdentity? {
        let files = files(in: stateDirectory)
        guard FileManager.default.fileExists(atPath: files.metadata) else { return nil }
        let metadata = try BoundedJSON.decode(Metadata.self, from: Data(contentsOf: URL(fileURLWithPath: files.metadata)))
        // The file is outside input too: the name becomes the AORs, mDNS names and TLS checks.
        guard metadata.isValid else { throw ClaimingError.badAnswer("\(files.metadata) names no valid device (1–64 letters, digits, '-', '_', '.')") }
        for file in [files.key, files.certificate, files.ca] where !FileManager.default.fileExists(atPath: file) {
            throw ClaimingError.incompleteState(file)
        }
        return DeviceIdentity(
            device: metadata.device, keyFile: files.key, certificateFile: files.certificate, caFile: files.ca,
            sipServer: metadata.sipServer, domain: metadata.domain)
    }

    struct Metadata: Codable {
        var device: String
        var sipServer: String
        var domain: String

        /// The cloud's naming rule (device names: 1–64 letters, digits, '-', '_', '.'), and
        /// server and domain short enough to be what they say.
        var isValid: Bool {
            DeviceIdentity.isDeviceName(device) && !sipServer.isEmpty && sipServer.utf8.count <= 512 && !domain.isEmpty && domain.utf8.count <= 255
        }
    }

    /// Whether `name` can be a device's name (the cloud core's rule).
    public static func isDeviceName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
    }

    /// A fresh key and a CSR for it (the subject is only a hint: the cloud names the device).
    public static func makeKeyAndRequest(hint: String) throws -> (key: P256.Signing.PrivateKey, csrPEM: String) {
        let key = P256.Signing.PrivateKey()
        let request = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName(hint) }, privateKey: .init(key),
            attributes: CertificateSigningRequest.Attributes())
        return (key, try request.serializeAsPEM().pemString)
    }

    /// Stores what a claim returned; the key and certificate are written 0600 from the start.
    public static func store(key: P256.Signing.PrivateKey, answer: ClaimAnswer, in stateDirectory: String) throws -> DeviceIdentity {
        let files = files(in: stateDirectory)
        let metadata = Metadata(device: answer.device, sipServer: answer.sipServer, domain: answer.domain)
        guard metadata.isValid else { throw ClaimingError.badAnswer("the cloud named the device \"\(answer.device.prefix(80))\", not a device name") }
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try write(key.pemRepresentation + "\n", to: files.key, mode: 0o600)
        try write(answer.certificate, to: files.certificate, mode: 0o600)
        try write(answer.ca, to: files.ca, mode: 0o644)
        try write(String(decoding: try JSONEncoder().encode(metadata), as: UTF8.self), to: files.metadata, mode: 0o600)
        return DeviceIdentity(
            device: answer.device, keyFile: files.key, certificateFile: files.certificate, caFile: files.ca,
            sipServer: answer.sipServer, domain: answer.domain)
    }

    private static func write(_ text: String, to path: String, mode: Int) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
            throw ClaimingError.cannotWrite(path)
        }
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }
}

/// What the cloud answers a good claim with (`POST /v1/claim`, docs/CLOUD-CORE.md).
public struct ClaimAnswer: Codable, Sendable, Equatable {
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

public enum ClaimingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The cloud refused the claim: its status and its words ("claiming code already used").
    case refused(status: Int, reason: String)
    case unreachable(String)
    case badAnswer(String)
    case notClaimed
    case incompleteState(String)
    case cannotWrite(String)

    public var description: String {
        switch self {
        case .refused(let status, let reason): "the cloud refused the claim (\(status)): \(reason)"
        case .unreachable(let what): "claiming failed: \(what)"
        case .badAnswer(let what): "the claim answer is not usable: \(what)"
        case .notClaimed: "this gateway is not claimed yet: set [cloud] claim_code (and claim_url) for its first start"
        case .incompleteState(let file): "the claimed identity is incomplete: \(file) is missing (remove device.json to claim again)"
        case .cannotWrite(let file): "cannot write \(file)"
        }
    }
}

extension DeviceIdentity {
    /// The device a certificate of the site CA names (its subject's common name): what a mesh
    /// peer proves in the TLS handshake, compared with what discovery said it would be.
    public static func deviceName(of certificate: NIOSSLCertificate) -> String? {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) else { return nil }
        for rdn in parsed.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                if let name = String(attribute.value) { return name }
            }
        }
        return nil
    }
}
