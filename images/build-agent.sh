#!/usr/bin/env bash
# Build kata-agent (the guest agent, package guest-agent/) as a fully static, stripped
# Linux executable: no dynamic loader, no shared libraries, so it can be a VM's /init
# with nothing else in the initrd.
#
#   images/build-agent.sh               build if needed; last stdout line = binary path
#   images/build-agent.sh --print-path  print the path; exit 0 if built, 1 if not
#
# Output: ${KASA_CACHE_DIR:-/var/cache/kasa}/agent/<key>/kata-agent
# <key> = short sha256 over every file under guest-agent/Sources (names and contents),
# guest-agent/Package.swift and Package.resolved, the Swift compiler version and this
# script. Change any of them and a new binary is built next to the old one; change
# nothing and a rerun only prints the path.
#
# The build uses its own scratch directory (guest-agent/.build-static), so it never
# competes with the debug build in guest-agent/.build. The build log (with the linker's
# warnings) goes to agent/<key>.log in the cache, not the terminal.
#
# About the linker warnings: glibc warns that getaddrinfo, getpwnam, getgrgid_r, dlopen
# ... need glibc's shared libraries at run time in a static program. They come from
# Foundation/CoreFoundation/ICU code linked in, not from anything the agent calls: the
# agent does no DNS and no NSS lookups (it reads the container's /etc/passwd itself).
#
# Environment:
#   KASA_CACHE_DIR   cache root (default /var/cache/kasa)
set -euo pipefail

die() { echo "build-agent: error: $*" >&2; exit 1; }
note() { echo "build-agent: $*" >&2; }

print_only=0
case "${1:-}" in
    "") ;;
    --print-path) print_only=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (use --print-path or no argument)" ;;
esac

script_path=$(readlink -f "${BASH_SOURCE[0]}")
repo_root=$(dirname "$(dirname "$script_path")")
package_dir="$repo_root/guest-agent"
scratch="$package_dir/.build-static"
cache_root="${KASA_CACHE_DIR:-/var/cache/kasa}/agent"

[ -f "$package_dir/Package.swift" ] || die "no Swift package at $package_dir"
command -v swift >/dev/null || die "swift is not on PATH (install the Swift 6 toolchain from swift.org)"

# The cache key. File names are hashed with the contents, so a rename or a new file
# changes it too; LC_ALL=C keeps the order the same everywhere.
key=$(
    {
        echo "== swift"; swift --version 2>/dev/null | head -n 1
        echo "== build-agent.sh"; cat "$script_path"
        for f in Package.swift Package.resolved; do
            [ -f "$package_dir/$f" ] && { echo "== $f"; cat "$package_dir/$f"; }
        done
        (cd "$package_dir" && find Sources -type f -print | LC_ALL=C sort | while IFS= read -r f; do
            echo "== $f"; sha256sum <"$f"
        done)
    } | sha256sum | cut -c1-16
)
out_dir="$cache_root/$key"
out="$out_dir/kata-agent"

if [ -s "$out" ] && [ -x "$out" ]; then echo "$out"; exit 0; fi
if [ "$print_only" = 1 ]; then echo "$out"; exit 1; fi

mkdir -p "$cache_root" || die "cannot create cache directory $cache_root"
# One build at a time (parallel callers wait for it, then find the result).
exec 9>"$cache_root/.lock"
flock 9
if [ -s "$out" ] && [ -x "$out" ]; then echo "$out"; exit 0; fi

log="$cache_root/$key.log"
note "building static kata-agent (key $key; about 2 minutes on 2 cores from scratch; log: $log)"
build=(swift build -c release --product kata-agent
       --package-path "$package_dir" --scratch-path "$scratch"
       --static-swift-stdlib -Xswiftc -static-executable)
start=$SECONDS
if ! "${build[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "swift build failed (full log: $log)"
fi
bin_dir=$("${build[@]}" --show-bin-path 2>>"$log")
built="$bin_dir/kata-agent"
[ -x "$built" ] || die "the build reported success but $built is missing"

tmp_dir=$(mktemp -d "$cache_root/.work-$key.XXXXXX")
trap 'rm -rf "$tmp_dir"' EXIT
cp "$built" "$tmp_dir/kata-agent"
strip "$tmp_dir/kata-agent" || die "strip failed"

# Static means: no program interpreter (PT_INTERP) and no DT_NEEDED libraries.
if readelf -lW "$tmp_dir/kata-agent" | grep -q 'Requesting program interpreter'; then
    die "$built is dynamically linked (it has a program interpreter)"
fi
if readelf -dW "$tmp_dir/kata-agent" 2>/dev/null | grep -q '(NEEDED)'; then
    die "$built needs shared libraries: $(readelf -dW "$tmp_dir/kata-agent" | grep '(NEEDED)' | tr -s ' ' | tr '\n' ';')"
fi
version=$("$tmp_dir/kata-agent" --version 2>/dev/null) || die "the static kata-agent does not run (--version failed)"
{
    echo "== result"
    echo "$version"
    file "$tmp_dir/kata-agent" 2>/dev/null || true
    echo "size $(stat -c %s "$tmp_dir/kata-agent") bytes stripped, $(stat -c %s "$built") unstripped; build $((SECONDS - start)) s"
} >>"$log"

mkdir -p "$out_dir"
mv -f "$tmp_dir/kata-agent" "$out"
note "$version: $(stat -c %s "$out") bytes, static, stripped ($((SECONDS - start)) s)"
echo "$out"
