public import NIOSSL

/// TLS for SIPS (RFC 3261 §26.2, RFC 5630): one identity used as server certificate and as
/// client certificate, trust roots for the peer, and whether a server demands a client
/// certificate (mutual TLS). Certificate verification is always on.
public struct SIPTLSSettings: Sendable {
    public var certificateChain: [NIOSSLCertificate]
    public var privateKey: NIOSSLPrivateKey
    public var trustRoots: NIOSSLTrustRoots
    /// A server refuses peers without a certificate from `trustRoots`.
    public var requireClientCertificate: Bool

    public init(
        certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey, trustRoots: NIOSSLTrustRoots,
        requireClientCertificate: Bool = false
    ) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.trustRoots = trustRoots
        self.requireClientCertificate = requireClientCertificate
    }

    /// Loads PEM files: the certificate chain (leaf first), its key, and the CA file to trust.
    public init(certificateFile: String, keyFile: String, caFile: String, requireClientCertificate: Bool = false) throws {
        self.init(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificateFile),
            privateKey: try NIOSSLPrivateKey(file: keyFile, format: .pem),
            trustRoots: .file(caFile),
            requireClientCertificate: requireClientCertificate)
    }

    func makeServerContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificateChain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = .tlsv12
        configuration.trustRoots = trustRoots
        // A server cannot check a client's host name; it checks the chain.
        configuration.certificateVerification = requireClientCertificate ? .noHostnameVerification : .none
        return try NIOSSLContext(configuration: configuration)
    }

    func makeClientContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.trustRoots = trustRoots
        configuration.certificateVerification = .fullVerification
        configuration.certificateChain = certificateChain.map { .certificate($0) }
        configuration.privateKey = .privateKey(privateKey)
        return try NIOSSLContext(configuration: configuration)
    }
}
