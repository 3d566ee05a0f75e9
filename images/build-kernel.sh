#!/usr/bin/env bash
# Build the Kasa guest kernel from Debian's linux-source-6.1.
#
#   images/build-kernel.sh               build if needed; last stdout line = vmlinux path
#   images/build-kernel.sh --print-path  print the vmlinux path; exit 0 if built, 1 if not
#
# Output: ${KASA_CACHE_DIR:-/var/cache/kasa}/kernel/<key>/{vmlinux,bzImage,config}
# <key> is a short sha256 over everything that decides the result: the Debian
# package version of linux-source-6.1, images/kernel/config-fragment, the
# patches in images/kernel/patches/ and this script. Change any of them and a
# new kernel gets built next to the old one; change nothing and a rerun only
# prints the path.
#
# The build log goes to the cache directory, not the terminal. The build runs
# in a temporary directory and the result is renamed into place at the end,
# so an interrupted build never leaves a half-written kernel behind.
#
# Environment:
#   KASA_CACHE_DIR   cache root (default /var/cache/kasa)
#   KASA_KEEP_WORK=1 keep the unpacked/built source tree (for debugging)
#   KASA_JOBS        parallel make jobs (default: nproc)
set -euo pipefail

die() { echo "build-kernel: error: $*" >&2; exit 1; }
note() { echo "build-kernel: $*" >&2; }

print_only=0
case "${1:-}" in
    "") ;;
    --print-path) print_only=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (use --print-path or no argument)" ;;
esac

script_path=$(readlink -f "${BASH_SOURCE[0]}")
images_dir=$(dirname "$script_path")
fragment="$images_dir/kernel/config-fragment"
patch_dir="$images_dir/kernel/patches"
source_pkg=linux-source-6.1
source_tar=/usr/src/linux-source-6.1.tar.xz
cache_root="${KASA_CACHE_DIR:-/var/cache/kasa}/kernel"

