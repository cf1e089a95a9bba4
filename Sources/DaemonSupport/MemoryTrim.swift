import Foundation

@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32

/// Gives memory that is free inside the process back to the system (glibc's `malloc_trim(0)`).
///
/// glibc's allocator keeps what a burst freed: after 3,000 connections held and closed, the core's
/// RSS stayed ~25 MB higher each time, although every byte was freed (jemalloc gave it all back;
/// heaptrack found no leak). The daemons call this every 15 s (a cooperative thread, never an event loop), so that a
/// flood leaves the RSS where it was (docs/RELIABILITY.md "Service under attack").
public enum MemoryTrim {
    @discardableResult
    public static func now() -> Bool {
        glibcMallocTrim(0) == 1
    }

    /// `now()` every `interval` until the task is cancelled (off the event loops: a cooperative
    /// thread; a trim takes a few milliseconds).
    public static func periodically(every interval: Duration = .seconds(15)) -> Task<Void, Never> {
        Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { return }
                now()
            }
        }
    }
}
