/// Parses a session description (RFC 4566 §5 grammar, RFC 8866 where it clarified it). Accepts
/// CRLF or bare LF line ends (§5: "a parser SHOULD accept"), and refuses with the line number:
/// a missing or wrong `v=`/`o=`/`s=`, a line that is not `<letter>=`, an `m=` line that does not
/// parse, a media section with no connection address when the session has none either.
public enum SDPParser {
    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var reason: String

        public var description: String { "SDP line \(line): \(reason)" }
    }

    /// Descriptions longer than this are refused (a SIP body is at most a few KB).
    public static let maxLength = 65_536
    public static let maxMediaSections = 16

    public static func parse(_ text: String) throws(Error) -> SDPSession {
        try parse(Array(text.utf8))
    }

    public static func parse(_ bytes: [UInt8]) throws(Error) -> SDPSession {
        guard bytes.count <= maxLength else { throw Error(line: 0, reason: "longer than \(maxLength) bytes") }
        var lines: [(number: Int, type: Character, value: String)] = []
        var number = 0
        for raw in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            number += 1
            var line = raw[...]
            if line.last == 0x0D { line = line.dropLast() }
            if line.isEmpty { continue }  // a trailing newline, or a blank line some stacks add
            guard line.count >= 2, let first = line.first, (0x61...0x7A).contains(first), line[line.startIndex + 1] == 0x3D else {
                throw Error(line: number, reason: "expected <letter>=<value>")
            }
            guard let value = String(validating: line.dropFirst(2), as: UTF8.self) else {
                throw Error(line: number, reason: "not UTF-8")
            }
            lines.append((number, Character(Unicode.Scalar(first)), value))
        }
        var index = 0
        func next(_ type: Character) -> (number: Int, value: String)? {
            guard index < lines.count, lines[index].type == type else { return nil }
            defer { index += 1 }
            return (lines[index].number, lines[index].value)
        }
        guard let version = next("v") else { throw Error(line: lines.first?.number ?? 1, reason: "must start with v=") }
        guard version.value == "0" else { throw Error(line: version.number, reason: "unsupported version \(version.value)") }
        guard let originLine = next("o") else { throw Error(line: version.number + 1, reason: "o= expected") }
        let origin = try parseOrigin(originLine.value, line: originLine.number)
        guard let name = next("s") else { throw Error(line: originLine.number + 1, reason: "s= expected") }

        // An empty s= (RFC 4566 §5.3 forbids it) reads as the "-" we would write.
        var session = SDPSession(origin: origin, sessionName: name.value.isEmpty ? "-" : name.value, otherLines: [])
        var sawTime = false
        while index < lines.count, lines[index].type != "m" {
            let line = lines[index]
            index += 1
            switch line.type {
            case "c":
                guard session.connection == nil else { throw Error(line: line.number, reason: "second session c=") }
                session.connection = try parseConnection(line.value, line: line.number)
            case "a":
                session.attributes.append(parseAttribute(line.value))
            case "t":
                sawTime = true
                session.otherLines.append(.init(type: line.type, value: line.value))
            case "i", "u", "e", "p", "b", "r", "z", "k":
                session.otherLines.append(.init(type: line.type, value: line.value))
            default:
                throw Error(line: line.number, reason: "unexpected \(line.type)= at session level")
            }
        }
        // RFC 4566 requires t=; RFC 3264 peers always send "t=0 0". Be liberal and supply it.
        if !sawTime { session.otherLines.append(.init(type: "t", value: "0 0")) }
        session.otherLines = inGrammarOrder(session.otherLines)

        while index < lines.count {
            let mLine = lines[index]
            index += 1
            guard session.media.count < maxMediaSections else { throw Error(line: mLine.number, reason: "more than \(maxMediaSections) media sections") }
            var media = try parseMediaLine(mLine.value, line: mLine.number)
            while index < lines.count, lines[index].type != "m" {
                let line = lines[index]
                index += 1
                switch line.type {
                case "c":
                    guard media.connection == nil else { throw Error(line: line.number, reason: "second c= in a media section") }
                    media.connection = try parseConnection(line.value, line: line.number)
                case "a":
                    media.attributes.append(parseAttribute(line.value))
                case "i", "b", "k":
                    media.otherLines.append(.init(type: line.type, value: line.value))
                default:
                    throw Error(line: line.number, reason: "unexpected \(line.type)= in a media section")
                }
            }
            media.otherLines = inGrammarOrder(media.otherLines)
            // RFC 4566 §5.7: every media section needs an address, its own or the session's.
            if media.connection == nil, session.connection == nil {
                throw Error(line: mLine.number, reason: "no c= for this media section or the session")
            }
            session.media.append(media)
        }
        return session
    }

    /// The order RFC 4566 §5 gives the lines (t= and r= share a rank: each r= belongs to the t=
    /// before it). Lines a peer sent out of order are put in it, keeping their relative order,
    /// so that a description always serializes to one that parses back the same.
    static func rank(_ type: Character) -> Int {
        switch type {
        case "i": 0
        case "u": 1
        case "e": 2
        case "p": 3
        case "b": 5
        case "t", "r": 6
        case "z": 7
        case "k": 8
        default: 9
        }
    }

    static func inGrammarOrder(_ lines: [SDPSession.Line]) -> [SDPSession.Line] {
        lines.enumerated().sorted { (rank($0.element.type), $0.offset) < (rank($1.element.type), $1.offset) }.map(\.element)
    }

    private static func fields(_ value: String) -> [Substring] {
        value.split(separator: " ", omittingEmptySubsequences: true)
    }

    static func parseOrigin(_ value: String, line: Int) throws(Error) -> SDPSession.Origin {
        let f = fields(value)
        guard f.count == 6, let version = UInt64(f[2]) else { throw Error(line: line, reason: "o= needs 6 fields with a numeric version") }
        var origin = SDPSession.Origin(username: String(f[0]), sessionID: String(f[1]), sessionVersion: version, addressType: String(f[4]), address: String(f[5]))
        origin.networkType = String(f[3])
        return origin
    }

    static func parseConnection(_ value: String, line: Int) throws(Error) -> SDPSession.Connection {
        let f = fields(value)
        guard f.count == 3 else { throw Error(line: line, reason: "c= needs <nettype> <addrtype> <address>") }
        guard f[1] == "IP4" || f[1] == "IP6" else { throw Error(line: line, reason: "unknown address type \(f[1])") }
        return .init(networkType: String(f[0]), addressType: String(f[1]), address: String(f[2]))
    }

    static func parseMediaLine(_ value: String, line: Int) throws(Error) -> SDPMedia {
        let f = fields(value)
        guard f.count >= 4 else { throw Error(line: line, reason: "m= needs <media> <port> <proto> <fmt>...") }
        // Keep empty pieces: "/" or "///" must fail as a bad port, not index an empty array.
        let portField = f[1].split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let port = Int(portField[0]), (0...65535).contains(port) else { throw Error(line: line, reason: "bad port \(f[1])") }
        var count: Int?
        if portField.count == 2 {
            guard let c = Int(portField[1]), c > 0 else { throw Error(line: line, reason: "bad port count \(f[1])") }
            count = c
        }
        return SDPMedia(type: String(f[0]), port: port, portCount: count, proto: String(f[2]), formats: f[3...].map(String.init))
    }

    static func parseAttribute(_ value: String) -> SDPAttribute {
        guard let colon = value.firstIndex(of: ":") else { return SDPAttribute(value) }
        return SDPAttribute(String(value[..<colon]), String(value[value.index(after: colon)...]))
    }
}

