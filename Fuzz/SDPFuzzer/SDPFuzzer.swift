import FuzzDriver
import Glibc
import SIP

// The SDP parser and offer/answer under libFuzzer (`make fuzz`): whatever parses must serialize
// and parse back to the same value, and must go through both sides of offer/answer without
// trapping (as the offer of a peer, and as the answer to our own offer).

private func key(_ name: String) -> [UInt8] { [UInt8](repeating: 7, count: name == "AEAD_AES_128_GCM" ? 28 : 30) }

private enum Fixture {
    static let suites: [(name: String, keyLength: Int)] = [("AES_CM_128_HMAC_SHA1_80", 30), ("AEAD_AES_128_GCM", 28)]
    static let policies = [
        SDPAudioPolicy(codecs: [.opus, .g722, .pcma, .pcmu], srtp: .required, cryptoSuites: suites),
        SDPAudioPolicy(codecs: [.g722, .pcma], srtp: .off),
    ]
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let session = try? SDPParser.parse(bytes) else { return 0 }
    guard let again = try? SDPParser.parse(session.serialized) else {
        fatalError("serialized SDP does not parse:\n\(session.serialized)")
    }
    precondition(again == session, "SDP changed in a round trip:\n\(session.serialized)")
    for policy in Fixture.policies {
        if let (answer, negotiated) = try? SDPOfferAnswer.answer(offer: session, policy: policy, address: "192.0.2.1", port: 10000, sessionID: "1", makeKey: key) {
            precondition(answer.media.count == session.media.count, "answer m-line count")
            precondition(answer.media[negotiated.mediaIndex].port == 10000, "accepted stream port")
        }
        let offer = SDPOfferAnswer.makeOffer(policy: policy, address: "192.0.2.1", port: 10000, sessionID: "1", makeKey: key)
        _ = try? SDPOfferAnswer.negotiate(offer: offer, answer: session)
    }
    return 0
}

// One entry point for both builds: libFuzzer's driver (scripts/fuzz), or a replay of the files
// named on the command line (a normal build, to reproduce a crash without the fuzzing runtime).
@main
enum FuzzMain {
    static func main() { exit(runFuzzTarget(fuzzOneInput)) }
}
