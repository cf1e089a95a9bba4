import ArgumentParser
import Foundation
import Gateway
import TOMLConfig

/// `symphony-bridge calls`: the gateway's own call records (`<state_dir>/calls.sqlite`), read
/// only, while the gateway runs — a table, `--csv` (RFC 4180) or `--json` (one object per call).
struct CallsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calls", abstract: "Show the gateway's call records (newest last).")

    @Option(help: "The configuration file (for the state directory).") var config = "/etc/symphony-bridge/bridge.toml"
    @Option(help: "The records file (instead of the config's state directory).") var file: String?
    @Option(help: "Only calls that started since: an ISO 8601 time (2026-11-30T08:00:00Z), a date (2026-11-30) or an age (90m, 12h, 7d).")
    var since: String?
    @Flag(help: "Print CSV.") var csv = false
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if csv && json { throw ValidationError("--csv and --json exclude each other") }
        if let since, Self.parseSince(since, now: Date()) == nil { throw ValidationError("--since \(since): not a time, a date or an age like 12h") }
    }

    /// A time, a date (midnight UTC) or an age before `now`.
    static func parseSince(_ text: String, now: Date) -> Date? {
        if let unit = text.last, let amount = Double(text.dropLast()), amount >= 0, amount < 1e6 {
            switch unit {
            case "s": return now.addingTimeInterval(-amount)
            case "m": return now.addingTimeInterval(-amount * 60)
            case "h": return now.addingTimeInterval(-amount * 3600)
            case "d": return now.addingTimeInterval(-amount * 86400)
            default: break
            }
        }
        if let time = ISO8601DateFormatter().date(from: text) { return time }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        return day.date(from: text)
    }

    func run() throws {
        let path: String
        if let file {
            path = file
        } else {
            do {
                path = try BridgeConfiguration.load(file: config).stateDirectory + "/calls.sqlite"
            } catch {
                FileHandle.standardError.write(Data((error.description + "\n").utf8))
                throw ExitCode(ConfigErrors.exitStatus)
            }
        }
        guard FileManager.default.fileExists(atPath: path) else {
            FileHandle.standardError.write(Data("\(path): no call records yet\n".utf8))
            throw ExitCode(66)  // EX_NOINPUT
        }
        let contents: GatewayCallRecordFile.Contents
        do {
            contents = try GatewayCallRecordFile.read(path, since: since.flatMap { Self.parseSince($0, now: Date()) }?.timeIntervalSince1970)
        } catch {
            FileHandle.standardError.write(Data("\(path): cannot read the records: \(error)\n".utf8))
            throw ExitCode(65)  // EX_DATAERR
        }
        print(json ? Self.json(contents) : csv ? Self.csv(contents.records) : Self.table(contents), terminator: "")
    }

    static func time(_ seconds: Double?) -> String {
        guard let seconds, seconds.isFinite, abs(seconds) < 1e11 else { return "" }
        return ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: seconds))
    }

    static func duration(_ record: GatewayCallRecord) -> String {
        guard let answered = record.answeredAt, let ended = record.endedAt, ended >= answered, ended - answered < 1e7 else { return "" }
        return String(format: "%.1f", ended - answered)
    }

    static let columns = ["started_at", "answered_at", "ended_at", "duration_s", "direction", "channel", "peer", "status", "codec", "reason"]

    static func fields(_ r: GatewayCallRecord) -> [String] {
        [time(r.startedAt), time(r.answeredAt), time(r.endedAt), duration(r), r.direction.rawValue, String(r.channel), r.peer, r.status.rawValue, r.codec ?? "", r.reason ?? ""]
    }

    static func csv(_ records: [GatewayCallRecord]) -> String {
        func field(_ text: String) -> String {
            text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
        }
        return ([columns.joined(separator: ",")] + records.map { fields($0).map(field).joined(separator: ",") }).joined(separator: "\r\n") + "\r\n"
    }

    static func json(_ contents: GatewayCallRecordFile.Contents) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var lines: [String] = []
        for r in contents.records {
            var object: [String: String] = [:]
            for (name, value) in zip(columns, fields(r)) where !value.isEmpty { object[name] = value }
            lines.append(String(decoding: (try? encoder.encode(object)) ?? Data("{}".utf8), as: UTF8.self))
        }
        return "[" + lines.joined(separator: ",\n ") + "]\n"
    }

    static func table(_ contents: GatewayCallRecordFile.Contents) -> String {
        var out = ""
        for r in contents.records {
            let peer = r.peer.count > 40 ? String(r.peer.prefix(39)) + "…" : r.peer
            out += "\(time(r.startedAt))  ch\(String(r.channel).padding(toLength: 3, withPad: " ", startingAt: 0)) \(r.direction.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0)) \(r.status.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)) \(duration(r).isEmpty ? "-" : duration(r) + " s")  \(peer)"
            if let reason = r.reason, r.status != .answered { out += "  (\(reason.prefix(80)))" }
            out += "\n"
        }
        for s in contents.summaries {
            out += "\(time(s.firstStartedAt)) … \(time(s.lastStartedAt)): \(s.calls) calls summarised (the disk could not take them one by one): \(s.statuses)\n"
        }
        let counts = Dictionary(grouping: contents.records, by: \.status).map { "\($0.key.rawValue) \($0.value.count)" }.sorted()
        out += "\(contents.records.count) call(s)" + (counts.isEmpty ? "" : ": " + counts.joined(separator: ", "))
        if contents.unreadable > 0 { out += "; \(contents.unreadable) unreadable row(s) skipped" }
        return out + "\n"
    }
}
