#!/bin/bash
# Fuzzes a device model's guest-facing surface (virtio-mmio registers, rings, chains,
# requests; the host side moving too) with libFuzzer and AddressSanitizer, from the
# committed corpus in fuzz/devices/DEVICE.
#
#   fuzz/run-device-fuzz.sh DEVICE [RUNS [SECONDS]]
#       DEVICE: block, net, vsock, entropy or fs (virtio-fs)
#       RUNS: executions (default 100000); SECONDS: stop sooner, after that long (default:
#       no limit). Either way the run ends with its statistics (what it did:
#       stat::number_of_executed_units) and its finds merged, so a long run fits a time box.
#
# Builds kasa-device-fuzz with coverage and ASan into .build-fuzz (kept out of git), runs
# it on one core, then merges what it found into fuzz/devices/DEVICE (only inputs that add
# coverage: the corpus stays small). The unit tests (DeviceFuzzingTests) replay that
# corpus. A crash leaves crash-* in the current directory: rerun it with
# `KASA_FUZZ_DEVICE=DEVICE swift run kasa-device-fuzz crash-...` (no sanitizer needed),
# fix, and commit the input to the corpus.
set -euo pipefail
device=${1:-}
runs=${2:-100000}
seconds=${3:-0}
case "$device" in block|net|vsock|entropy|fs) ;; *) echo "run-device-fuzz: DEVICE must be block, net, vsock, entropy or fs, not '$device'" >&2; exit 2;; esac
case "$runs" in ''|*[!0-9]*) echo "run-device-fuzz: RUNS must be a whole number, not '$runs'" >&2; exit 2;; esac
case "$seconds" in ''|*[!0-9]*) echo "run-device-fuzz: SECONDS must be a whole number, not '$seconds'" >&2; exit 2;; esac
# libFuzzer comes from the Swift toolchain's clang runtime, without its main: SwiftPM
# gives executables an entry point of its own, which calls LLVMFuzzerRunDriver.
runtime=$(ls "$(dirname "$(readlink -f "$(command -v swiftc)")")"/../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a | head -n 1)
cd "$(dirname "$0")/.."
swift build -c release --product kasa-device-fuzz --build-path .build-fuzz \
    -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp -Xswiftc -DFUZZING \
    -Xlinker "$runtime" -Xlinker -lstdc++ 2>&1 | grep -E "error|warning: |Build" || true
test -x .build-fuzz/release/kasa-device-fuzz || { echo "run-device-fuzz: the build failed" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export KASA_FUZZ_DEVICE=$device
# No allocation stacks: recording one per malloc cost a third of the run (vsock: 250
# against 380 executions/s). A fault still stops the run with its input; rerun that with
# ASAN_OPTIONS= for the full report.
export ASAN_OPTIONS=${ASAN_OPTIONS-malloc_context_size=0}
# The fuzzer's progress lines go to a log; the end of it (and a crash's report) is shown.
log="$scratch/fuzz.log"
status=0
.build-fuzz/release/kasa-device-fuzz "$scratch" "fuzz/devices/$device" -runs="$runs" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
    -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || status=$?
grep -E "^(INFO: (Seed|Loaded)|#[0-9]+[[:space:]]+DONE|stat::|Done)" "$log" || true
if [ "$status" != 0 ]; then tail -n 60 "$log" >&2; echo "run-device-fuzz: the fuzzer stopped with status $status" >&2; exit "$status"; fi
.build-fuzz/release/kasa-device-fuzz -merge=1 "fuzz/devices/$device" "$scratch" 2>&1 | tail -n 2
