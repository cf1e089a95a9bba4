import Foundation
public import NIOSSL
public import X509

/// Where a device belongs, as its certificate says it: company, site and device name. The core
/// writes it into every device certificate as a URI subjectAltName of the project's own scheme,
/// `symphony-device:<company>/<site>/<device>` (each part percent-encoded), and both the core
/// and mesh peers read it from there — one rule for both sides (issue 17).
public struct DeviceBinding: Sendable, Hashable, CustomStringConvertible {
    public var company: String
    public var site: String
    public var device: String

    public init(company: String, site: String, device: String) {
        self.company = company
        self.site = site
        self.device = device
    }

    public static let scheme = "symphony-device"

    public var uri: String { "\(Self.scheme):\(Self.encode(company))/\(Self.encode(site))/\(Self.encode(device))" }

    public init?(uri: String) {
        guard uri.utf8.count <= 1024, uri.hasPrefix(Self.scheme + ":") else { return nil }
        let parts = uri.dropFirst(Self.scheme.count + 1).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, let company = Self.decode(parts[0]), let site = Self.decode(parts[1]), let device = Self.decode(parts[2]),
            !company.isEmpty, !site.isEmpty, DeviceCertificateName.isDeviceName(device)
        else { return nil }
        self.init(company: company, site: site, device: device)
    }

    /// The site as one token (mDNS TXT `site=`): `company/site`, percent-encoded parts.
    public var siteKey: String { "\(Self.encode(company))/\(Self.encode(site))" }

    public func sameSite(as other: DeviceBinding) -> Bool { company == other.company && site == other.site }

    public var description: String { "\(company)/\(site)/\(device)" }

    static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    static func decode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(), let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else { return nil }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// How a device certificate names its device, in one place for the core (who issues and checks
/// them) and the gateway (who presents them, and checks its mesh peers').
///
/// - The name and the site come from the `symphony-device:` URI subjectAltName.
/// - The subject CN is `Symphony device <name>`: readable, and — with a space — never a host
///   name, so no device certificate can pass a host-name check for the core (device names may
///   hold dots). Device certificates carry no DNS or IP names.
/// - Certificates issued before site binding (CN = the device name, no URI) still name their
///   device by CN, for the core to pin by serial and renew; the mesh does not accept them.
public enum DeviceCertificateName {
    public static let commonNamePrefix = "Symphony device "

    public static func commonName(device: String) -> String { commonNamePrefix + device }

    /// Whether `name` can be a device's name (the core's rule: 1–64 letters, digits, '-', '_', '.').
    public static func isDeviceName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
    }

    public static func certificate(_ certificate: NIOSSLCertificate) -> Certificate? {
        guard let der = try? certificate.toDERBytes() else { return nil }
        return try? Certificate(derEncoded: der)
    }

    /// The site binding of a certificate, or nil when it has none (or more than one).
    public static func binding(of certificate: Certificate) -> DeviceBinding? {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return nil }
        var found: [DeviceBinding] = []
        for name in names {
            if case .uniformResourceIdentifier(let uri) = name, uri.hasPrefix(DeviceBinding.scheme + ":") {
                guard let binding = DeviceBinding(uri: uri) else { return nil }
                found.append(binding)
            }
        }
        return found.count == 1 ? found[0] : nil
    }

    /// The device a certificate names: the binding's device, or for a certificate of before site
    /// binding its CN when that is a device name.
    public static func deviceName(of certificate: Certificate) -> String? {
        if let binding = binding(of: certificate) { return binding.device }
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                guard let name = String(attribute.value), isDeviceName(name) else { return nil }
                return name
            }
        }
        return nil
    }

    public static func deviceName(of certificate: NIOSSLCertificate) -> String? {
        Self.certificate(certificate).flatMap { deviceName(of: $0) }
    }

    /// A serial number as stored and compared: lowercase hex bytes joined by ':' (two digits each).
    public static func serial(of certificate: Certificate) -> String { canonicalSerial(certificate.serialNumber.description) }

    /// `a:1b:3` and `0a:1b:03` are one serial (older directories stored swift-certificates'
    /// description, which drops leading zeros of each byte).
    public static func canonicalSerial(_ text: String) -> String {
        text.lowercased().split(separator: ":", omittingEmptySubsequences: false).map { $0.count == 1 ? "0" + $0 : String($0) }.joined(separator: ":")
    }
}
