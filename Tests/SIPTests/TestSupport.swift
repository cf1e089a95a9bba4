import NIOCore
import SIP

/// Where the test fixtures are, found from this file's path so that tests run from any folder.
enum Fixtures {
    static let directory: String = {
        let file = #filePath
        let folder = file.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return folder + "/Fixtures"
    }()

    static func bytes(_ relativePath: String) throws -> [UInt8] {
        try readFile(directory + "/" + relativePath)
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
}

/// Reads a whole file without Foundation.
func readFile(_ path: String) throws -> [UInt8] {
    guard let file = fopen(path, "rb") else { throw FixtureError(description: "cannot open \(path)") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count <= 0 { break }
        bytes += chunk[0..<count]
    }
    return bytes
}

/// Parses text with CRLF line ends written as "\n" in a test's literal.
func parseSIP(_ text: String, framing: SIPMessageParser.Framing = .datagram) throws(SIPParseError) -> SIPMessage {
    try SIPMessageParser().parse(text.replacingLF(), framing: framing)
}

extension String {
    func replacingLF() -> String {
        var out = ""
        for char in self {
            if char == "\n" { out += "\r\n" } else { out.append(char) }
        }
        return out
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
