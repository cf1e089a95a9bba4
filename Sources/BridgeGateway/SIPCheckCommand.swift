import ArgumentParser
import NIOCore
import SIP

#if canImport(Glibc)
import Glibc
#endif

/// `symphony-bridge sip-check [FILE]`: checks one SIP message from a capture. Exit 0 and the
/// normalized message when it is well-formed; exit 65 (EX_DATAERR) and `line:column: reason`
/// when it is not.
struct SIPCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sip-check",
        abstract: "Check a SIP message (a file, or standard input) and print it normalized.",
        discussion: """
            The message is read as one datagram: Content-Length is optional and bytes past it are \
            ignored. Line ends may be CRLF or LF. Exit status: 0 well-formed, 65 malformed, 66 \
            unreadable file.
            """
    )

    @Argument(help: "File holding one SIP message; standard input when omitted.")
    var file: String?

    @Flag(name: .long, help: "Also run the checks a UAS makes and print the response it would send.")
    var uas = false

    func run() throws {
        let bytes: [UInt8]
        do {
            bytes = try readInput(file)
        } catch {
            printError("sip-check: \(error)")
            throw ExitCode(66)
        }
        switch SIPCheck.check(bytes) {
        case .failure(let error):
            print("\(error.line):\(error.column): \(error.reason)")
            throw ExitCode(65)
        case .success(let message):
            var normalized = SIPMessageSerializer.normalized(message)
            print(normalized.readString(length: normalized.readableBytes) ?? "", terminator: "")
            if uas, message.isRequest {
                if let rejection = SIPRequestValidator().check(message) {
                    printError("uas: would answer \(rejection.statusCode): \(rejection.reason)")
                } else {
                    printError("uas: acceptable")
                }
            }
        }
    }
}

/// The check itself, apart from the CLI. Accepts LF line ends as well as CRLF, as captures
/// pasted from logs often lose the CRs.
enum SIPCheck {
    static func check(_ bytes: [UInt8]) -> Result<SIPMessage, SIPParseError> {
        Result { () throws(SIPParseError) in try SIPMessageParser().parse(bytes) }
    }
}

func readInput(_ path: String?) throws -> [UInt8] {
    let fd: Int32
    if let path {
        fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ValidationError("cannot open \(path): \(String(cString: strerror(errno)))") }
    } else {
        fd = STDIN_FILENO
    }
    defer { if path != nil { close(fd) } }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(fd, &chunk, chunk.count)
        if count < 0, errno == EINTR { continue }
        guard count > 0 else { break }
        bytes += chunk[0..<count]
    }
    return bytes
}

func printError(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}
