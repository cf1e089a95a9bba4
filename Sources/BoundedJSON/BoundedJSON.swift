public import Foundation

/// JSON from outside the process (claiming requests and answers, tokens, state files, MQTT
/// payloads), read with bounds first: a size and a nesting depth checked in one linear pass
/// before Foundation's decoders see the bytes (docs/RELIABILITY.md).
///
/// Why: swift-foundation's `JSONDecoder` traps — a remote kill — on a document of exactly 513
/// nested arrays that ends there (`JSONError.SourceLocation.sourceLocation(at:fullSource:)` at the
/// end index; found by `Fuzz/ClaimingFuzzer`), and its scanner recurses once per level. Nothing
/// the daemons read nests deeper than a few levels, so 32 is generous.
public enum BoundedJSON {
    public static let maxDepth = 32
    public static let maxSize = 1 << 20

    public enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        case tooLarge(Int)
        case tooDeep

        public var description: String {
            switch self {
            case .tooLarge(let size): "JSON of \(size) bytes, more than \(BoundedJSON.maxSize)"
            case .tooDeep: "JSON nested deeper than \(BoundedJSON.maxDepth) levels"
            }
        }
    }

    /// Refuses a document that is too large or nests too deep (brackets inside strings do not count).
    public static func check(_ bytes: some Collection<UInt8>) throws(Refusal) {
        guard bytes.count <= maxSize else { throw .tooLarge(bytes.count) }
        var depth = 0
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                guard depth <= maxDepth else { throw .tooDeep }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
    }

    /// `JSONDecoder().decode` after `check`.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try check(data)
        return try JSONDecoder().decode(type, from: data)
    }

    /// `JSONSerialization.jsonObject` after `check`.
    public static func object(from data: Data) throws -> Any {
        try check(data)
        return try JSONSerialization.jsonObject(with: data)
    }
}
