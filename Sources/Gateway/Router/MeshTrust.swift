public import DeviceTrust
public import NIOSSL

/// Who may take part in our mesh (issue 17, docs/MESH.md "Who is a mesh peer"). The TLS handshake
/// has verified the peer's chain against the core's CA — which signs the devices of every
/// company and site it serves — so the certificate must also:
///
/// - name a device of our own company and site (its `symphony-device:` binding; discovery's TXT
///   record is only a hint, and a certificate of before site binding is not enough);
/// - not be revoked (the list the gateway fetched from the core over its mutual TLS, kept on
///   disk so that it holds while the cloud is away, which is when the mesh matters);
/// - for a call we place, name the device discovery said we would reach.
public struct MeshTrust: Sendable, Equatable {
    /// Our own binding; nil while our certificate has none (no mesh then, either way).
    public var site: DeviceBinding?
    public var revoked: Set<String>

    public init(site: DeviceBinding? = nil, revoked: Set<String> = []) {
        self.site = site
        self.revoked = revoked
    }

    /// Nil when the certificate's holder may take part; else why not (for the log).
    public func refusal(of presented: NIOSSLCertificate?, expecting device: String? = nil) -> String? {
        guard let site else { return "our own certificate names no site yet (it is renewed with the cloud)" }
        guard let presented, let certificate = DeviceCertificateName.certificate(presented) else { return "no client certificate" }
        guard let binding = DeviceCertificateName.binding(of: certificate) else { return "its certificate names no site (issued before site binding)" }
        guard binding.sameSite(as: site) else { return "its certificate is for site \(binding.company)/\(binding.site), not ours" }
        if let device, binding.device != device { return "discovery said \(device), its certificate names \(binding.device)" }
        guard !revoked.contains(DeviceCertificateName.serial(of: certificate)) else { return "its certificate (\(binding.device)) is revoked" }
        return nil
    }
}
