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
        _ = bytes.withUnsafeBufferPointer { callback($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        print("\(path): ok")
    }
    return 0
    #endif
}
