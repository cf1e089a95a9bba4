# Symphony Bridge — the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT ?= swift
BUILD_FLAGS ?=
FUZZ_RUNS ?= 5000000
FUZZ_SECONDS ?= 14400

.PHONY: all bootstrap build test run bench fuzz clean deb deb-test

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(SWIFT) build $(BUILD_FLAGS)

# The whole suite: unit tests, RFC 4475 conformance, real-peer tests (sipp, baresip, stunnel4,
# mosquitto, …), then the Debian package built and installed into a clean Debian 12 root.
test: bootstrap
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	$(SWIFT) test --skip-build $(BUILD_FLAGS) --skip MeshFallbackTests --skip GatewayEndToEndTests.HostileInputTests --skip ServiceUnderAttackTests --skip NATTraversalTests
	# The mesh suite alone: its namespaces run three daemons and four baresips, and beside the
	# other suites (in parallel) that load made sipp scenarios miss their 40 s on 2 cores.
	$(SWIFT) test --skip-build $(BUILD_FLAGS) --filter MeshFallbackTests
	# Behind NAT (namespaces, MASQUERADE): alone too — its keepalive and healing checks time a
	# NAT's shortened timeouts.
	$(SWIFT) test --skip-build $(BUILD_FLAGS) --filter NATTraversalTests
	# Floods of 4,000 held connections with set-up deadlines of 5 s: alone, as the mesh suite.
	$(SWIFT) test --skip-build $(BUILD_FLAGS) --filter ServiceUnderAttackTests
	# The abuse suite alone (docs/RELIABILITY.md): both daemons as processes under 71 hostile
	# cases, each followed by a health check with deadlines, then normal calls with tones.
	$(SWIFT) test --skip-build $(BUILD_FLAGS) --filter GatewayEndToEndTests.HostileInputTests
	$(MAKE) deb-test

# The whole call path on this box with the demo config (etc/demo/): cloud core, gateway (claims
# itself), one demo call each way with tone checks, then running until Ctrl-C (see README.md).
run: bootstrap
	$(SWIFT) build $(BUILD_FLAGS) --product symphony-cloud-core
	$(SWIFT) build $(BUILD_FLAGS) --product symphony-bridge
	scripts/run-demo

bench: bootstrap
	@scripts/bootstrap bench
	$(SWIFT) build -c release --product SIPBenchmarks
	$(SWIFT) build -c release --product MediaBenchmarks
	$(SWIFT) build -c release --product symphony-cloud-core
	$(SWIFT) build -c release --product symphony-bridge
	$(SWIFT) build -c release --product GatewayBenchmarks
	$(SWIFT) build -c release --product MeshBenchmarks
	$(SWIFT) build -c release --product SoakBenchmarks
	.build/release/SIPBenchmarks
	.build/release/MediaBenchmarks
	.build/release/GatewayBenchmarks
	@if [ "$${BENCH_SIGNALLING:-1}" != 0 ]; then scripts/bench-signalling; fi
	@if [ "$${BENCH_ATTACK:-1}" != 0 ]; then scripts/bench-attack; fi
	@if [ "$${BENCH_MESH:-1}" != 0 ]; then .build/release/MeshBenchmarks; fi
	# A day in an hour (docs/RELIABILITY.md): SOAK_SECONDS=3600 by default; BENCH_SOAK=0 skips it.
	@if [ "$${BENCH_SOAK:-1}" != 0 ]; then .build/release/SoakBenchmarks; fi

# The Debian package: both daemons built release with the Swift runtime linked statically,
# hardened systemd units, man pages; lintian must report no errors and no warnings.
deb:
	@scripts/bootstrap deb
	scripts/build-deb

# The install test (root): the .deb into a debootstrap'ed Debian 12, checked, started, purged.
deb-test: deb
	scripts/deb-test

fuzz: bootstrap
	scripts/fuzz $(FUZZ_RUNS) $(FUZZ_SECONDS)

clean:
	$(SWIFT) package clean
