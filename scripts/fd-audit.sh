#!/usr/bin/env bash
# The close(2) audit of a test run (Tests/fd-audit/fd-audit.c).
#   fd-audit.sh build        builds the preload library (cached by its source's hash),
#                            checks that it reports a bad close, prints its path
#   fd-audit.sh report LOG   prints the bad closes of Kasa's programs in LOG with their
#                            backtraces symbolized; exits 1 if there are any
set -euo pipefail
cd "$(dirname "$0")/.."
source=Tests/fd-audit/fd-audit.c
cache=${KASA_CACHE_DIR:-/var/cache/kasa}/fd-audit

build() {
    local key directory library probe log
    key=$(sha256sum "$source" | cut -c1-16)
    directory="$cache/$key"
    library="$directory/libkasa-fd-audit.so"
    if [ ! -f "$library" ]; then
        mkdir -p "$directory"
        gcc -O1 -g -shared -fPIC -Wall -Werror -o "$library.tmp" "$source" -ldl
        mv "$library.tmp" "$library"
    fi
    # The audit must be able to look: a program that closes a descriptor it never opened
    # has to show up in the log, or the run's "no bad close" means nothing.
    probe="$directory/probe"
    if [ ! -x "$probe" ]; then
        printf '#include <unistd.h>\nint main(void) { return close(4093) == 0; }\n' > "$directory/probe.c"
        gcc -o "$probe" "$directory/probe.c"
    fi
    log=$(mktemp)
    KASA_FD_AUDIT_LOG="$log" LD_PRELOAD="$library" "$probe" || true
    if ! grep -q "fd 4093, pid" "$log"; then
        rm -f "$log"
        echo "fd-audit: error: the audit library did not report a bad close in its self-check" >&2
        exit 1
    fi
    rm -f "$log"
    echo "$library"
}

symbolizer() {
    if command -v llvm-symbolizer > /dev/null; then command -v llvm-symbolizer; return; fi
    local toolchain
    toolchain=$(dirname "$(readlink -f "$(command -v swift)")")
    [ -x "$toolchain/llvm-symbolizer" ] && echo "$toolchain/llvm-symbolizer"
}

# Kasa's own programs: the test bundles and the binaries they run.
ours='(\.xctest|/kasa-vmm|/containerd-shim-kata-v2|/kata-runtime|/kata-agent)$'

report() {
    local log=$1 found=0 keep=0 tool line
    [ -f "$log" ] || { echo "fd-audit: error: no audit log at $log (the audit did not run)" >&2; return 1; }
    tool=$(symbolizer || true)
    while IFS= read -r line; do
        if [[ "$line" == "=== "* ]]; then
            keep=0
            if [[ "${line##*, }" =~ $ours ]]; then keep=1; found=$((found + 1)); echo "fd-audit: ${line#=== }"; fi
            continue
        fi
        [ "$keep" = 1 ] || continue
        [[ "$line" == *libkasa-fd-audit.so* ]] && continue  # the audit's own frames
        if [[ "$line" =~ ^(/[^\(]+)\(\+(0x[0-9a-f]+)\) ]] && [ -n "$tool" ]; then
            echo "    $("$tool" --obj="${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" 2>/dev/null | head -2 | paste -sd' ' | swift demangle --simplified 2>/dev/null | cut -c1-200)"
        else
            echo "    $line"
        fi
    done < "$log"
    if [ "$found" -gt 0 ]; then
        echo "fd-audit: error: $found close(s) of descriptors not open in Kasa's programs (above): each is a double close that can close another component's file" >&2
        return 1
    fi
    echo "fd-audit: no close of a descriptor not open in Kasa's programs" >&2
}

case "${1:-}" in
    build) build ;;
    report) report "${2:?usage: fd-audit.sh report LOG}" ;;
    *) echo "usage: fd-audit.sh build | report LOG" >&2; exit 2 ;;
esac
