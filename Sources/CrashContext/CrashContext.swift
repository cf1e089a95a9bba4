import CCrashContext

/// What the current thread is handling — a SIP message from whom with which Call-ID, the media
/// of which call, an mDNS packet from which host — kept where a crash can print it: a fatal
/// signal leaves one line on stderr (the journal under systemd) naming it, before the Swift
/// runtime's own report (docs/RELIABILITY.md). Never put secrets in it (no SDP, no keys).
///
/// Setting it is a copy of at most 240 bytes into thread-local memory: cheap enough for every
/// message and every media packet.
public enum CrashContext {
    /// Installs the crash line for this process (once; later calls do nothing).
    public static func install(daemon: String, journal: Bool) {
        crash_context_install(daemon, journal ? 1 : 0)
    }

    public static func set(_ text: String) {
        var text = text
        text.withUTF8 { crash_context_set(UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) }
    }

    /// The same from bytes prepared beforehand (the media path: no formatting per packet).
    public static func set(_ bytes: UnsafeRawBufferPointer) {
        crash_context_set(bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
    }

    public static func clear() {
        crash_context_clear()
    }

    /// The calling thread's context (tests).
    public static var current: String {
        var buffer = [CChar](repeating: 0, count: Int(CRASH_CONTEXT_MAX))
        let length = buffer.withUnsafeMutableBufferPointer { crash_context_get($0.baseAddress, $0.count) }
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writes the line a crash with `signal` would write now (tests; the daemon's `crash-line` check).
    public static func report(signal: Int32) {
        crash_context_report(signal)
    }
}
