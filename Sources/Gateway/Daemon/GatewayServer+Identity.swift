import CloudUplink
import DeviceTrust
public import Foundation
import Logging
import SIPTransport

/// Keeping the device identity alive (issue 17, docs/GATEWAY.md "Certificates for the life of
/// the device"): renewal at two thirds of the certificate's life — at once for a certificate
/// without site binding, and on demand (SIGUSR1) — over the current identity's mutual TLS; the
/// revocation list the mesh needs, fetched every hour and kept on disk; the certificate's end
/// on MQTT (`info`, and an alarm in `status` from 30 days before).
extension GatewayServer {
    /// How often the upkeep looks at the clock, and how the clock is read (tests inject one).
    public struct IdentityUpkeep: Sendable {
        public var clock: @Sendable () -> Date = { Date() }
        /// Renewal is due at a point in time; this is how soon after it the gateway notices.
        public var checkEvery: Duration = .seconds(600)
        public var revocationsEvery: Duration = .seconds(3600)
        /// After a failed renewal, the next try.
        public var retryEvery: Duration = .seconds(900)

        public init() {}
    }

    /// Asks for a renewal now (SIGUSR1 under `symphony-bridge run`).
    public func renewCertificate() {
        uplink.renewalAsked = true
    }

    func runIdentityUpkeep(_ start: DeviceIdentity, registration: CloudRegistration) async {
        var identity = start
        var renewalError: String?
        var nextRenewalTry = upkeep.clock()
        var lastRevocations: ContinuousClock.Instant?
        await status?.certificate(expiresAt: identity.notAfter, renewalDue: identity.renewalDue, renewalError: nil, now: upkeep.clock())
        if identity.binding == nil {
            logger.notice("the device certificate names no site (issued before site binding): renewing it now; the mesh waits for the new one")
        }
        // A key waiting in device-key.next.pem: a renewal was cut short (its answer lost, the
        // daemon stopped) — and the core may already have revoked the certificate in use.
        var asked = FileManager.default.fileExists(atPath: DeviceIdentity.files(in: configuration.stateDirectory).nextKey)
        while !Task.isCancelled {
            let now = upkeep.clock()
            if (now >= identity.renewalDue || asked), now >= nextRenewalTry {
                switch await renew(identity) {
                case .success(let renewed):
                    identity = renewed
                    renewalError = nil
                    asked = false
                    await use(renewed, registration: registration)
                case .failure(let error):
                    renewalError = "\(error)"
                    nextRenewalTry = now.addingTimeInterval(Double(upkeep.retryEvery.components.seconds))
                    logger.warning("certificate renewal failed: \(error); next try in \(upkeep.retryEvery)", metadata: ["expires": "\(identity.notAfter)"])
                }
            }
            // Said again at every look: the days left change without a renewal.
            await status?.certificate(expiresAt: identity.notAfter, renewalDue: identity.renewalDue, renewalError: renewalError, now: upkeep.clock())
            if lastRevocations.map({ ContinuousClock.now - $0 >= upkeep.revocationsEvery }) ?? true {
                if await fetchRevocations(identity) { lastRevocations = .now } else { lastRevocations = .now - upkeep.revocationsEvery + .seconds(60) }
            }
            // Sleep until the next look, or until a renewal is asked for (looked at every second).
            let wake = ContinuousClock.now + upkeep.checkEvery
            while ContinuousClock.now < wake, !uplink.renewalAsked, !Task.isCancelled {
                try? await Task.sleep(for: min(.seconds(1), wake - ContinuousClock.now))
            }
            if uplink.renewalAsked {
                uplink.renewalAsked = false
                logger.notice("certificate renewal asked for")
                asked = true
                nextRenewalTry = upkeep.clock()
            }
        }
    }

