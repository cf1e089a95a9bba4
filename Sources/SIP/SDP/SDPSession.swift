/// A session description (RFC 4566 / RFC 8866 §5): the lines the offer/answer model needs typed,
/// every other line kept verbatim and in order so that nothing a peer sends is lost.
public struct SDPSession: Sendable, Equatable {
    /// `o=` (RFC 4566 §5.2).
    public struct Origin: Sendable, Equatable {
        public var username: String
        public var sessionID: String
        public var sessionVersion: UInt64
        public var networkType: String
        public var addressType: String
        public var address: String

        public init(username: String = "-", sessionID: String, sessionVersion: UInt64, addressType: String, address: String) {
            self.username = username
            self.sessionID = sessionID
            self.sessionVersion = sessionVersion
            self.networkType = "IN"
            self.addressType = addressType
            self.address = address
        }
    }

    /// `c=` (RFC 4566 §5.7). Multicast TTL/count suffixes stay part of `address`.
    public struct Connection: Sendable, Equatable {
        public var networkType: String
        public var addressType: String
        public var address: String

        public init(address: String) {
            self.networkType = "IN"
            self.addressType = address.contains(":") ? "IP6" : "IP4"
            self.address = address
        }

        public init(networkType: String, addressType: String, address: String) {
            self.networkType = networkType
            self.addressType = addressType
            self.address = address
        }
    }

    /// Any line the model does not type, as `type=value`.
    public struct Line: Sendable, Equatable {
        public var type: Character
        public var value: String

        public init(type: Character, value: String) {
            self.type = type
            self.value = value
        }
    }

    public var origin: Origin
    public var sessionName: String
    public var connection: Connection?
    /// `b=`, `t=`, `r=`, `z=`, `k=`, `i=`, `u=`, `e=`, `p=` lines of the session, in order.
    public var otherLines: [Line]
    public var attributes: [SDPAttribute]
    public var media: [SDPMedia]

    public init(
        origin: Origin, sessionName: String = "-", connection: Connection? = nil,
        otherLines: [Line] = [Line(type: "t", value: "0 0")], attributes: [SDPAttribute] = [], media: [SDPMedia] = []
    ) {
        self.origin = origin
        self.sessionName = sessionName
        self.connection = connection
        self.otherLines = otherLines
        self.attributes = attributes
        self.media = media
    }
}

/// `a=name` or `a=name:value` (RFC 4566 §5.13).
public struct SDPAttribute: Sendable, Equatable {
    public var name: String
    public var value: String?

    public init(_ name: String, _ value: String? = nil) {
        self.name = name
        self.value = value
    }
}

/// One `m=` section.
public struct SDPMedia: Sendable, Equatable {
    public var type: String
    public var port: Int
    /// The `/<number of ports>` suffix, if any.
    public var portCount: Int?
    public var proto: String
    /// Formats: payload type numbers for RTP profiles.
    public var formats: [String]
    public var connection: SDPSession.Connection?
    /// `i=`, `b=`, `k=` lines of this media section, in order.
    public var otherLines: [SDPSession.Line]
    public var attributes: [SDPAttribute]

    public init(
        type: String, port: Int, portCount: Int? = nil, proto: String, formats: [String],
        connection: SDPSession.Connection? = nil, otherLines: [SDPSession.Line] = [], attributes: [SDPAttribute] = []
    ) {
        self.type = type
        self.port = port
        self.portCount = portCount
        self.proto = proto
        self.formats = formats
        self.connection = connection
        self.otherLines = otherLines
        self.attributes = attributes
    }

    public func attributes(named name: String) -> [String] {
        attributes.compactMap { $0.name == name ? ($0.value ?? "") : nil }
    }

    public func hasAttribute(_ name: String) -> Bool { attributes.contains { $0.name == name } }

    /// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]` for one payload type (RFC 4566 §6).
    public func rtpmap(for payloadType: Int) -> SDPRTPMap? {
        for value in attributes(named: "rtpmap") {
            if let map = SDPRTPMap(attributeValue: value), map.payloadType == payloadType { return map }
        }
        return nil
    }

    /// The `a=fmtp` parameters of one payload type, as written.
    public func fmtp(for payloadType: Int) -> String? {
        let prefix = "\(payloadType) "
        for value in attributes(named: "fmtp") where value.hasPrefix(prefix) {
            return String(value.dropFirst(prefix.count)).trimmingCharacters(in: " \t")
        }
        return nil
    }

