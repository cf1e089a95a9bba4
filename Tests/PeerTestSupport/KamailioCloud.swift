import Crypto
import Foundation

/// The reference production cloud of issue 19 as a test peer: Debian's Kamailio 5.6 started
/// with the project's own `etc/kamailio/kamailio.cfg` (its values given with `-A`), a db_text
/// database of subscribers and trunk numbers in the scratch directory, a server certificate for
/// localhost/127.0.0.1 from a test CA (which also signs the client certificates it accepts),
/// and Debian's rtpengine anchoring the media (userspace, its ng port on loopback).
public final class KamailioCloud: @unchecked Sendable {
    public let tlsPort: Int
    public let domain: String
    public let certificates: TestCertificates
    public let kamailio: PeerProcess
    public let rtpengine: RTPEngine?
    public let scratch: ScratchDirectory

    /// The project's checkout (the shipped configuration lives in etc/kamailio).
    static let project = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")

    /// - Parameters:
    ///   - subscribers: digest accounts (user, password) of `domain`.
    ///   - numbers: trunk numbers: number → the trunk account that serves it.
    public static func start(
        in scratch: ScratchDirectory, domain: String = "cloud.test", subscribers: [(String, String)], numbers: [String: String] = [:],
        rtpPorts: ClosedRange<Int> = 36000...36999, mediaAnchor: Bool = true
    ) async throws -> KamailioCloud {
        let certificates = try await TestCertificates.make(in: scratch, name: "kamailio")
        let db = scratch.path("kamailio-db")
        try FileManager.default.createDirectory(atPath: db, withIntermediateDirectories: true)
        for table in ["version", "subscriber", "htable"] {
            var text = try String(contentsOfFile: project + "/etc/kamailio/db/" + table, encoding: .utf8)
            switch table {
            case "subscriber":
                for (index, (user, password)) in subscribers.enumerated() {
                    text += "\(index + 1):\(user):\(domain):-:\(md5("\(user):\(domain):\(password)")):\(md5("\(user)@\(domain):\(domain):\(password)"))\n"
                }
            case "htable": for (index, (number, account)) in numbers.sorted(by: { $0.key < $1.key }).enumerated() { text += "\(index + 1):\(number):0:0:\(account):0\n" }
            default: break
            }
            try text.write(toFile: db + "/" + table, atomically: true, encoding: .utf8)
        }
        let tls = try String(contentsOfFile: project + "/etc/kamailio/tls.cfg", encoding: .utf8)
            .replacingOccurrences(of: "/etc/kamailio/server-key.pem", with: certificates.keyFile)
            .replacingOccurrences(of: "/etc/kamailio/server.pem", with: certificates.certificateFile)
            .replacingOccurrences(of: "/etc/kamailio/ca.pem", with: certificates.caFile)
        try scratch.write("kamailio-tls.cfg", tls)

        let rtpengine = mediaAnchor ? try await RTPEngine(ports: rtpPorts) : nil
        let ngPort = rtpengine?.ngPort ?? 9
        try FileManager.default.createDirectory(atPath: scratch.path("kamailio-run"), withIntermediateDirectories: true)
        let tlsPort = try freePort()
        // Under `setsid --wait`: with Kamailio as its direct child, the test process stopped
        // reaping its children (Foundation's Process: the killed Kamailio stayed a zombie and
        // `waitUntilExit` never returned); in a session of its own, its group is easy to end.
        let kamailio = try PeerProcess("setsid", [
            "--wait", "kamailio", "-DD", "-E", "-f", project + "/etc/kamailio/kamailio.cfg",
            "-A", "LISTEN_TLS=tls:127.0.0.1:\(tlsPort)", "-A", "SIP_DOMAIN=\(domain)",
            "-A", "DB_URL=\"text://\(db)\"", "-A", "TLS_CONFIG=\"\(scratch.path("kamailio-tls.cfg"))\"",
            "-A", "RTPENGINE=\"udp:127.0.0.1:\(ngPort)\"",
            "-P", scratch.path("kamailio.pid"), "-Y", scratch.path("kamailio-run"),
        ])
        let cloud = KamailioCloud(tlsPort: tlsPort, domain: domain, certificates: certificates, kamailio: kamailio, rtpengine: rtpengine, scratch: scratch)
        do {
            try await waitUntilListening(port: tlsPort, udp: false, timeout: .seconds(15))
        } catch {
            cloud.stop()
            throw PeerError("Kamailio did not listen on \(tlsPort): \(error)\n\(kamailio.text.suffix(3000))")
        }
        return cloud
    }

    init(tlsPort: Int, domain: String, certificates: TestCertificates, kamailio: PeerProcess, rtpengine: RTPEngine?, scratch: ScratchDirectory) {
        self.tlsPort = tlsPort
        self.domain = domain
        self.certificates = certificates
        self.kamailio = kamailio
        self.rtpengine = rtpengine
        self.scratch = scratch
    }

    /// A client certificate of the test CA whose common name is `name` (a device's, for `auth = "certificate"`).
    public func clientCertificate(_ name: String) async throws -> (certificate: String, key: String) {
        let made = try await TestCertificates.make(in: scratch, name: name)
        return (made.certificateFile, made.keyFile)
    }

    /// What Kamailio logged (route[AUTH]'s refusals, module errors).
    public var log: String { kamailio.text }

    /// SIGKILL to Kamailio's process group (its main process, from the pid file, leads it): the
    /// test runner's blocked signals are inherited, so a SIGTERM would only wait.
    public func stop() {
        let pidText = (try? String(contentsOfFile: scratch.path("kamailio.pid"), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let pid = pidText.flatMap({ Int32($0) }), pid > 1 {
            kill(-pid, SIGKILL)
            try? FileManager.default.removeItem(atPath: scratch.path("kamailio.pid"))
        }
        kamailio.stop()
        rtpengine?.stop()
    }

    deinit { stop() }
}

/// Hex MD5, as digest's HA1 is kept.
func md5(_ text: String) -> String {
    Insecure.MD5.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
}
