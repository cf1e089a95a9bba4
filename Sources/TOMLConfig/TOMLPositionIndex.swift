/// Where each key of a TOML document is written: TOMLKit (0.6) reports positions only for syntax
/// errors, so this index is built from the source text to give every later error (unknown key,
/// wrong type, value out of range) its `line:column`. Paths are dotted (`media.rtp_port_min`),
/// with an index for arrays of tables (`channel[2].number`).
///
/// It is a line scanner that knows what it must to stay in step with the TOML grammar (v1.0):
/// comments, table and array-of-tables headers, bare, quoted and dotted keys, basic and literal
/// strings (single- and multi-line, with escapes), and arrays or inline tables that span lines.
/// Keys inside inline tables get the position of the inline table's value.
public struct TOMLPositionIndex: Sendable {
    public struct Position: Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var column: Int

        public init(line: Int, column: Int) {
            self.line = line
            self.column = column
        }

        public var description: String { "\(line):\(column)" }
    }

    /// Position of each key (its first character), by path.
    public private(set) var keys: [String: Position] = [:]
    /// Position of each value (its first character), by path.
    public private(set) var values: [String: Position] = [:]
    /// Position of each table header, by path (`[media]` → "media", `[[channel]]` → "channel[0]").
    public private(set) var tables: [String: Position] = [:]

    public init(text: String) {
        var scanner = Scanner(chars: Array(text.unicodeScalars))
        scanner.run(into: &self)
    }

    public func key(_ path: String) -> Position? { keys[path] }
    public func value(_ path: String) -> Position? { values[path] }
    public func table(_ path: String) -> Position? { tables[path] }

    private struct Scanner {
        let chars: [Unicode.Scalar]
        var index = 0
        var line = 1
        var lineStart = 0
        var currentTable: [String] = []
        /// How many `[[x]]` headers have been seen, by resolved parent path + name.
        var arrayCounts: [String: Int] = [:]

        var column: Int { index - lineStart + 1 }
        var atEnd: Bool { index >= chars.count }
        var current: Unicode.Scalar? { atEnd ? nil : chars[index] }

        func peek(_ offset: Int) -> Unicode.Scalar? {
            index + offset < chars.count ? chars[index + offset] : nil
        }

        mutating func advance() {
            if chars[index] == "\n" {
                line += 1
                lineStart = index + 1
            }
            index += 1
        }

        mutating func skipSpaces() {
            while let c = current, c == " " || c == "\t" { advance() }
        }

        /// To the end of the line (a comment, or what follows a value).
        mutating func skipToNextLine() {
            while let c = current, c != "\n" { advance() }
            if !atEnd { advance() }
        }

        mutating func run(into index: inout TOMLPositionIndex) {
            while !atEnd {
                skipSpaces()
                guard let c = current else { break }
                switch c {
                case "\n", "\r":
                    advance()
                case "#":
                    skipToNextLine()
                case "[":
                    header(into: &index)
                default:
                    keyValue(into: &index)
                }
            }
        }

        mutating func header(into index: inout TOMLPositionIndex) {
            let position = Position(line: line, column: column)
            advance()
            let isArray = current == "["
            if isArray { advance() }
            skipSpaces()
            let components = keyComponents(until: "]")
            while let c = current, c != "\n" {
                if c == "#" { break }
                advance()
            }
            skipToNextLine()
            var resolved = resolve(Array(components.dropLast()))
            guard let last = components.last else { return }
            if isArray {
                let base = (resolved + [last]).joined(separator: ".")
                let n = arrayCounts[base, default: 0]
                arrayCounts[base] = n + 1
                resolved.append("\(last)[\(n)]")
            } else {
                resolved.append(last)
            }
            currentTable = resolved
            index.tables[resolved.joined(separator: ".")] = position
        }

        /// Adds the current index to each prefix that names an array of tables (TOML: a sub-table
        /// header belongs to the array's last element).
        func resolve(_ components: [String]) -> [String] {
            var out: [String] = []
            for component in components {
                let base = (out + [component]).joined(separator: ".")
                if let n = arrayCounts[base] {
                    out.append("\(component)[\(n - 1)]")
                } else {
                    out.append(component)
                }
            }
            return out
        }

        mutating func keyValue(into index: inout TOMLPositionIndex) {
            let keyPosition = Position(line: line, column: column)
            let components = keyComponents(until: "=")
            guard current == "=" else {
                skipToNextLine()  // not TOML; TOMLKit reports it
                return
            }
            advance()
            skipSpaces()
            let path = (currentTable + components).joined(separator: ".")
            index.keys[path] = keyPosition
            index.values[path] = Position(line: line, column: column)
            skipValue()
        }

        /// Reads a bare, quoted or dotted key up to `terminator`; leaves the scanner on it.
        mutating func keyComponents(until terminator: Unicode.Scalar) -> [String] {
            var components: [String] = []
            var currentKey = ""
            while let c = current, c != terminator, c != "\n" {
                switch c {
                case "\"", "'":
                    currentKey += readString(quote: c)
                case ".":
                    components.append(currentKey.trimmingSpaces())
                    currentKey = ""
                    advance()
                default:
                    currentKey.unicodeScalars.append(c)
                    advance()
                }
            }
            components.append(currentKey.trimmingSpaces())
            return components
        }

        /// A one-line quoted key or string; returns its content (escapes kept as written).
        mutating func readString(quote: Unicode.Scalar) -> String {
            advance()
            var text = ""
            while let c = current, c != quote, c != "\n" {
                if quote == "\"", c == "\\", peek(1) != nil {
                    text.unicodeScalars.append(c)
                    advance()
                }
                text.unicodeScalars.append(current!)
                advance()
            }
            if current == quote { advance() }
            return text
        }

        /// Skips a value, across lines for arrays, inline tables and multi-line strings.
        mutating func skipValue() {
            var depth = 0
            while let c = current {
                switch c {
                case "\"", "'":
                    if peek(1) == c, peek(2) == c {
                        skipMultilineString(quote: c)
                    } else {
                        _ = readString(quote: c)
                    }
                case "[", "{":
                    depth += 1
                    advance()
                case "]", "}":
                    depth -= 1
                    advance()
                case "#":
                    while let c = current, c != "\n" { advance() }
                case "\n":
                    advance()
                    if depth <= 0 { return }
                default:
                    advance()
                }
            }
        }

        mutating func skipMultilineString(quote: Unicode.Scalar) {
            advance(); advance(); advance()
            while let c = current {
                if c == "\\", quote == "\"" {
                    advance()
                    if !atEnd { advance() }
                    continue
                }
                if c == quote, peek(1) == quote, peek(2) == quote {
                    advance(); advance(); advance()
                    // Up to two more quotes may belong to the content (TOML 1.0 §String).
                    while current == quote { advance() }
                    return
                }
                advance()
            }
        }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view = view.dropFirst() }
        while let last = view.last, last == " " || last == "\t" { view = view.dropLast() }
        return String(view)
    }
}
