/// A DNS message (RFC 1035 §4.1), as multicast DNS (RFC 6762 §18) and the gateway's RFC 3263
/// lookups (`SIPServerLocator`) use it: header, questions and
/// resource records. Decoding follows compression pointers (RFC 1035 §4.1.4) with a loop guard;
/// encoding writes names uncompressed, which every decoder must accept. Only the record types
/// DNS-SD and RFC 3263 need are read into values (PTR, SRV, TXT, AAAA, A, NAPTR); others are kept as bytes.
public struct DNSMessage: Sendable, Equatable {
    public var id: UInt16 = 0
    public var flags: UInt16 = 0
    public var questions: [Question] = []
    public var answers: [Record] = []
    public var authorities: [Record] = []
    public var additionals: [Record] = []

    /// QR set, AA set: an mDNS response (RFC 6762 §18.2, §18.4).
    public static let responseFlags: UInt16 = 0x8400
    public var isResponse: Bool { flags & 0x8000 != 0 }

    public init(id: UInt16 = 0, flags: UInt16 = 0, questions: [Question] = [], answers: [Record] = [], additionals: [Record] = []) {
        self.id = id
        self.flags = flags
        self.questions = questions
        self.answers = answers
        self.additionals = additionals
    }

    public enum RecordType: UInt16, Sendable {
        case a = 1, ptr = 12, txt = 16, aaaa = 28, srv = 33, naptr = 35, any = 255
    }

    public struct Question: Sendable, Equatable {
        public var name: String
        public var type: UInt16
        /// The top bit of the class: the querier would take a unicast answer (RFC 6762 §5.4).
        public var unicastResponse: Bool

        public init(name: String, type: RecordType, unicastResponse: Bool = false) {
            self.name = name
            self.type = type.rawValue
            self.unicastResponse = unicastResponse
        }
    }

    public enum RecordData: Sendable, Equatable {
        case ptr(String)
        case srv(priority: UInt16, weight: UInt16, port: UInt16, target: String)
        /// RFC 3403 §4.1 (RFC 3263 §4.1 reads `services` such as "SIPS+D2T" and follows `replacement`).
        case naptr(order: UInt16, preference: UInt16, flags: String, services: String, regexp: String, replacement: String)
        /// Each entry a `key=value` (or bare `key`) string (RFC 6763 §6).
        case txt([String])
        /// 16 bytes.
        case aaaa([UInt8])
        case a([UInt8])
        case other(type: UInt16, bytes: [UInt8])

        public var type: UInt16 {
            switch self {
            case .ptr: RecordType.ptr.rawValue
            case .srv: RecordType.srv.rawValue
            case .naptr: RecordType.naptr.rawValue
            case .txt: RecordType.txt.rawValue
            case .aaaa: RecordType.aaaa.rawValue
            case .a: RecordType.a.rawValue
            case .other(let type, _): type
            }
        }
    }

    public struct Record: Sendable, Equatable {
        public var name: String
        public var data: RecordData
        /// The top bit of the class: this record replaces what caches hold for the name (RFC 6762 §10.2).
        public var cacheFlush: Bool
        /// Seconds; 0 is a goodbye (RFC 6762 §10.1).
        public var ttl: UInt32

        public init(name: String, data: RecordData, cacheFlush: Bool = false, ttl: UInt32) {
            self.name = name
            self.data = data
            self.cacheFlush = cacheFlush
            self.ttl = ttl
        }
    }

    public enum DecodingError: Error, Equatable {
        case truncated
        case badName
        case badRecord
    }