    /// A new certificate for a new key: the key waits in `device-key.next.pem` until the answer
    /// is stored (a retry after a lost answer asks for the same key and gets the same certificate).
    private func renew(_ identity: DeviceIdentity) async -> Result<DeviceIdentity, ClaimingError> {
        // Where the cloud said to renew, else (or when that is not reachable from here: a core
        // behind a port forward) the origin of the claim URL.
        let services = [identity.service, configuration.claimURL.map(ClaimingClient.origin)].compactMap { $0 }.reduce(into: [String]()) {
            if !$0.contains($1) { $0.append($1) }
        }
        guard !services.isEmpty else { return .failure(.unreachable("the cloud named no claiming service and [cloud] claim_url is unset")) }
        var lastError = ClaimingError.unreachable("no claiming service")
        for service in services {
            do {
                let key = try DeviceIdentity.nextKey(in: configuration.stateDirectory)
                let csr = try DeviceIdentity.request(for: key, hint: identity.device)
                let answer = try await ClaimingClient.renew(service: service, csrPEM: csr, identity: identity, caFile: configuration.cloudCAFile ?? identity.caFile)
                guard answer.device == identity.device else { return .failure(.badAnswer("the renewed certificate is for \(answer.device), not \(identity.device)")) }
                let renewed: DeviceIdentity
                do {
                    renewed = try DeviceIdentity.store(key: key, answer: answer, in: configuration.stateDirectory)
                } catch {
                    // Cut short on the disk (full, failing): what is there now, `load` repairs.
                    guard let stored = try? DeviceIdentity.load(from: configuration.stateDirectory), stored.serial != identity.serial else { throw error }
                    renewed = stored
                }
                logger.notice("device certificate renewed", metadata: ["expires": "\(renewed.notAfter)", "site": "\(renewed.binding?.description ?? "none")"])
                return .success(renewed)
            } catch let error as ClaimingError {
                lastError = error
                guard case .unreachable = error else { return .failure(error) }
            } catch {
                return .failure(.unreachable("\(error)"))
            }
        }
        return .failure(lastError)
    }

    /// The renewed identity in use: TLS for the cloud and the mesh, a new flow to the cloud (the
    /// core no longer accepts the old certificate), the mesh's idea of our site.
    private func use(_ identity: DeviceIdentity, registration: CloudRegistration) async {
        do {
            try await cloudEndpoint.useTLS(SIPTLSSettings(
                certificateFile: identity.certificateFile, keyFile: identity.keyFile, caFile: configuration.cloudCAFile ?? identity.caFile))
            if let meshEndpoint, uplink.discovery != nil { try await meshEndpoint.useTLS(try Self.meshTLS(identity)) }
        } catch {
            logger.error("the renewed identity cannot be loaded: \(error)")
            return
        }
        await registration.reconnect("the device certificate was renewed")
        await router.setMeshTrust(Self.meshTrust(identity, Self.storedRevocations(in: configuration.stateDirectory)))
        identityKnown.yield(identity)
        _ = await fetchRevocations(identity)
    }

    /// Fetches the revocation list, keeps it on disk (the mesh needs it while the cloud is away)
    /// and hands it to the router. False when it could not be fetched.
    private func fetchRevocations(_ identity: DeviceIdentity) async -> Bool {
        guard let service = identity.service ?? configuration.claimURL.map(ClaimingClient.origin) else { return false }
        do {
            let list = try await ClaimingClient.revocations(service: service, identity: identity, caFile: configuration.cloudCAFile ?? identity.caFile)
            let file = DeviceIdentity.files(in: configuration.stateDirectory).revocations
            do { try AtomicFile.write(ClaimWire.encode(list), to: file, mode: 0o600) } catch { logger.warning("revocation list not kept: \(error)") }
            await applyRevocations(list, identity: identity)
            return true
        } catch {
            logger.info("revocation list not fetched: \(error); the last one stays in force")
            return false
        }
    }

    private func applyRevocations(_ list: RevocationList?, identity: DeviceIdentity) async {
        await router.setMeshTrust(Self.meshTrust(identity, list))
    }

    /// Who may take part in the mesh for `identity`: its site, the serials `list` revokes.
    static func meshTrust(_ identity: DeviceIdentity, _ list: RevocationList?) -> MeshTrust {
        MeshTrust(site: identity.binding, revoked: Set((list?.serials ?? []).prefix(RevocationList.maxEntries).map(DeviceCertificateName.canonicalSerial)))
    }

    static func storedRevocations(in stateDirectory: String) -> RevocationList? {
        let file = DeviceIdentity.files(in: stateDirectory).revocations
        guard let bytes = FileManager.default.contents(atPath: file) else { return nil }
        return try? ClaimWire.decode(RevocationList.self, from: Array(bytes))
    }

    /// Mutual TLS for the mesh: our device certificate, the core's CA; peers are at link-local
    /// addresses, so their certificates are checked by `MeshTrust`, not by host name.
    static func meshTLS(_ identity: DeviceIdentity) throws -> SIPTLSSettings {
        var tls = try SIPTLSSettings(certificateFile: identity.certificateFile, keyFile: identity.keyFile, caFile: identity.caFile, clientCertificates: .required)
        tls.verifiesServerName = false
        return tls
    }
}
