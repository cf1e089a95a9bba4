import ArgumentParser
import Foundation
import Gateway
import Logging
import NIOCore
import NIOPosix
import SIP
import SIPTransport
import TOMLConfig

/// `symphony-bridge demo`: `make run`'s demo calls. A built-in legacy station (plain UDP, G.722,
/// 800 Hz tone) and a built-in cloud client (TLS to the core, digest, Opus over SRTP, 1200 Hz)
/// call each other through a running gateway and core, once each way; each end measures the tone
/// it hears. Prints a summary; exits 0 when both calls carried audio both ways.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Place the demo calls through a running gateway and cloud core (make run).")

    @Option(help: "The gateway's legacy SIP address (UDP).") var gateway = "127.0.0.1:5060"
    @Option(help: "The cloud core's SIPS address for clients (its client_tls_listen).") var core = "127.0.0.1:5063"
    @Option(help: "The CA that signed the core's certificate.") var ca: String
    @Option(help: "The cloud domain.") var domain = "symphony.local"
    @Option(help: "The cloud user the built-in client registers as.") var user = "bob"
    @Option(help: "Its password.") var password: String
    @Option(help: "Where the built-in legacy station listens.") var station = "127.0.0.1:5062"
    @Option(help: "The legacy number the station dials (a channel whose cloud target is the client's user).") var number = "101"
    @Option(help: "The channel AOR the client calls (a channel whose legacy target is the station).") var channel = "gw1-ch2"
    @Option(help: "Seconds of audio per call.") var seconds = 3
    @Flag(help: "Keep the built-in phones answering (with their tones) until Ctrl-C.") var stay = false
    @Flag(help: "Place no calls: only bring the built-in phones up (with --stay).") var noCalls = false

    func run() async throws {
        var logger = Logger(label: "demo")
        logger.logLevel = .warning
        guard let gatewayAddress = HostPort(gateway), let coreAddress = HostPort(core), let stationAddress = HostPort(station),
            let listen = try? SocketAddress(ipAddress: stationAddress.host, port: stationAddress.port)
        else { throw ValidationError("addresses are host:port") }
        let group = MultiThreadedEventLoopGroup.singleton
        let door = try await DemoPhone.start(.legacyStation(listen: listen), frequency: 800, group: group, logger: logger)
        let client = try await DemoPhone.start(
            .cloudClient(server: SIPDestination(transport: .tls, host: coreAddress.host, port: coreAddress.port), caFile: ca, user: user, password: password, domain: domain),
            frequency: 1200, group: group, logger: logger)
        say("demo: built-in legacy station sip:door@\(station) (G.722, 800 Hz) and cloud client \(user)@\(domain) (Opus/SRTP, 1200 Hz) are up")

        var ok = true
        if noCalls {
            try await stayUp(client, coreAddress)
            return
        }
        let legacyCall = try await place(
            "legacy station dials \(number) → gateway → cloud → \(user)", caller: door, callee: client, callerHears: 1200, calleeHears: 800,
            target: SIPURI(user: number, host: gatewayAddress.host, port: gatewayAddress.port),
            via: SIPDestination(transport: .udp, host: gatewayAddress.host, port: gatewayAddress.port))
        ok = ok && legacyCall
        let cloudCall = try await place(
            "\(user) calls \(channel) → cloud → gateway → legacy station", caller: client, callee: door, callerHears: 800, calleeHears: 1200,
            target: SIPURI(secure: true, user: channel, host: domain),
            via: SIPDestination(transport: .tls, host: coreAddress.host, port: coreAddress.port))
        ok = ok && cloudCall
        say(ok ? "demo: both calls carried audio both ways." : "demo: a demo call FAILED (see above and the logs).")
        if stay { try await stayUp(client, coreAddress) }
        if !ok { throw ExitCode(1) }
    }

    /// Keeps the phones up; the client refreshes its registration (1 h) every 50 minutes.
    private func stayUp(_ client: DemoPhone, _ core: HostPort) async throws {
        say("demo: the built-in phones stay up and answer with their tones; Ctrl-C stops them.")
        while true {
            try await Task.sleep(for: .seconds(3000))
            _ = try? await client.agent.register(at: SIPDestination(transport: .tls, host: core.host, port: core.port), expires: 3600)
        }
    }

    private func place(
        _ title: String, caller: DemoPhone, callee: DemoPhone, callerHears: Double, calleeHears: Double, target: SIPURI, via: SIPDestination
    ) async throws -> Bool {
        let before = await callee.incoming.count
        let started = ContinuousClock.now
        let handle = try await caller.call(target, via: via)
        while await !caller.isAnswered(handle), await !caller.hasEnded(handle), ContinuousClock.now - started < .seconds(15) {
            try await Task.sleep(for: .milliseconds(20))
        }
        guard await caller.isAnswered(handle) else {
            say("  \(title): not answered  FAILED")
            await caller.hangUp(handle)
            return false
        }
        let setup = ContinuousClock.now - started
        try await Task.sleep(for: .seconds(seconds))
        let heardByCaller = await caller.measurement(handle)
        let calleeHandle = await callee.incoming.count > before ? await callee.incoming.last : nil
        let heardByCallee = if let calleeHandle { await callee.measurement(calleeHandle) } else { DemoPhone.Measurement?.none }
        await caller.hangUp(handle)
        try await Task.sleep(for: .milliseconds(300))
        func verdict(_ m: DemoPhone.Measurement?, _ expected: Double) -> (Bool, String) {
            guard let m else { return (false, "nothing") }
            return (m.heard(expected), String(format: "%.0f Hz at %.1f dBFS", m.frequency, m.levelDBFS))
        }
        let (callerOK, callerText) = verdict(heardByCaller, callerHears)
        let (calleeOK, calleeText) = verdict(heardByCallee, calleeHears)
        let ms = Double(setup.components.attoseconds) / 1e15 + Double(setup.components.seconds) * 1000
        say("  \(title): answered in \(String(format: "%.0f", ms)) ms")
        say("    caller heard \(callerText) (expected \(Int(callerHears)) Hz)  \(callerOK ? "ok" : "FAILED")")
        say("    callee heard \(calleeText) (expected \(Int(calleeHears)) Hz)  \(calleeOK ? "ok" : "FAILED")")
        return callerOK && calleeOK
    }
}

/// One line to stdout at once (unbuffered), also when stdout is a pipe or a file.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
