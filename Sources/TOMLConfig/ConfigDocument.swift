import Foundation
import TOMLKit

/// One problem in a configuration file, said the way ARCHITECTURE.md asks:
/// `file:line:column: key.path: what is wrong (what is expected)`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    /// Dotted key path, empty for the document itself (a syntax error).
    public var keyPath: String
    public var message: String

    public var description: String {
        keyPath.isEmpty ? "\(file):\(line):\(column): \(message)" : "\(file):\(line):\(column): \(keyPath): \(message)"
    }
}

/// All the problems found in one file (a file is refused as a whole).
public struct ConfigErrors: Error, Sendable, Equatable, CustomStringConvertible {
    public var errors: [ConfigError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }

    /// The exit status of `check-config` and of a daemon refusing its config (sysexits EX_CONFIG).
    public static let exitStatus: Int32 = 78
}

/// A TOML file being read against a schema. The schema is the code that reads it: each accessor
/// names a key, says what it must be, and records a precise error when it is not; `finish()` on
/// each table then reports every key nobody asked for, with a did-you-mean. Nothing is thrown
/// until `validate()`, so one run reports every problem of the file.
///
///     let document = try ConfigDocument(text: text, file: path)
///     let media = document.root.table("media")
///     let low = media?.int("rtp_port_min", in: 1024...65535, default: 10000)
///     media?.finish()
///     document.root.finish()
///     try document.validate()
public final class ConfigDocument {
    public let file: String
    public let index: TOMLPositionIndex
    public private(set) var errors: [ConfigError] = []
    public private(set) var root: ConfigTable!

    /// Parses the text; a syntax error is thrown at once with TOMLKit's position.
    public init(text: String, file: String) throws(ConfigErrors) {
        self.file = file
        self.index = TOMLPositionIndex(text: text)
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigErrors(errors: [
                ConfigError(file: file, line: error.source.begin.line, column: error.source.begin.column, keyPath: "", message: error.description)
            ])
        } catch {
            throw ConfigErrors(errors: [ConfigError(file: file, line: 1, column: 1, keyPath: "", message: "\(error)")])
        }
        self.root = ConfigTable(table, path: "", document: self)
    }

    /// Reads and parses a file; an unreadable file is one error at 1:1.
    public convenience init(contentsOfFile file: String) throws(ConfigErrors) {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw ConfigErrors(errors: [ConfigError(file: file, line: 1, column: 1, keyPath: "", message: "cannot read the file: \(error.localizedDescription)")])
        }
        try self.init(text: text, file: file)
    }

    func record(_ path: String, _ message: String, atValue: Bool = true, tablePath: String? = nil) {
        let position = (atValue ? index.value(path) : nil) ?? index.key(path) ?? tablePath.flatMap { index.table($0) }
            ?? .init(line: 1, column: 1)
        let error = ConfigError(file: file, line: position.line, column: position.column, keyPath: path, message: message)
        if !errors.contains(error) { errors.append(error) }  // a key read twice is one problem
    }

    /// Throws every error recorded, sorted by position.
    public func validate() throws(ConfigErrors) {
        guard !errors.isEmpty else { return }
        throw ConfigErrors(errors: errors.sorted { ($0.line, $0.column) < ($1.line, $1.column) })
    }
}

/// One table of the document, with what the schema has asked of it.
public final class ConfigTable {
    let table: TOMLTable
    public let path: String
    unowned let document: ConfigDocument
    private var asked: Set<String> = []

    init(_ table: TOMLTable, path: String, document: ConfigDocument) {
        self.table = table
        self.path = path
        self.document = document
    }

    private func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func value(_ key: String, required: Bool, expected: String) -> (any TOMLValueConvertible)? {
        asked.insert(key)
        guard let value = table[key] else {
            if required { document.record(child(key), "missing (\(expected))", tablePath: path) }
            return nil
        }
        return value
    }

    private func wrongType(_ key: String, _ value: any TOMLValueConvertible, expected: String) {
        document.record(child(key), "expected \(expected), found \(value.type)")
    }

