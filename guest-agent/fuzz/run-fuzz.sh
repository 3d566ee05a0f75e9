#!/bin/bash
# Fuzzes what kata-agent decodes from the wire (ttrpc frames, requests, OCI JSON) with
# libFuzzer, from the seed corpus in fuzz/corpus.
#
#   guest-agent/fuzz/run-fuzz.sh [SECONDS]     (default 60)
#
# Builds agent-fuzz with coverage and AddressSanitizer into guest-agent/.build-fuzz (kept out
# of git), then runs it; new interesting inputs go to a scratch corpus, never into
# fuzz/corpus. A crash leaves crash-* in the current directory: rerun it with
# `swift run agent-fuzz crash-...` (no sanitizer needed), fix, and commit the input to
# fuzz/corpus so the unit tests replay it from then on.
set -euo pipefail
# libFuzzer comes from the Swift toolchain's clang runtime, without its main: SwiftPM
# gives executables an entry point of its own, which calls LLVMFuzzerRunDriver.
runtime=$(ls "$(dirname "$(readlink -f "$(command -v swiftc)")")"/../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a | head -n 1)
seconds=${1:-60}
case "$seconds" in ''|*[!0-9]*) echo "run-fuzz: SECONDS must be a whole number, not '$seconds'" >&2; exit 2;; esac
cd "$(dirname "$0")/.."
swift build -c release --product agent-fuzz --build-path .build-fuzz \
    -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp -Xswiftc -DFUZZING \
    -Xlinker "$runtime" -Xlinker -lstdc++ 2>&1 | grep -E "error|warning: |Compiling agent|Build" || true
test -x .build-fuzz/release/agent-fuzz || { echo "run-fuzz: the build failed" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
.build-fuzz/release/agent-fuzz "$scratch" fuzz/corpus -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1
