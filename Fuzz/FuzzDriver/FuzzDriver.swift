// What every fuzz target shares: handing control to libFuzzer's driver (built with -D FUZZ
// -sanitize=fuzzer,address by scripts/fuzz), or replaying files given on the command line through
// the same callback (built normally, to reproduce a crash without the fuzzing runtime).
#if canImport(Glibc)
import Glibc
#endif

public typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>, Int) -> CInt

#if FUZZ
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: FuzzCallback
) -> CInt
#endif

/// Notes of what an input reached, printed after each file when replaying (never while fuzzing):
/// how far a seed gets ("bridged g722/opus", "488: …").
public enum FuzzTrace {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) static var notes: [String] = []

    public static func note(_ text: @autoclosure () -> String) {
        if enabled { notes.append(text()) }
    }
}

/// Runs the target: libFuzzer's driver in FUZZ builds, else a replay of the files named on the
/// command line through the same callback. Returns the exit status.
public func runFuzzTarget(_ callback: FuzzCallback) -> CInt {
    #if FUZZ
    var count = CommandLine.argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    return LLVMFuzzerRunDriver(&count, &arguments, callback)
    #else
    for path in CommandLine.arguments.dropFirst() {
        guard let file = fopen(path, "rb") else {
            print("cannot open \(path)")
            return 66
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while case let count = fread(&chunk, 1, chunk.count, file), count > 0 { bytes += chunk[0..<count] }
        fclose(file)
        FuzzTrace.enabled = true
        FuzzTrace.notes = []
        _ = bytes.withUnsafeBufferPointer { callback($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        print("\(path): ok" + (FuzzTrace.notes.isEmpty ? "" : " — " + FuzzTrace.notes.joined(separator: "; ")))
    }
    return 0
    #endif
}

/// Structured reads from a fuzz input (libFuzzer's FuzzedDataProvider, in spirit): the targets
/// build SIP, SDP, RTP and DNS from fields rather than from raw bytes, so most inputs are
/// well-formed enough to reach the code behind the parsers, and extreme values are picked from
/// tables on purpose. Reading past the end gives zeros and empty data, never a trap.
public struct FuzzInput {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = Array(UnsafeBufferPointer(start: data, count: size))
    }

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public var isEmpty: Bool { offset >= bytes.count }
    public var remaining: Int { max(0, bytes.count - offset) }

    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    public mutating func u16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }

    public mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }

    public mutating func u64() -> UInt64 { UInt64(u32()) << 32 | UInt64(u32()) }

    /// A number in `range` (uniform enough for fuzzing).
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        let span = UInt64(bitPattern: Int64(range.upperBound) &- Int64(range.lowerBound))
        guard span < UInt64.max else { return Int(truncatingIfNeeded: u64()) }
        let pick = span < 256 ? UInt64(byte()) : span < 65536 ? UInt64(u16()) : u64()
        return range.lowerBound &+ Int(truncatingIfNeeded: pick % (span + 1))
    }

    /// One of `choices` (they must not be empty).
    public mutating func pick<T>(_ choices: [T]) -> T { choices[int(in: 0...(choices.count - 1))] }

    /// Up to `max` bytes (the count read first).
    public mutating func data(max: Int) -> [UInt8] {
        let count = min(int(in: 0...max), remaining)
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    /// Up to `max` bytes as text (invalid UTF-8 repaired).
    public mutating func text(max: Int) -> String { String(decoding: data(max: max), as: UTF8.self) }

    /// Everything left.
    public mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return offset < bytes.count ? Array(bytes[offset...]) : []
    }
}
