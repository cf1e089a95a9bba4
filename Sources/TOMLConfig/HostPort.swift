/// An address in a configuration file: `host`, `host:port`, `[IPv6]` or `[IPv6]:port`. A zone
/// id (`%eth0`) is never accepted: the interface names it, not the address
/// (../shared/ARCHITECTURE.md). Both daemons' schemas build on it.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `text`; without a port it takes `defaultPort`, and without that it is refused.
    public init?(_ text: String, defaultPort: Int? = nil) {
        var host = Substring(text)
        var port = defaultPort
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let number = Int(rest.dropFirst()) else { return nil }
                port = number
            }
        } else if let colon = text.lastIndex(of: ":") {
            guard !text[..<colon].contains(":"), let number = Int(text[text.index(after: colon)...]) else { return nil }
            host = text[..<colon]
            port = number
        }
        guard !host.isEmpty, !host.contains("%"), let port, (0...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
    }

    /// `1.2.3.4:5060` or `[::1]:5060`.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