    /// The RTP payload formats of this section with their rtpmap, static types resolved from the
    /// RFC 3551 table when no rtpmap is given. Each payload type once (the first rtpmap for it
    /// wins), in the order of the m-line; linear in the section's size, however many formats
    /// and attributes a peer crams into it.
    public var payloadFormats: [SDPRTPMap] {
        var maps = [SDPRTPMap?](repeating: nil, count: 128)
        for attribute in attributes where attribute.name == "rtpmap" {
            guard let value = attribute.value, let map = SDPRTPMap(attributeValue: value), maps[map.payloadType] == nil else { continue }
            maps[map.payloadType] = map
        }
        var seen = [Bool](repeating: false, count: 128)
        var result: [SDPRTPMap] = []
        for format in formats {
            guard format.utf8.count <= 3, let pt = Int(format), (0...127).contains(pt), !seen[pt] else { continue }
            seen[pt] = true
            if let map = maps[pt] ?? SDPRTPMap.staticPayloadType(pt) { result.append(map) }
        }
        return result
    }

    /// The direction attribute (RFC 3264 §5.1), `sendrecv` when none is given.
    public var direction: SDPDirection {
        for attribute in attributes {
            if let direction = SDPDirection(rawValue: attribute.name) { return direction }
        }
        return .sendrecv
    }

    public mutating func setDirection(_ direction: SDPDirection) {
        attributes.removeAll { SDPDirection(rawValue: $0.name) != nil }
        attributes.append(SDPAttribute(direction.rawValue))
    }

    /// The stream's direction as its sender meant it: the media-level attribute, else the
    /// session-level one, else `sendrecv` (RFC 3264 §5.1). A connection address of 0.0.0.0 (the
    /// RFC 2543 hold, RFC 3264 §8.4) means the sender receives nothing, whatever it says.
    public func effectiveDirection(in session: SDPSession) -> SDPDirection {
        let stated = attributes.lazy.compactMap { SDPDirection(rawValue: $0.name) }.first
            ?? session.attributes.lazy.compactMap { SDPDirection(rawValue: $0.name) }.first
            ?? .sendrecv
        guard let address = (connection ?? session.connection)?.address, address == "0.0.0.0" || address == "::" else { return stated }
        return stated.sends ? .sendonly : .inactive
    }
}

/// The four direction attributes of RFC 3264 §5.1.
public enum SDPDirection: String, Sendable, CaseIterable {
    case sendrecv, sendonly, recvonly, inactive

    /// What an answer says to an offer with this direction, when the answerer would do both
    /// (RFC 3264 §6.1).
    public var answer: SDPDirection {
        switch self {
        case .sendrecv: .sendrecv
        case .sendonly: .recvonly
        case .recvonly: .sendonly
        case .inactive: .inactive
        }
    }

    public var sends: Bool { self == .sendrecv || self == .sendonly }
    public var receives: Bool { self == .sendrecv || self == .recvonly }

    /// The direction that sends and receives as said.
    public init(sends: Bool, receives: Bool) {
        switch (sends, receives) {
        case (true, true): self = .sendrecv
        case (true, false): self = .sendonly
        case (false, true): self = .recvonly
        case (false, false): self = .inactive
        }
    }

    /// This direction within what `other` allows (an answer never widens the offer, §6.1).
    public func restricted(to other: SDPDirection) -> SDPDirection {
        SDPDirection(sends: sends && other.sends, receives: receives && other.receives)
    }
}

/// An `a=rtpmap` value. Encoding names compare case-insensitively (RFC 4855 §3).
public struct SDPRTPMap: Sendable, Equatable {
    public var payloadType: Int
    public var encoding: String
    public var clockRate: Int
    public var channels: Int

    public init(payloadType: Int, encoding: String, clockRate: Int, channels: Int = 1) {
        self.payloadType = payloadType
        self.encoding = encoding
        self.clockRate = clockRate
        self.channels = channels
    }

    public init?(attributeValue: String) {
        let parts = attributeValue.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, let pt = Int(parts[0]), (0...127).contains(pt) else { return nil }
        let fields = parts[1].trimmingCharacters(in: " \t").split(separator: "/")
        guard fields.count >= 2, let clock = Int(fields[1]), clock > 0 else { return nil }
        var channels = 1
        if fields.count >= 3 {
            guard let c = Int(fields[2]), c > 0 else { return nil }
            channels = c
        }
        self.init(payloadType: pt, encoding: String(fields[0]), clockRate: clock, channels: channels)
    }

    public var attributeValue: String {
        channels == 1 ? "\(payloadType) \(encoding)/\(clockRate)" : "\(payloadType) \(encoding)/\(clockRate)/\(channels)"
    }

    public func isEncoding(_ name: String) -> Bool { encoding.lowercased() == name.lowercased() }

    /// The RFC 3551 §6 static audio payload types the engine knows.
    public static func staticPayloadType(_ pt: Int) -> SDPRTPMap? {
        switch pt {
        case 0: SDPRTPMap(payloadType: 0, encoding: "PCMU", clockRate: 8000)
        case 8: SDPRTPMap(payloadType: 8, encoding: "PCMA", clockRate: 8000)
        // RFC 3551 §4.5.2: G722's RTP clock is 8000 although it samples at 16000.
        case 9: SDPRTPMap(payloadType: 9, encoding: "G722", clockRate: 8000)
        default: nil
        }
    }
}
