import FuzzDriver
import Glibc
import NIOCore
import SIP

// The message parser under libFuzzer (`make fuzz`): every input is parsed as a datagram and as
// a stream message; whatever parses is serialized, normalized and parsed again, and the typed
// views are read, so that the whole path a received message takes is exercised.
//
// scripts/fuzz builds it with libFuzzer; a normal build replays files (FuzzDriver).

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

// One entry point for both builds: libFuzzer's driver (scripts/fuzz), or a replay of the files
// named on the command line (a normal build, to reproduce a crash without the fuzzing runtime).
@main
enum FuzzMain {
    static func main() { exit(runFuzzTarget(fuzzOneInput)) }
}
