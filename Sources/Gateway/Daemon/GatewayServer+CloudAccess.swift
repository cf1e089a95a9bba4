import CloudUplink
import Foundation
import Logging
import NIOCore
import NIOSSL
import SIP
import SIPTransport
import X509

/// A cloud without the project's claiming (issue 19, docs/GATEWAY.md "Any standards-based SIP
/// cloud"): the operator's certificate and key (mutual TLS), or digest credentials over TLS;
/// the channels' own accounts or one trunk account; an outbound proxy.
extension GatewayServer {
    /// What the gateway presents to a cloud it was not claimed at, read from the files `[cloud]`
    /// names. A file that cannot be read is an error with its name and key; nothing is logged
    /// of its contents.
    struct ConfiguredCredentials: Sendable {
        var tls: SIPTLSSettings
        var digest: DigestCredentials?
        /// The certificate's end (certificate mode), for `info` and the 30-day alarm.
        var notAfter: Date?
    }

    static func configuredCredentials(_ config: BridgeConfiguration) -> Result<ConfiguredCredentials, CredentialsError> {
        let roots: NIOSSLTrustRoots = config.cloudCAFile.map { .file($0) } ?? .default
        if let ca = config.cloudCAFile, !FileManager.default.isReadableFile(atPath: ca) {
            return .failure(CredentialsError(key: "cloud.ca_file", file: ca, problem: "cannot be read"))
        }
        switch config.cloudAccess.authentication {
        case .claim:
            return .failure(CredentialsError(key: "cloud.auth", file: "", problem: "a claimed gateway's identity comes from claiming"))
        case .certificate(let certificateFile, let keyFile):
            let chain: [NIOSSLCertificate]
            do { chain = try NIOSSLCertificate.fromPEMFile(certificateFile) } catch {
                return .failure(CredentialsError(key: "cloud.certificate_file", file: certificateFile, problem: "is not a PEM certificate (\(error))"))
            }
            guard !chain.isEmpty else { return .failure(CredentialsError(key: "cloud.certificate_file", file: certificateFile, problem: "holds no certificate")) }
            let key: NIOSSLPrivateKey
            do { key = try NIOSSLPrivateKey(file: keyFile, format: .pem) } catch {
                return .failure(CredentialsError(key: "cloud.key_file", file: keyFile, problem: "is not a PEM private key, or cannot be read"))
            }
            // The pair must match: else every handshake would fail with a reason far from the cause.
            let leaf = try? Certificate(derEncoded: chain[0].toDERBytes())
            if let leaf, let text = try? String(contentsOfFile: keyFile, encoding: .utf8), let parsed = try? Certificate.PrivateKey(pemEncoded: text),
                parsed.publicKey != leaf.publicKey
            {
                return .failure(CredentialsError(key: "cloud.key_file", file: keyFile, problem: "does not belong to the certificate in \(certificateFile)"))
            }
            if let leaf, leaf.notValidAfter < Date() {
                return .failure(CredentialsError(key: "cloud.certificate_file", file: certificateFile, problem: "expired on \(leaf.notValidAfter)"))
            }
            return .success(ConfiguredCredentials(
                tls: SIPTLSSettings(certificateChain: chain, privateKey: key, trustRoots: roots), digest: nil, notAfter: leaf?.notValidAfter))
        case .digest(let username, let passwordFile):
            guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                return .failure(CredentialsError(key: "cloud.password_file", file: passwordFile, problem: "cannot be read"))
            }
            let password = text.trimmingCharacters(in: .newlines)
            guard !password.isEmpty, password.count <= 256, !password.contains("\n") else {
                return .failure(CredentialsError(key: "cloud.password_file", file: passwordFile, problem: "must hold the password on one line (1–256 characters)"))
            }
            return .success(ConfiguredCredentials(tls: SIPTLSSettings(trusting: roots), digest: DigestCredentials(username: username, password: password), notAfter: nil))
        }
    }

    struct CredentialsError: Error, Sendable, CustomStringConvertible {
        var key: String
        var file: String
        var problem: String
        var description: String { file.isEmpty ? "\(key): \(problem)" : "\(key) \"\(file)\" \(problem)" }
    }

    /// The domain of a cloud without claiming: `[cloud] domain`, else the server's host.
    static func configuredDomain(_ config: BridgeConfiguration) -> String {
        config.cloudAccess.domain ?? config.cloudServer?.host ?? "localhost"
    }

    /// RFC 3263 lookups for where the flow goes — the `[cloud] outbound_proxy` if there is one,
    /// else the `server` — when it is a name without a port (`SIPServerLocator`); nil for an
    /// address or a name with its port (connected as it is).
    static func locator(_ config: BridgeConfiguration, resolver: DNSStubResolver) -> (@Sendable () async throws -> [SIPDestination])? {
        let access = config.cloudAccess
        guard let target = access.outboundProxy ?? config.cloudServer, !(access.outboundProxy != nil ? access.outboundProxyHasPort : config.cloudServerHasPort),
            (try? SocketAddress(ipAddress: target.host, port: 0)) == nil
        else { return nil }
        let locator = SIPServerLocator(resolver: resolver)
        return { try await locator.locate(host: target.host, port: nil) }
    }

    /// `<sips:proxy:port;lr>` for `[cloud] outbound_proxy` (`<sips:proxy;lr>` for one named
    /// without a port: RFC 3263 finds it).
    static func outboundRoute(_ config: BridgeConfiguration) -> String? {
        config.cloudAccess.outboundProxy.map { proxy in
            let host = proxy.host.contains(":") ? "[\(proxy.host)]" : proxy.host
            return config.cloudAccess.outboundProxyHasPort ? "<sips:\(host):\(proxy.port);lr>" : "<sips:\(host);lr>"
        }
    }

    /// Loads the configured credentials into TLS and makes the registration (started by the
    /// caller); nil, with the reason in the log and on `cloud`, when they cannot be used.
    func registerWithConfiguredCredentials() async -> CloudRegistration? {
        let config = configuration
        let device = config.gatewayID, domain = Self.configuredDomain(config)
        await router.setIdentity(device: device, domain: domain)
        let credentials: ConfiguredCredentials
        switch configuredCredentials ?? Self.configuredCredentials(config) {
        case .success(let loaded): credentials = loaded
        case .failure(let error):
            logger.error("the cloud credentials cannot be used: \(error). The gateway stays up without the cloud (legacy calls get 503); fix the file and restart.")
            await status?.claim(claimed: false, error: "credentials unusable: \(error)")
            return nil
        }
        do {
            try await cloudEndpoint.useTLS(credentials.tls)
        } catch {
            logger.error("the cloud TLS settings cannot be used: \(error)")
            await status?.claim(claimed: false, error: "TLS unusable: \(error)")
            return nil
        }
        if let notAfter = credentials.notAfter {
            await status?.certificate(expiresAt: notAfter, renewalDue: notAfter.addingTimeInterval(-30 * 86400), renewalError: nil, now: Date())
        }
        await status?.claim(claimed: true, error: nil)
        guard let server = config.cloudServer else { return nil }
        let accounts = CloudAccounts(registration: config.cloudAccess.registration, device: device, trunkAccount: config.cloudAccess.trunkAccount)
        let target = config.cloudAccess.outboundProxy ?? server
        var destination = SIPDestination(transport: .tls, host: target.host, port: target.port)
        destination.serverName = target.host
        var settings = CloudRegistration.Settings(
            server: destination, domain: domain, addressesOfRecord: accounts.addressesOfRecord(config.channels), instance: Self.instanceID(in: config.stateDirectory))
        settings.keepAlive = .seconds(config.keepaliveSeconds)
        settings.backoff = ReconnectBackoff(base: .seconds(1), ceiling: .seconds(15))
        settings.credentials = credentials.digest
        settings.route = Self.outboundRoute(config)
        settings.locate = Self.locator(config, resolver: resolver)
        logger.notice("cloud without claiming", metadata: [
            "auth": "\(config.cloudAccess.authentication.name)", "registration": "\(config.cloudAccess.registration.rawValue)",
            "accounts": "\(settings.addressesOfRecord.joined(separator: ","))", "domain": "\(domain)", "via": "\(target)",
        ])
        let registration = CloudRegistration(endpoint: cloudEndpoint, settings: settings, logger: component(logger, "cloud-uplink"))
        uplink.registration = registration
        uplink.device = device
        return registration
    }
}
