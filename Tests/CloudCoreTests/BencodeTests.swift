import CloudCore
import Testing

/// The ng protocol's encoding (issue 19): round trips, and replies from the network that are
/// malformed, deep, long or lying about lengths refused with an error — never a trap.
@Suite("Bencode")
struct BencodeTests {
    @Test func valuesRoundTripAndKeysAreSorted() throws {
        let value = Bencode.dictionary([
            "sdp": .string("v=0\r\n"), "result": .string("ok"), "list": .list([.integer(-7), .string(""), .dictionary([:])]),
        ])
        let bytes = value.encoded
        #expect(String(decoding: bytes, as: UTF8.self) == "d4:listli-7e0:dee6:result2:ok3:sdp5:v=0\r\ne")
        #expect(try Bencode(decoding: bytes) == value)
        #expect(value["result"]?.string == "ok")
    }

    @Test(arguments: [
        "", "d", "l", "i12", "ie", "i-e", "i--1e", "i99999999999999999999999e", "5:abc", "-1:a", "99999999999999999999:a",
        "d3:abce", "di1e1:ae", "x", "4:abcdX", "d4:sdp", "i1ei2e",
        String(repeating: "l", count: 40) + String(repeating: "e", count: 40),
    ])
    func malformedRepliesAreRefused(_ text: String) {
        #expect(throws: Bencode.DecodingError.self) { try Bencode(decoding: Array(text.utf8)) }
    }

    @Test func randomBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("dlie0123456789:-ab".utf8)
        for _ in 0..<5_000 {
            let bytes = (0..<Int.random(in: 0...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }
            _ = try? Bencode(decoding: bytes)
        }
    }
}
