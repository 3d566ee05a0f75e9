#!/usr/bin/env bash
# A small container root filesystem as a directory: Debian's static busybox with a link
# for every applet, /etc/passwd and /etc/group, and the usual mount points. It is what
# `kata-runtime run --rootfs DIR` takes (README, scripts/install.sh).
#
#   images/build-busybox-rootfs.sh               build if needed; last stdout line = directory
#   images/build-busybox-rootfs.sh --print-path  print the directory; exit 0 if built, 1 if not
#
# Output: ${KASA_CACHE_DIR:-/var/cache/kasa}/busybox-rootfs/<key>/rootfs, keyed by the
# busybox binary and this script.
set -euo pipefail

die() { echo "build-busybox-rootfs: error: $*" >&2; exit 1; }
busybox=/bin/busybox

print_only=0
case "${1:-}" in
    "") ;;
    --print-path) print_only=1 ;;
    *) die "unknown argument '$1' (use --print-path or no argument)" ;;
esac

key=$( { sha256sum <"$busybox" 2>/dev/null || echo none; sha256sum <"$0"; } | sha256sum | cut -c1-16 )
base="${KASA_CACHE_DIR:-/var/cache/kasa}/busybox-rootfs/$key"
out="$base/rootfs"
if [ -x "$out/bin/busybox" ]; then echo "$out"; exit 0; fi
if [ "$print_only" = 1 ]; then echo "$out"; exit 1; fi
[ -x "$busybox" ] || die "$busybox not found: apt-get install busybox-static"
file -L "$busybox" 2>/dev/null | grep -q "statically linked" || ldd "$busybox" 2>&1 | grep -q "not a dynamic" ||
    die "$busybox is not static (install busybox-static, not busybox)"

mkdir -p "$base"
staging=$(mktemp -d "$base/staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging"/{bin,sbin,etc,proc,sys,dev,tmp,root,run,var/tmp}
chmod 1777 "$staging/tmp" "$staging/var/tmp"
cp "$busybox" "$staging/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$staging/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$staging/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$staging/etc/group"
echo kasa >"$staging/etc/hostname"
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
echo "$out"
