public import Foundation
import NIOCore
import NIOPosix

/// What the benchmarks that run the release daemons as processes share (`GatewayBenchmarks`,
/// `SoakBenchmarks`): free ports, a seeded core with a claimable gateway, processes and their
/// figures from /proc.
public enum BenchDaemons {
    /// A free loopback port (bound and let go).
    public static func freePort(udp: Bool = false) throws -> Int {
        let group = MultiThreadedEventLoopGroup.singleton
        let channel = try (udp ? DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
            : ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait())
        defer { try? channel.close().wait() }
        return channel.localAddress!.port!
    }

    /// A company with one site, users u<n> (password pw-<n>) for `users`, device gw1 with 14 channels.
    public static func seed(company: String, users: ClosedRange<Int>) -> String {
        var seed = "[[company]]\nname = \"\(company)\"\n[[project]]\ncompany = \"\(company)\"\nname = \"p\"\n[[site]]\ncompany = \"\(company)\"\nproject = \"p\"\nname = \"s\"\n"
        for n in users { seed += "[[user]]\nname = \"u\(n)\"\nsite = \"s\"\npassword = \"pw-\(n)\"\n" }
        return seed + "[[device]]\nname = \"gw1\"\nsite = \"s\"\nchannels = 14\n"
    }

    /// The core's config: state under `scratch`/core, the seed at `scratch`/seed.toml, errors only.
    public static func coreConfig(domain: String, scratch: String, sipsPort: Int, claimPort: Int, ringSeconds: Int) -> String {
        """
        [core]
        domain = "\(domain)"
        state_dir = "\(scratch)/core"
        log_level = "error"
        seed_file = "\(scratch)/seed.toml"
        [sip]
        tls_listen = ["127.0.0.1:\(sipsPort)"]
        advertise = "127.0.0.1"
        [claiming]
        listen = "127.0.0.1:\(claimPort)"
        [calls]
        ring_s = \(ringSeconds)
        """
    }

    /// Runs a built daemon (or an absolute path), its output appended to `log`.
    public static func spawn(_ tool: String, _ arguments: [String], log: String, buildDirectory: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool.hasPrefix("/") ? tool : "\(buildDirectory)/\(tool)")
        process.arguments = arguments
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = FileHandle(forWritingAtPath: log)
        handle?.seekToEndOfFile()
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
        return process
    }

    public struct Timeout: Error, CustomStringConvertible {
        public var description: String
    }

    public static func waitFor(_ what: String, seconds: Double = 20, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return }
            usleep(50_000)
        }
        throw Timeout(description: "bench: timed out waiting for \(what)")
    }

    public static func fileContains(_ path: String, _ text: String) -> Bool {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").contains(text)
    }

    public static func occurrences(_ path: String, _ text: String) -> Int {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").components(separatedBy: text).count - 1
    }

    /// A one-time claiming code for gw1 from `admin claim-code`.
    public static func claimCode(config: String, buildDirectory: String) throws -> String {
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: "\(buildDirectory)/symphony-cloud-core")
        tool.arguments = ["admin", "claim-code", "--config", config, "gw1"]
        let pipe = Pipe()
        tool.standardOutput = pipe
        try tool.run()
        tool.waitUntilExit()
        return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: " ").last
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
    }

    // MARK: Figures from /proc

    public static func processCPUSeconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return (Double(fields[11]) ?? 0) / ticks + (Double(fields[12]) ?? 0) / ticks  // utime, stime
    }

    public static func residentMB(_ pid: Int32) -> Double { Double(statusField(pid, "VmRSS:")) / 1024 }
    public static func threads(_ pid: Int32) -> Int { statusField(pid, "Threads:") }
    public static func descriptors(_ pid: Int32) -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0 }

    /// The number after `name` in /proc/<pid>/status (kB for memory).
    static func statusField(_ pid: Int32, _ name: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) })
        else { return 0 }
        return Int(line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? 0
    }
}
