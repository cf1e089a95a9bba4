public import NIOSSL

/// TLS for SIPS (RFC 3261 §26.2, RFC 5630): one identity used as server certificate and as
/// client certificate, trust roots for the peer, and whether a server demands a client
/// certificate (mutual TLS). Certificate verification is always on.
public struct SIPTLSSettings: Sendable {
    public var certificateChain: [NIOSSLCertificate]
    /// Nil for a client without a certificate of its own (a softphone that authenticates by
    /// digest or token, not by mutual TLS).
    public var privateKey: NIOSSLPrivateKey?
    public var trustRoots: NIOSSLTrustRoots
    /// What a server asks of its clients' certificates.
    public enum ClientCertificatePolicy: Sendable {
        /// No client certificate is asked for.
        case none
        /// Asked for and verified against `trustRoots` when sent; clients without one connect
        /// too (the cloud core: gateways present device certificates, softphones do not).
        case optional
        /// Peers without a certificate from `trustRoots` are refused in the handshake.
        case required
    }

    public var clientCertificates: ClientCertificatePolicy
    /// Whether a client checks the server's name (or IP address) against its certificate. Off
    /// only where the name proves nothing and the certificate is checked by its contents instead:
    /// mesh peers at link-local addresses, whose device name the caller compares itself.
    public var verifiesServerName = true
    public var requireClientCertificate: Bool { clientCertificates == .required }

    public init(
        certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey, trustRoots: NIOSSLTrustRoots,
        requireClientCertificate: Bool = false
    ) {
        self.init(certificateChain: certificateChain, privateKey: privateKey, trustRoots: trustRoots,
                  clientCertificates: requireClientCertificate ? .required : .none)
    }

    public init(
        certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey, trustRoots: NIOSSLTrustRoots,
        clientCertificates: ClientCertificatePolicy
    ) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.trustRoots = trustRoots
        self.clientCertificates = clientCertificates
    }

    /// Loads PEM files: the certificate chain (leaf first), its key, and the CA file to trust.
    public init(certificateFile: String, keyFile: String, caFile: String, requireClientCertificate: Bool = false) throws {
        try self.init(certificateFile: certificateFile, keyFile: keyFile, caFile: caFile,
                      clientCertificates: requireClientCertificate ? .required : .none)
    }

    public init(certificateFile: String, keyFile: String, caFile: String, clientCertificates: ClientCertificatePolicy) throws {
        self.init(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificateFile),
            privateKey: try NIOSSLPrivateKey(file: keyFile, format: .pem),
            trustRoots: .file(caFile),
            clientCertificates: clientCertificates)
    }

    /// A client that only verifies the server against `caFile` and presents no certificate.
    public init(trustingCAFile caFile: String) {
        self.init(trusting: .file(caFile))
    }

    /// A client that verifies the server against `trustRoots` (`.default`: the system's CA
    /// store, for a public SIP provider) and presents no certificate.
    public init(trusting trustRoots: NIOSSLTrustRoots) {
        self.certificateChain = []
        self.privateKey = nil
        self.trustRoots = trustRoots
        self.clientCertificates = .none
    }

    func makeServerContext() throws -> NIOSSLContext {
        guard let privateKey, !certificateChain.isEmpty else { throw NIOSSLError.failedToLoadPrivateKey }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificateChain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = .tlsv12
        configuration.trustRoots = trustRoots
        // A server cannot check a client's host name; it checks the chain.
        switch clientCertificates {
        case .none: configuration.certificateVerification = .none
        case .optional: configuration.certificateVerification = .optionalVerification
        case .required: configuration.certificateVerification = .noHostnameVerification
        }
        return try NIOSSLContext(configuration: configuration)
    }

    func makeClientContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.trustRoots = trustRoots
        configuration.certificateVerification = verifiesServerName ? .fullVerification : .noHostnameVerification
        configuration.certificateChain = certificateChain.map { .certificate($0) }
        configuration.privateKey = privateKey.map { .privateKey($0) }
        return try NIOSSLContext(configuration: configuration)
    }
}