extension SDPSession {
    /// The description in wire form, CRLF line ends (RFC 4566 §5), lines in the grammar's order.
    public var serialized: String {
        var out = "v=0\r\n"
        out += "o=\(origin.username) \(origin.sessionID) \(origin.sessionVersion) \(origin.networkType) \(origin.addressType) \(origin.address)\r\n"
        out += "s=\(sessionName.isEmpty ? "-" : sessionName)\r\n"
        // i= u= e= p=, then c=, then b= t=/r= z= k= (RFC 4566 §5), each in the stored order.
        let lines = SDPParser.inGrammarOrder(otherLines)
        for line in lines where SDPParser.rank(line.type) < 4 { out += "\(line.type)=\(line.value)\r\n" }
        if let connection { out += "c=\(connection.networkType) \(connection.addressType) \(connection.address)\r\n" }
        for line in lines where SDPParser.rank(line.type) >= 4 { out += "\(line.type)=\(line.value)\r\n" }
        for attribute in attributes { out += attribute.line }
        for section in media {
            let port = section.portCount.map { "\(section.port)/\($0)" } ?? "\(section.port)"
            out += "m=\(section.type) \(port) \(section.proto) \(section.formats.joined(separator: " "))\r\n"
            let lines = SDPParser.inGrammarOrder(section.otherLines)
            for line in lines where line.type == "i" { out += "i=\(line.value)\r\n" }
            if let c = section.connection { out += "c=\(c.networkType) \(c.addressType) \(c.address)\r\n" }
            for line in lines where line.type != "i" { out += "\(line.type)=\(line.value)\r\n" }
            for attribute in section.attributes { out += attribute.line }
        }
        return out
    }
}

extension SDPAttribute {
    var line: String { value.map { "a=\(name):\($0)\r\n" } ?? "a=\(name)\r\n" }
}
