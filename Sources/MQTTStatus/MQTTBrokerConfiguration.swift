import Foundation
public import TOMLConfig

/// The `[mqtt]` keys both daemons share: the broker, TLS, credentials and the topic prefix,
/// read and checked in one place, and turned into connection settings (the password read from
/// its file here, never kept in the config nor logged).
public struct MQTTBrokerConfiguration: Sendable, Equatable {
    /// Unset: no MQTT.
    public var host: String?
    public var port = 1883
    public var tls = false
    /// With `tls`: the CA the broker's certificate must chain to; the system's roots when unset.
    public var caFile: String?
    public var username: String?
    public var passwordFile: String?
    public var topicPrefix: String

    public init(topicPrefix: String) {
        self.topicPrefix = topicPrefix
    }

    /// Reads the shared keys of `table`; the caller reads its own and then finishes the table.
    public static func read(_ table: ConfigTable, defaultPrefix: String) -> MQTTBrokerConfiguration {
        var c = MQTTBrokerConfiguration(topicPrefix: defaultPrefix)
        c.host = table.string("host")
        c.tls = table.bool("tls") ?? false
        c.port = table.int("port", in: 1...65535) ?? (c.tls ? 8883 : 1883)
        c.caFile = table.string("ca_file")
        if c.caFile != nil, !c.tls { table.reject("ca_file", "a CA file needs tls = true") }
        c.username = table.string("username")
        c.passwordFile = table.string("password_file")
        if c.passwordFile != nil, c.username == nil { table.reject("password_file", "a password file needs a username") }
        if let prefix = table.string("topic_prefix") {
            if isTopicLevels(prefix) { c.topicPrefix = prefix } else {
                table.reject("topic_prefix", "\"\(prefix)\": a topic without wildcards (#, +) or a trailing /")
            }
        }
        return c
    }

    /// What to warn about at start (and in `check-config`) when status, call events and perhaps
    /// the broker password would cross a network in plaintext: TLS off toward a broker that is
    /// not on this machine. Nil when there is nothing to say.
    public var plaintextWarning: String? {
        guard let host, !tls, !Self.isLoopback(host) else { return nil }
        let what = username != nil ? "the broker password and the gateway's call status" : "the gateway's call status"
        return "MQTT to \(host):\(port) is not encrypted: \(what) cross the network in plaintext; set [mqtt] tls = true (with ca_file for a private CA)"
    }

    static func isLoopback(_ host: String) -> Bool {
        let host = host.lowercased()
        return host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.") || host.hasSuffix(".localhost")
    }

    /// A topic (one or more levels) fit to publish under: no wildcard, no empty end.
    public static func isTopicLevels(_ text: String) -> Bool {
        !text.isEmpty && !text.contains("#") && !text.contains("+") && !text.hasSuffix("/")
    }

    public enum SettingsError: Error, CustomStringConvertible {
        case unreadablePasswordFile(String)

        public var description: String {
            switch self { case .unreadablePasswordFile(let file): "MQTT password file \(file) cannot be read" }
        }
    }

    /// Connection settings, or nil without a host.
    public func connectionSettings(clientID: String, will: (topic: String, payload: String, retain: Bool)?) throws(SettingsError) -> MQTTConnection.Settings? {
        guard let host else { return nil }
        var settings = MQTTConnection.Settings(host: host, port: port, clientID: clientID)
        settings.tls = tls
        settings.caFile = caFile
        settings.username = username
        if let passwordFile {
            guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else { throw .unreadablePasswordFile(passwordFile) }
            settings.password = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        settings.will = will
        return settings
    }
}