    public func string(_ key: String, required: Bool = false) -> String? {
        guard let value = value(key, required: required, expected: "a string") else { return nil }
        guard let s = value.string else {
            wrongType(key, value, expected: "a string")
            return nil
        }
        return s
    }

    /// A string that must be one of `choices`.
    public func string(_ key: String, oneOf choices: [String], required: Bool = false) -> String? {
        guard let s = string(key, required: required) else { return nil }
        guard choices.contains(s) else {
            document.record(child(key), "\"\(s)\" is not one of \(choices.map { "\"\($0)\"" }.joined(separator: ", "))")
            return nil
        }
        return s
    }

    public func int(_ key: String, in range: ClosedRange<Int>? = nil, required: Bool = false) -> Int? {
        guard let value = value(key, required: required, expected: "an integer") else { return nil }
        guard let n = value.int else {
            wrongType(key, value, expected: "an integer")
            return nil
        }
        if let range, !range.contains(n) {
            document.record(child(key), "\(n) is out of range (expected \(range.lowerBound)...\(range.upperBound))")
            return nil
        }
        return n
    }

    public func bool(_ key: String, required: Bool = false) -> Bool? {
        guard let value = value(key, required: required, expected: "true or false") else { return nil }
        guard let b = value.bool else {
            wrongType(key, value, expected: "true or false")
            return nil
        }
        return b
    }

    public func stringArray(_ key: String, required: Bool = false) -> [String]? {
        guard let value = value(key, required: required, expected: "an array of strings") else { return nil }
        guard let array = value.array else {
            wrongType(key, value, expected: "an array of strings")
            return nil
        }
        var out: [String] = []
        for (i, element) in array.enumerated() {
            guard let s = element.string else {
                document.record(child(key), "element \(i + 1): expected a string, found \(element.type)")
                return nil
            }
            out.append(s)
        }
        return out
    }

    public func table(_ key: String, required: Bool = false) -> ConfigTable? {
        guard let value = value(key, required: required, expected: "a table [\(child(key))]") else { return nil }
        guard let t = value.table else {
            wrongType(key, value, expected: "a table")
            return nil
        }
        return ConfigTable(t, path: child(key), document: document)
    }

    /// An array of tables (`[[key]]`).
    public func tables(_ key: String, required: Bool = false) -> [ConfigTable] {
        guard let value = value(key, required: required, expected: "an array of tables [[\(child(key))]]") else { return [] }
        guard let array = value.array else {
            wrongType(key, value, expected: "an array of tables [[\(key)]]")
            return []
        }
        var out: [ConfigTable] = []
        for (i, element) in array.enumerated() {
            guard let t = element.table else {
                document.record(child(key), "element \(i + 1): expected a table, found \(element.type)")
                continue
            }
            out.append(ConfigTable(t, path: "\(child(key))[\(i)]", document: document))
        }
        return out
    }

    /// Whether the file sets `key` (without asking for its value).
    public func has(_ key: String) -> Bool { table[key] != nil }

    /// Records an error on a key the schema read (a rule across keys, say min > max).
    public func reject(_ key: String, _ message: String) {
        document.record(child(key), message)
    }

    /// Every key of the table the schema did not ask for is an error (ARCHITECTURE.md: unknown
    /// keys are errors), with the closest known key when one is near.
    public func finish() {
        for key in table.keys where !asked.contains(key) {
            var message = "unknown key"
            if let suggestion = Self.closest(to: key, in: asked) { message += " (did you mean \"\(suggestion)\"?)" }
            document.record(child(key), message, atValue: false)
        }
    }

    /// The known key within an edit distance of 2 (or a third of its length), if any.
    static func closest(to key: String, in known: Set<String>) -> String? {
        let limit = max(2, key.count / 3)
        return known.map { ($0, editDistance(key, $0)) }.filter { $0.1 <= limit }.min { ($0.1, $0.0) < ($1.1, $1.0) }?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.lowercased()), b = Array(b.lowercased())
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var row = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...b.count {
                row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = row
        }
        return previous[b.count]
    }
}
