/// Bencode, the encoding of rtpengine's ng control protocol: byte strings, integers, lists and
/// dictionaries (keys sorted when encoding). The decoder takes replies from a process on the
/// network as untrusted: bounded nesting, lengths checked before they become ranges, integers
/// that fit, and nothing read past the input.
public indirect enum Bencode: Sendable, Equatable {
    case string(String)
    case integer(Int)
    case list([Bencode])
    case dictionary([String: Bencode])

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    private func encode(into out: inout [UInt8]) {
        switch self {
        case .string(let text):
            out += Array("\(text.utf8.count):".utf8)
            out += Array(text.utf8)
        case .integer(let value):
            out += Array("i\(value)e".utf8)
        case .list(let items):
            out.append(UInt8(ascii: "l"))
            for item in items { item.encode(into: &out) }
            out.append(UInt8(ascii: "e"))
        case .dictionary(let entries):
            out.append(UInt8(ascii: "d"))
            for (key, value) in entries.sorted(by: { $0.key < $1.key }) {
                Bencode.string(key).encode(into: &out)
                value.encode(into: &out)
            }
            out.append(UInt8(ascii: "e"))
        }
    }

    public var string: String? { if case .string(let text) = self { text } else { nil } }

    public subscript(key: String) -> Bencode? {
        if case .dictionary(let entries) = self { entries[key] } else { nil }
    }

    public struct DecodingError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// Decodes one value that spans all of `bytes`.
    public init(decoding bytes: [UInt8], maxDepth: Int = 16) throws(DecodingError) {
        var reader = Reader(bytes: bytes, maxDepth: maxDepth)
        self = try reader.value(depth: 0)
        guard reader.index == bytes.count else { throw DecodingError(description: "bencode: \(bytes.count - reader.index) bytes after the value") }
    }

    struct Reader {
        let bytes: [UInt8]
        let maxDepth: Int
        var index = 0

        mutating func value(depth: Int) throws(DecodingError) -> Bencode {
            guard depth <= maxDepth else { throw DecodingError(description: "bencode: nested deeper than \(maxDepth)") }
            guard index < bytes.count else { throw DecodingError(description: "bencode: truncated") }
            switch bytes[index] {
            case UInt8(ascii: "i"):
                index += 1
                let digits = try number(until: UInt8(ascii: "e"), allowSign: true)
                guard let value = Int(digits) else { throw DecodingError(description: "bencode: integer \(digits.prefix(24)) does not fit") }
                return .integer(value)
            case UInt8(ascii: "l"):
                index += 1
                var items: [Bencode] = []
                while true {
                    guard index < bytes.count else { throw DecodingError(description: "bencode: truncated list") }
                    if bytes[index] == UInt8(ascii: "e") { index += 1; return .list(items) }
                    items.append(try value(depth: depth + 1))
                }
            case UInt8(ascii: "d"):
                index += 1
                var entries: [String: Bencode] = [:]
                while true {
                    guard index < bytes.count else { throw DecodingError(description: "bencode: truncated dictionary") }
                    if bytes[index] == UInt8(ascii: "e") { index += 1; return .dictionary(entries) }
                    guard case .string(let key) = try value(depth: depth + 1) else { throw DecodingError(description: "bencode: a dictionary key that is not a string") }
                    entries[key] = try value(depth: depth + 1)
                }
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let digits = try number(until: UInt8(ascii: ":"), allowSign: false)
                guard let length = Int(digits), length >= 0, length <= bytes.count - index else {
                    throw DecodingError(description: "bencode: a string longer than what is left")
                }
                defer { index += length }
                return .string(String(decoding: bytes[index..<index + length], as: UTF8.self))
            default:
                throw DecodingError(description: "bencode: unexpected byte \(bytes[index]) at \(index)")
            }
        }

        /// ASCII digits (and a leading '-' for integers) up to `terminator`, at most 20 of them.
        mutating func number(until terminator: UInt8, allowSign: Bool) throws(DecodingError) -> String {
            var text = ""
            while index < bytes.count, bytes[index] != terminator {
                let byte = bytes[index]
                guard (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (allowSign && byte == UInt8(ascii: "-") && text.isEmpty), text.count < 20 else {
                    throw DecodingError(description: "bencode: bad number at \(index)")
                }
                text.append(Character(UnicodeScalar(byte)))
                index += 1
            }
            guard index < bytes.count, !text.isEmpty else { throw DecodingError(description: "bencode: truncated number") }
            index += 1
            return text
        }
    }
}
