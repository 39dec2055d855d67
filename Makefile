# Thin wrapper over CMake. `make run` and `make test` set up what is missing
# (tools/install-deps) and build first.
BUILD ?= build
JOBS ?= 2
MAKEFLAGS += --no-print-directory

.PHONY: all deps build run test test-asan bench clean

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
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS) --timeout 600

bench: build
	@GENRELAY_BENCH=1 tools/install-deps
	@bench/run $(BUILD)

clean:
	rm -rf $(BUILD) build-asan