[ -f "$fragment" ] || die "missing config fragment $fragment"
shopt -s nullglob
patches=("$patch_dir"/*.patch)   # glob order is sorted: 0001, 0002, ...
shopt -u nullglob

# Version of the kernel source package: the installed one, or the one apt
# would install (so --print-path can answer before anything is installed).
pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
source_version() {
    if pkg_installed "$source_pkg"; then
        dpkg-query -W -f='${Version}' "$source_pkg"
    else
        apt-cache policy "$source_pkg" 2>/dev/null | awk '/Candidate:/ {print $2}'
    fi
}

version=$(source_version)
[ -n "$version" ] && [ "$version" != "(none)" ] ||
    die "cannot find a version of $source_pkg (not installed, and apt knows no candidate; run apt-get update?)"

# The cache key. File names are hashed too so renaming a patch (which
# changes the apply order) also gives a new key.
key=$(
    {
        echo "$source_pkg $version"
        echo "== config-fragment"; cat "$fragment"
        for p in "${patches[@]}"; do echo "== patch $(basename "$p")"; cat "$p"; done
        echo "== build-kernel.sh"; cat "$script_path"
    } | sha256sum | cut -c1-16
)
out_dir="$cache_root/$key"
vmlinux="$out_dir/vmlinux"

is_built() { [ -s "$out_dir/vmlinux" ] && [ -s "$out_dir/bzImage" ] && [ -s "$out_dir/config" ]; }

if [ "$print_only" = 1 ]; then
    echo "$vmlinux"
    is_built && exit 0 || exit 1
fi

if is_built; then
    echo "$vmlinux"
    exit 0
fi

# ---------------------------------------------------------------------------
# Build dependencies. Package -> why:
#   linux-source-6.1  the kernel source tarball
#   build-essential   gcc, make, libc headers
#   flex, bison       Kconfig parser and dtc/genksyms grammar
#   bc                timeconst.h generation
#   libelf-dev        objtool (ORC unwinder, entry code validation)
#   lz4               bzImage payload compression (CONFIG_KERNEL_LZ4)
#   xz-utils          unpacking the .tar.xz source
#   binutils          readelf/strip checks below (part of build-essential)
# ---------------------------------------------------------------------------
needed=(linux-source-6.1 build-essential flex bison bc libelf-dev lz4 xz-utils)
missing=()
for p in "${needed[@]}"; do pkg_installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root or install them)"
    note "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
    # The package may have moved to a newer version than the one hashed.
    if [ "$(source_version)" != "$version" ]; then
        note "$source_pkg is now $(source_version), not $version; recomputing the key"
        exec "$script_path"
    fi
fi
[ -f "$source_tar" ] || die "$source_tar not found although $source_pkg is installed"

mkdir -p "$cache_root" || die "cannot create cache directory $cache_root"

# One builder per key at a time; a second caller waits and then finds the
# result already there.
exec 9>"$cache_root/.$key.lock"
if ! flock -n 9; then
    note "another build of $key is running; waiting for it"
    flock 9
fi
if is_built; then
    echo "$vmlinux"
    exit 0
fi

# Leftovers of an earlier run of this key that was killed hard (SIGKILL,
# power loss) can go: we hold the lock, so nobody else is using them.
rm -rf "$cache_root/.work-$key."* "$cache_root/.out-$key."*

log="$cache_root/$key.log"
work=$(mktemp -d "$cache_root/.work-$key.XXXXXX")
stage=$(mktemp -d "$cache_root/.out-$key.XXXXXX")
cleanup() {
    rm -rf "$stage"
    if [ "${KASA_KEEP_WORK:-0}" = 1 ]; then
        note "work tree kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# Steps run as background jobs while this shell waits: bash delays a trapped
# signal until a *foreground* child ends, which for `make` would be minutes,
# while `wait` returns at once. `set -m` puts each job in its own process
# group, so the handler can stop the whole step (make and its compilers)
# before the EXIT trap cleans up.
set -m
child=""
on_signal() {
    echo "build-kernel: interrupted; stopping the build" >&2
    if [ -n "$child" ]; then
        kill -TERM -- "-$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit 130
}
trap on_signal INT TERM HUP
: >"$log"

jobs="${KASA_JOBS:-$(nproc)}"
start=$(date +%s)
note "building guest kernel $key ($source_pkg $version, -j$jobs); log: $log"

# Every step logs to $log; on failure point the user at it.
step() {
    local what=$1 rc=0; shift
    echo "### $what: $*" >>"$log"
    "$@" >>"$log" 2>&1 </dev/null &
    child=$!
    wait "$child" || rc=$?
    child=""
    if [ "$rc" != 0 ]; then
        echo "build-kernel: error: $what failed; last lines of $log:" >&2
        tail -n 25 "$log" >&2
        exit 1
    fi
}

step "unpack source" tar -xf "$source_tar" -C "$work"
src="$work/linux-source-6.1"
[ -d "$src" ] || die "unexpected tarball layout: no linux-source-6.1/ in $source_tar"

for p in "${patches[@]}"; do
    step "apply $(basename "$p")" patch -d "$src" -p1 --forward --batch -i "$p"
done

# ARCH=x86_64 (not x86) makes 64BIT non-optional, so tinyconfig cannot
# fall back to a 32-bit kernel.
kmake() { make -C "$src" ARCH=x86_64 "$@"; }
step "tinyconfig" kmake tinyconfig
# merge_config.sh puts its temporary files in the current directory: run it
# inside the source tree. -m: only merge; olddefconfig below resolves the rest.
merge_fragment() { (cd "$src" && scripts/kconfig/merge_config.sh -m .config "$fragment"); }
step "merge fragment" merge_fragment
step "olddefconfig" kmake olddefconfig

# Kconfig silently drops options whose dependencies are not met. Compare
# every line of the fragment with the final .config and refuse to continue
# if anything is missing, so the fragment stays honest.
bad=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*)
            grep -qxF "$line" "$src/.config" || {
                echo "build-kernel: error: '$line' did not survive Kconfig (missing dependency?)" >&2
                bad=1
            } ;;
        "# CONFIG_"*" is not set")
            sym=${line#\# }; sym=${sym%% *}
            if grep -q "^$sym=" "$src/.config"; then
                echo "build-kernel: error: '$sym' is enabled although the fragment disables it" >&2
                bad=1
            fi ;;
    esac
done <"$fragment"
[ "$bad" = 0 ] || die "config check failed; see $src/.config (set KASA_KEEP_WORK=1 to keep it)"

step "make vmlinux" kmake -j"$jobs" vmlinux
step "make bzImage" kmake -j"$jobs" bzImage

# The kernel is built without debug info; strip only debug sections anyway
# (never the symbol table or notes: the PVH entry point lives in a note).
cp "$src/vmlinux" "$stage/vmlinux"
step "strip debug" strip --strip-debug "$stage/vmlinux"
# XEN_ELFNOTE_PHYS32_ENTRY (type 18 = 0x12, owner "Xen") is what a VMM uses
# to find the 32-bit PVH entry point.
if ! readelf -n "$stage/vmlinux" 2>>"$log" | grep -E '^\s*Xen\s' | grep -qiE '0x00000012|PHYS32_ENTRY'; then
    die "vmlinux has no PVH entry note (Xen, type 0x12); is CONFIG_PVH set?"
fi
cp "$src/arch/x86/boot/bzImage" "$stage/bzImage"
cp "$src/.config" "$stage/config"
echo "### done in $(( $(date +%s) - start )) s" >>"$log"

# Publish atomically. If another process won a race, keep its copy.
chmod 755 "$stage"
if ! mv -T "$stage" "$out_dir" 2>/dev/null; then
    is_built || die "could not move the build into $out_dir"
fi
note "built $key in $(( $(date +%s) - start )) s"
echo "$vmlinux"
