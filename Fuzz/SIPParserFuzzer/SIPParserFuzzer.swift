import NIOCore
import SIP

// The message parser under libFuzzer (`make fuzz`): every input is parsed as a datagram and as
// a stream message; whatever parses is serialized, normalized and parsed again, and the typed
// views are read, so that the whole path a received message takes is exercised.
//
// Built with `-D FUZZ -sanitize=fuzzer,address` by scripts/fuzz, libFuzzer
// supplies `main`. Built normally, this file replays inputs given as file arguments (to
// reproduce a crash without the fuzzing runtime).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let parser = SIPMessageParser()
    for framing in [SIPMessageParser.Framing.datagram, .stream] {
        guard let message = try? parser.parse(bytes, framing: framing) else { continue }
        _ = (message.vias, message.from, message.to, message.cseq, message.callID, message.contactHeader, message.routes)
        _ = SIPRequestValidator().check(message)
        let wire = SIPMessageSerializer.serialize(message)
        guard let again = try? parser.parse(wire, framing: .stream) else {
            fatalError("serialize(parse(x)) does not parse: \(String(buffer: wire))")
        }
        precondition(again.startLine == message.startLine, "start line changed in a round trip")
        precondition(again.body == message.body, "body changed in a round trip")
        _ = SIPMessageSerializer.normalized(message)
    }
    return 0
}

#if FUZZ
// SwiftPM links an executable's entry point as `<Target>_main`; hand control to libFuzzer's
// driver from there (its own `main` is then not linked in).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("SIPParserFuzzer_main")
func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzOneInput)
}
#else
import Glibc

/// Without libFuzzer: replay the files named on the command line through the same checks.
@main
enum SIPParserFuzzReplay {
    static func main() {
        for path in CommandLine.arguments.dropFirst() {
            guard let file = fopen(path, "rb") else {
                print("cannot open \(path)")
                exit(66)
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while case let count = fread(&chunk, 1, chunk.count, file), count > 0 { bytes += chunk[0..<count] }
            fclose(file)
            _ = bytes.withUnsafeBufferPointer { fuzzOneInput($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
            print("\(path): ok")
        }
    }
}
#endif
