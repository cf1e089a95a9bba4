import PeerTestSupport
import Foundation
import Testing

/// `symphony-bridge sip-check` as an integrator runs it: the built binary, a file or standard
/// input, exit status 0 or 65.
@Suite("sip-check command")
struct SIPCheckCommandTests {
    static func binary() throws -> String { try builtExecutable("symphony-bridge") }

    static func fixture(_ name: String) -> String {
        let tests = #filePath.split(separator: "/", omittingEmptySubsequences: false).dropLast(2).joined(separator: "/")
        return tests + "/SIPTests/Fixtures/rfc4475/" + name
    }

    static func run(_ arguments: [String], stdin: Data? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try binary())
        process.arguments = arguments
        let output = Pipe(), input = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func wellFormedMessagePrintsNormalizedAndExitsZero() throws {
        let (status, output) = try Self.run(["sip-check", Self.fixture("wsinv.dat")])
        #expect(status == 0)
        #expect(output.hasPrefix("INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"))
        #expect(output.contains("\r\nTo: <sip:vivekg@chair-dnrc.example.com>;tag=1918181833n\r\n"), "folding and spacing normalized")
        #expect(output.contains("\r\nMax-Forwards: 68\r\n"), "leading zeros dropped")
    }

    @Test func malformedMessageExits65WithLineAndColumn() throws {
        let (status, output) = try Self.run(["sip-check", Self.fixture("quotbal.dat")])
        #expect(status == 65)
        #expect(output == "2:5: unterminated quoted string\n")
    }

    @Test func readsStandardInputWithoutAFile() throws {
        let message = "OPTIONS sip:a@example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCSeq: 1 INVITE\n\n"
        let (status, output) = try Self.run(["sip-check"], stdin: Data(message.utf8))
        #expect(status == 65)
        #expect(output.hasPrefix("3:7: CSeq method INVITE does not match"))
    }

    @Test func unreadableFileExits66() throws {
        let (status, _) = try Self.run(["sip-check", "/nonexistent/capture.txt"])
        #expect(status == 66)
    }
}
