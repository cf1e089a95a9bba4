// swift-tools-version:6.1
import PackageDescription

// Strict settings for every target: Swift 6 language mode (strict concurrency),
// explicit `any`, and imports internal unless a module re-exports a type in its API.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "symphony-bridge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "symphony-bridge", targets: ["BridgeGateway"]),
        .executable(name: "symphony-cloud-core", targets: ["CloudCoreDaemon"]),
        .library(name: "SIP", targets: ["SIP"]),
        .library(name: "SIPTransport", targets: ["SIPTransport"]),
        .library(name: "SIPUserAgent", targets: ["SIPUserAgent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // SIP messages, URIs, headers, transactions, dialogs, digest: pure values, no I/O.
        .target(
            name: "SIP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        // IPv6 addresses with a zone (link-local) for sockets, and interface lookups.
        .target(
            name: "NetworkAddress",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // NIO channels for UDP, TCP and TLS; framing; flows; keepalive; the transaction layer.
        .target(
            name: "SIPTransport",
            dependencies: [
                "SIP", "NetworkAddress", "CrashContext",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // SIP sessions on top of the endpoint: INVITE sessions (UAC and UAS), registration
        // client, a small registrar; what the legacy trunk and the cloud uplink build on.
        .target(
            name: "SIPUserAgent",
            dependencies: [
                "SIP",
                "SIPTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // TOML configuration files read against a schema: every error with file:line:column, the
        // key path and what is expected (did-you-mean for unknown keys). Shared by both daemons.
        .target(
            name: "TOMLConfig",
            dependencies: [.product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strictSettings
        ),
        // Thin module maps over the C media libraries (pkg-config names, Debian packages).
        .systemLibrary(name: "CSRTP", pkgConfig: "libsrtp2", providers: [.apt(["libsrtp2-dev"])]),
        .systemLibrary(name: "COpus", pkgConfig: "opus", providers: [.apt(["libopus-dev"])]),
        .systemLibrary(name: "CSpanDSP", pkgConfig: "spandsp", providers: [.apt(["libspandsp-dev"])]),
        .systemLibrary(name: "CEpoll"),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        // MQTT status topics over libmosquitto (its own network thread, bridged into Swift):
        // used by the gateway and by the cloud core.
        .target(
            name: "MQTTStatus",
            dependencies: ["CMosquitto", "TOMLConfig", "CrashContext", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // RTP/RTCP, SRTP, codecs, DTMF, jitter buffer, the media bridge and its sockets (its own
        // epoll thread: the packet path does not go through NIO channels, docs/MEDIA.md).
        .target(
            name: "Media",
            dependencies: [
                "CSRTP", "COpus", "CSpanDSP", "CEpoll", "NetworkAddress", "CrashContext",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // The reference cloud core: directory (SQLite), registrar and location, the request
        // pipeline of a record-routing forking proxy, call history, claiming and the device CA.
        .target(
            name: "CloudCore",
            dependencies: [
                "SIP", "SIPTransport", "TOMLConfig", "MQTTStatus", "CrashContext", "BoundedJSON", "DeviceTrust", "DurableState", "Media", "NetworkAddress",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // What both daemons share as systemd services: the notify protocol (READY, STATUS,
        // WATCHDOG) without libsystemd.
        .target(name: "DaemonSupport", dependencies: [.product(name: "Logging", package: "swift-log")], swiftSettings: strictSettings),
        // What each thread handles, for the one line a crash leaves in the journal: a signal
        // handler in C (async-signal-safe), a Swift face for the code that sets it.
        .target(name: "CCrashContext"),
        // JSON from outside read with a size and depth bound first (swift-foundation's decoder
        // traps on some deep documents).
        .target(name: "BoundedJSON", swiftSettings: strictSettings),
        // What the core and the gateway share about device identity (issue 17): how a device
        // certificate names its device and site, the claiming protocol's messages, files written
        // atomically.
        .target(
            name: "DeviceTrust",
            dependencies: [
                "BoundedJSON",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictSettings
        ),
        .target(name: "CrashContext", dependencies: ["CCrashContext"], swiftSettings: strictSettings),
        // What both daemons do to keep their SQLite state through crashes, full disks, broken
        // files and clock steps (issue 18): opening, records queued until written, time.
        .target(
            name: "DurableState",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // The `symphony-cloud-core` executable: run, check-config, admin.
        .executableTarget(
            name: "CloudCoreDaemon",
            dependencies: [
                "CloudCore", "SIP", "SIPTransport", "TOMLConfig", "DaemonSupport", "CrashContext",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The gateway's logic, apart from its executable so that tests reach it: configuration
        // (bridge.toml) and, with the gateway issue, the channel router and call records.
        .target(
            name: "Gateway",
            dependencies: [
                "TOMLConfig", "LegacyLinks", "CloudUplink", "Mesh", "DeviceTrust", "DurableState", "NetworkAddress", "SIP", "SIPTransport", "SIPUserAgent", "Media", "MQTTStatus", "CrashContext",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strictSettings
        ),
        // Targets of the later issues, holding for now the pieces they start from.
        // The SIP trunk to the legacy intercom server: channel plan, OPTIONS supervision.
        .target(
            name: "LegacyLinks",
            dependencies: [
                "SIP", "SIPTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The gateway's cloud side: claiming (HTTPS + CSR), mutual-TLS SIPS registration of the
        // channels over an RFC 5626 flow, keepalive and reconnect.
        .target(
            name: "CloudUplink",
            dependencies: [
                "SIP", "SIPTransport", "BoundedJSON", "DeviceTrust",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The mesh: link-local discovery (mDNS/DNS-SD), the peer table, per-interface sockets,
        // and the ring plans of calls placed on it.
        .target(
            name: "Mesh",
            dependencies: [
                "NetworkAddress", "CrashContext",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The `symphony-bridge` executable.
        .executableTarget(
            name: "BridgeGateway",
            dependencies: [
                "Gateway", "TOMLConfig", "MQTTStatus", "DaemonSupport", "CrashContext", "BoundedJSON",
                "SIP",
                "SIPTransport",
                "SIPUserAgent",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // libFuzzer targets (`make fuzz`): the SIP message parser, SDP with offer/answer, and
        // RTP/RTCP/SRTP through the media bridge; built with -sanitize=fuzzer,address by
        // scripts/fuzz, as plain replay tools otherwise.
        .target(name: "FuzzDriver", path: "Fuzz/FuzzDriver", swiftSettings: strictSettings),
        .executableTarget(
            name: "SIPParserFuzzer",
            dependencies: ["FuzzDriver", "SIP", .product(name: "NIOCore", package: "swift-nio")],
            path: "Fuzz/SIPParserFuzzer",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "SDPFuzzer",
            dependencies: ["FuzzDriver", "SIP"],
            path: "Fuzz/SDPFuzzer",
            exclude: ["seeds"],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "MediaPacketFuzzer",
            dependencies: ["FuzzDriver", "Media", .product(name: "NIOCore", package: "swift-nio")],
            path: "Fuzz/MediaPacketFuzzer",
            exclude: ["seeds"],
            swiftSettings: strictSettings
        ),
        // Targets that reach past the parsers (docs/RELIABILITY.md): a whole bridged call with
        // packets, the far side's answers and re-INVITE offers, mDNS into discovery, SIP streams
        // cut at random points, claiming requests and answers.
        .target(name: "FuzzSDPBuilder", dependencies: ["FuzzDriver", "SIP"], path: "Fuzz/FuzzSDPBuilder", swiftSettings: strictSettings),
        .executableTarget(
            name: "CallPathFuzzer",
            dependencies: ["FuzzDriver", "FuzzSDPBuilder", "Gateway", "Media", "SIP", "SIPUserAgent", .product(name: "NIOCore", package: "swift-nio")],
            path: "Fuzz/CallPathFuzzer",
            exclude: ["seeds"],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "AnswerFuzzer",
            dependencies: ["FuzzDriver", "FuzzSDPBuilder", "Gateway", "Media", "SIP", "SIPUserAgent", .product(name: "NIOCore", package: "swift-nio")],
            path: "Fuzz/AnswerFuzzer",
            exclude: ["seeds", "sdp.dict"],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "MDNSFuzzer",
            dependencies: ["FuzzDriver", "Mesh", "NetworkAddress"],
            path: "Fuzz/MDNSFuzzer",
            exclude: ["seeds"],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "StreamFramingFuzzer",
            dependencies: ["FuzzDriver", "SIP", "SIPTransport", .product(name: "NIOCore", package: "swift-nio")],
            path: "Fuzz/StreamFramingFuzzer",
            exclude: ["seeds"],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "ClaimingFuzzer",
            dependencies: [
                "FuzzDriver", "CloudCore", "CloudUplink",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Fuzz/ClaimingFuzzer",
            exclude: ["seeds"],
            swiftSettings: strictSettings
        ),
        .target(name: "CMallocCounter", path: "Benchmarks/CMallocCounter"),
        .executableTarget(
            name: "SIPBenchmarks",
            dependencies: ["SIP", "CMallocCounter", .product(name: "NIOCore", package: "swift-nio")],
            path: "Benchmarks/SIPBenchmarks",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "MediaBenchmarks",
            dependencies: [
                "Media", "COpus", "CSRTP", "CSpanDSP",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/MediaBenchmarks",
            swiftSettings: strictSettings
        ),
        // What the benchmarks running the release daemons share (ports, seed, processes, /proc).
        .target(
            name: "BenchDaemons",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            path: "Benchmarks/BenchDaemons",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "GatewayBenchmarks",
            dependencies: [
                "BenchDaemons", "Gateway", "Media", "SIP", "SIPTransport", "SIPUserAgent",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/GatewayBenchmarks",
            swiftSettings: strictSettings
        ),
        // A day in an hour (issue 18, docs/RELIABILITY.md "A day in an hour"): thousands of short
        // calls both ways on all 14 channels through the release daemons, with a core restart, a
        // broker restart and a full disk on the way; RSS, descriptors, threads and database sizes
        // sampled; every call placed accounted for in the records.
        .executableTarget(
            name: "SoakBenchmarks",
            dependencies: [
                "BenchDaemons", "Gateway", "SIP", "SIPTransport", "SIPUserAgent", "PeerTestSupport", "DurableState",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/SoakBenchmarks",
            swiftSettings: strictSettings
        ),
        // The mesh fallback's timings on a namespace LAN (root): cut → uplink down, dial → the
        // mesh station ringing before and after the outage is noticed, the idle uplink's bytes.
        .executableTarget(
            name: "MeshBenchmarks",
            dependencies: ["MeshTestSupport", "PeerTestSupport", "Gateway"],
            path: "Benchmarks/MeshBenchmarks",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "SIPTests",
            dependencies: ["SIP", .product(name: "NIOCore", package: "swift-nio")],
            exclude: ["Fixtures"],
            swiftSettings: strictSettings
        ),
        // Test support shared by the suites that drive real peers (sipp, stunnel4, ffmpeg, …).
        .target(
            name: "PeerTestSupport", dependencies: [.product(name: "Crypto", package: "swift-crypto")], path: "Tests/PeerTestSupport",
            swiftSettings: strictSettings),
        // A site LAN of network namespaces (switch, cloud host, gateway hosts) for the mesh tests
        // and the mesh benchmark.
        .target(name: "MeshTestSupport", dependencies: ["PeerTestSupport", "Gateway"], path: "Tests/MeshTestSupport", swiftSettings: strictSettings),
        .testTarget(
            name: "SIPTransportTests",
            dependencies: [
                "PeerTestSupport",
                "NetworkAddress",
                "SIP",
                "SIPTransport",
                "SIPUserAgent",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Scenarios"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "MediaTests",
            dependencies: [
                "Media", "CSpanDSP", "CSRTP", "PeerTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "TOMLConfigTests", dependencies: ["TOMLConfig"], swiftSettings: strictSettings),
        .testTarget(
            name: "CloudCoreTests",
            dependencies: [
                "DeviceTrust", "DurableState", "Media",
                "CloudCore", "PeerTestSupport", "SIP", "SIPTransport", "BoundedJSON",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway", "TOMLConfig", "PeerTestSupport", "SIP", "SIPTransport", "SIPUserAgent", "Media", "MQTTStatus", "DaemonSupport", "DurableState", "DeviceTrust", "CloudUplink",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The whole call path on loopback: baresip stations and clients, the gateway, the core.
        .testTarget(
            name: "GatewayEndToEndTests",
            dependencies: [
                "Gateway", "CloudCore", "CloudUplink", "PeerTestSupport", "MeshTestSupport", "SIP", "SIPTransport", "SIPUserAgent", "Media", "Mesh", "NetworkAddress",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "LegacyLinksTests",
            dependencies: [
                "LegacyLinks", "PeerTestSupport", "SIP", "SIPTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CloudUplinkTests",
            dependencies: [
                "DeviceTrust",
                "CloudUplink", "CloudCore", "PeerTestSupport", "SIP", "SIPTransport", "NetworkAddress",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "MeshTests", dependencies: ["Mesh", "NetworkAddress", "PeerTestSupport", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")], swiftSettings: strictSettings),
    ],
    swiftLanguageModes: [.v6]
)
