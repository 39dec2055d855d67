# Thin wrapper over CMake. `make run` and `make test` set up what is missing
# (tools/install-deps) and build first.
BUILD ?= build
JOBS ?= 2
MAKEFLAGS += --no-print-directory

.PHONY: all deps build run test test-asan soak fuzz reliability-report bench clean

all: build

deps:
	@tools/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

run: build
	@tools/run-local $(BUILD)/genrelay

test: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 300

test-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGENRELAY_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j$(JOBS) --timeout 600

# The long reliability runs: more jobs and kills, minute-long
# outages, the store-fault tests waiting for every earlier job. Figures go to
# $(BUILD)/reliability and are printed by tools/reliability-report.
# Names of tests/e2e/*/NAME.test.js.
SOAK_TESTS ?= crash outage store_faults slow_clients
soak: build
	@fail=0; for t in $(SOAK_TESTS); do \
	  echo "== soak: $$t"; \
	  GENRELAY_SOAK=1 GENRELAY_STORE_FAULT_WAIT=1 GENRELAY_SRC=$(CURDIR) \
	  GENRELAY_BIN=$(abspath $(BUILD))/genrelay GENRELAY_RELIABILITY_DIR=$(abspath $(BUILD))/reliability \
	  GENRELAY_RESOLVE_SHIM=$(abspath $(BUILD))/libgenrelay_resolve_shim.so \
	  node --test --test-reporter=spec --test-timeout=3600000 tests/e2e/*/$$t.test.js || fail=1; \
	done; tools/reliability-report $(BUILD)/reliability; exit $$fail

# Every libFuzzer target for FUZZ_SECONDS each (clang with libFuzzer needed;
# tools/install-deps installs it). New inputs stay in $(BUILD)/fuzz/corpus-*.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= urlguard sign api callbacks
fuzz: build
	@test -d $(BUILD)/fuzz || { echo "make fuzz: no fuzz targets were built (clang with libFuzzer missing)"; exit 2; }
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  GENRELAY_FUZZ_MODE=long tests/fuzz/run-fuzzer $$t $(FUZZ_SECONDS) $(BUILD) || fail=1; \
	done; tools/reliability-report $(BUILD)/reliability; exit $$fail

reliability-report:
	@tools/reliability-report $(BUILD)/reliability

bench: build
	@GENRELAY_BENCH=1 tools/install-deps
	@bench/run $(BUILD)
	@node bench/fronts.js $(BUILD)

clean:
	rm -rf $(BUILD) build-asan