    // MARK: Encoding

    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        for value in [id, flags, UInt16(questions.count), UInt16(answers.count), UInt16(authorities.count), UInt16(additionals.count)] {
            Self.put16(value, &out)
        }
        for question in questions {
            Self.putName(question.name, &out)
            Self.put16(question.type, &out)
            Self.put16((question.unicastResponse ? 0x8000 : 0) | 1, &out)
        }
        for record in answers + authorities + additionals {
            Self.putName(record.name, &out)
            Self.put16(record.data.type, &out)
            Self.put16((record.cacheFlush ? 0x8000 : 0) | 1, &out)
            Self.put16(UInt16(record.ttl >> 16), &out)
            Self.put16(UInt16(record.ttl & 0xFFFF), &out)
            var rdata: [UInt8] = []
            switch record.data {
            case .ptr(let name): Self.putName(name, &rdata)
            case .srv(let priority, let weight, let port, let target):
                Self.put16(priority, &rdata)
                Self.put16(weight, &rdata)
                Self.put16(port, &rdata)
                Self.putName(target, &rdata)
            case .txt(let strings):
                // An empty TXT record is one empty string (RFC 6763 §6.1); the record stays
                // within an mDNS packet (RFC 6762 §17: 9,000 bytes).
                for string in strings.isEmpty ? [""] : strings {
                    let bytes = Array(string.utf8.prefix(255))
                    guard rdata.count + 1 + bytes.count <= 8_900 else { break }
                    rdata.append(UInt8(bytes.count))
                    rdata += bytes
                }
            case .naptr(let order, let preference, let flags, let services, let regexp, let replacement):
                Self.put16(order, &rdata)
                Self.put16(preference, &rdata)
                for string in [flags, services, regexp] {
                    let bytes = Array(string.utf8.prefix(255))
                    rdata.append(UInt8(bytes.count))
                    rdata += bytes
                }
                Self.putName(replacement, &rdata)
            case .aaaa(let bytes), .a(let bytes), .other(_, let bytes):
                rdata = Array(bytes.prefix(8_900))
            }
            Self.put16(UInt16(rdata.count), &out)
            out += rdata
        }
        return out
    }

    private static func put16(_ value: UInt16, _ out: inout [UInt8]) {
        out.append(UInt8(value >> 8))
        out.append(UInt8(value & 0xFF))
    }

    /// Labels of at most 63 bytes, a name of at most 255 (RFC 1035 §2.3.4: labels past that are
    /// left out); the trailing dot is implied.
    private static func putName(_ name: String, _ out: inout [UInt8]) {
        var length = 1
        for label in name.split(separator: ".") {
            let bytes = Array(label.utf8.prefix(63))
            guard length + 1 + bytes.count <= 255 else { break }
            length += 1 + bytes.count
            out.append(UInt8(bytes.count))
            out += bytes
        }
        out.append(0)
    }

    // MARK: Decoding

    public init(decoding bytes: [UInt8]) throws(DecodingError) {
        var reader = Reader(bytes: bytes)
        id = try reader.u16()
        flags = try reader.u16()
        let counts = (try reader.u16(), try reader.u16(), try reader.u16(), try reader.u16())
        for _ in 0..<counts.0 {
            let name = try reader.name()
            let type = try reader.u16()
            let klass = try reader.u16()
            questions.append(Question(name: name, type: RecordType(rawValue: type) ?? .any, unicastResponse: klass & 0x8000 != 0))
            questions[questions.count - 1].type = type
        }
        for _ in 0..<counts.1 { answers.append(try reader.record()) }
        for _ in 0..<counts.2 { authorities.append(try reader.record()) }
        for _ in 0..<counts.3 { additionals.append(try reader.record()) }
    }

    struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func u8() throws(DecodingError) -> UInt8 {
            guard offset < bytes.count else { throw .truncated }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func u16() throws(DecodingError) -> UInt16 {
            UInt16(try u8()) << 8 | UInt16(try u8())
        }

        mutating func take(_ count: Int) throws(DecodingError) -> [UInt8] {
            guard count >= 0, offset + count <= bytes.count else { throw .truncated }
            defer { offset += count }
            return Array(bytes[offset..<offset + count])
        }

        /// A name, following compression pointers; at most 16 jumps and 255 bytes of name.
        mutating func name() throws(DecodingError) -> String {
            var labels: [String] = []
            var position = offset
            var jumped = false
            var jumps = 0
            var length = 0
            while true {
                guard position < bytes.count else { throw .truncated }
                let count = Int(bytes[position])
                if count == 0 {
                    position += 1
                    break
                }
                if count & 0xC0 == 0xC0 {
                    guard position + 1 < bytes.count, jumps < 16 else { throw .badName }
                    let target = (count & 0x3F) << 8 | Int(bytes[position + 1])
                    guard target < position || jumped else { throw .badName }
                    if !jumped { offset = position + 2 }
                    jumped = true
                    jumps += 1
                    position = target
                    continue
                }
                guard count & 0xC0 == 0, position + 1 + count <= bytes.count else { throw .badName }
                length += count + 1
                guard length <= 255 else { throw .badName }
                labels.append(String(decoding: bytes[position + 1..<position + 1 + count], as: UTF8.self))
                position += 1 + count
            }
            if !jumped { offset = position }
            return labels.joined(separator: ".")
        }

        /// A <character-string> (RFC 1035 §3.3) that ends before `end`.
        mutating func characterString(before end: Int) throws(DecodingError) -> String {
            let count = Int(try u8())
            guard offset + count <= end else { throw .badRecord }
            return String(decoding: try take(count), as: UTF8.self)
        }

        mutating func record() throws(DecodingError) -> Record {
            let name = try name()
            let type = try u16()
            let klass = try u16()
            let ttl = UInt32(try u16()) << 16 | UInt32(try u16())
            let length = Int(try u16())
            let end = offset + length
            guard end <= bytes.count else { throw .truncated }
            let data: RecordData
            switch RecordType(rawValue: type) {
            case .ptr?:
                data = .ptr(try self.name())
            case .srv?:
                data = .srv(priority: try u16(), weight: try u16(), port: try u16(), target: try self.name())
            case .naptr?:
                let order = try u16(), preference = try u16()
                let flags = try characterString(before: end), services = try characterString(before: end), regexp = try characterString(before: end)
                data = .naptr(order: order, preference: preference, flags: flags, services: services, regexp: regexp, replacement: try self.name())
            case .txt?:
                var strings: [String] = []
                while offset < end {
                    let count = Int(try u8())
                    guard offset + count <= end else { throw .badRecord }
                    let string = String(decoding: try take(count), as: UTF8.self)
                    if !string.isEmpty { strings.append(string) }
                }
                data = .txt(strings)
            case .aaaa?:
                guard length == 16 else { throw .badRecord }
                data = .aaaa(try take(16))
            case .a?:
                guard length == 4 else { throw .badRecord }
                data = .a(try take(4))
            default:
                data = .other(type: type, bytes: try take(length))
            }
            guard offset == end else { throw .badRecord }
            return Record(name: name, data: data, cacheFlush: klass & 0x8000 != 0, ttl: ttl)
        }
    }
}
