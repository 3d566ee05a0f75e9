#!/usr/bin/env bash
# The guest's root filesystem as a read-only ext4 disk image whose /init is the static
# kata-agent (images/build-agent.sh): what sandboxes boot by default ([hypervisor.kasa]
# image, Kata's key). The kernel mounts it as root=/dev/vda and runs /init from it.
#
# Why a disk and not the initrd (images/build-agent-initrd.sh, still supported): the
# kernel unpacks an initramfs by copying every byte in kernel code. On a kvm_pvm host
# that code is emulated, and unpacking the 16 MB agent is over half of a sandbox's start
# (docs/performance.md). From a disk, only the pages the agent touches are read, by
# virtio-blk, which the VMM serves natively. On hardware KVM either is fast.
#
#   images/build-agent-image.sh               build if needed; last stdout line = image path
#   images/build-agent-image.sh --print-path  print the path; exit 0 if built, 1 if not
#   images/build-agent-image.sh --with-shell  the debug variant (agent-shell.img): Debian's
#       static busybox as /bin/sh for the agent's debug console (`kata-runtime exec`)
#
# Output: ${KASA_CACHE_DIR:-/var/cache/kasa}/agent-image/<key>/agent.img (or agent-shell.img),
# <key> = the agent build's cache path, this script and build-rootfs-image.sh (and busybox).
set -euo pipefail

die() { echo "build-agent-image: error: $*" >&2; exit 1; }

print_only=0
with_shell=0
for argument in "$@"; do
    case "$argument" in
        --print-path) print_only=1 ;;
        --with-shell) with_shell=1 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) die "unknown argument '$argument' (use --print-path and/or --with-shell)" ;;
    esac
done
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
busybox=/bin/busybox

if [ "$print_only" = 1 ]; then
    agent=$(bash "$here/build-agent.sh" --print-path | tail -n 1) || true
else
    agent=$(bash "$here/build-agent.sh" | tail -n 1)
    [ -x "$agent" ] || die "images/build-agent.sh did not produce an executable ('$agent')"
    [ "$with_shell" = 0 ] || [ -x "$busybox" ] || die "--with-shell needs $busybox (apt-get install busybox-static)"
fi
[ -n "$agent" ] || die "images/build-agent.sh printed no path"

key=$( { echo "$agent"; sha256sum <"$0"; sha256sum <"$here/build-rootfs-image.sh";
         [ "$with_shell" = 0 ] || sha256sum <"$busybox" 2>/dev/null || echo none; } | sha256sum | cut -c1-16 )
out_dir="${KASA_CACHE_DIR:-/var/cache/kasa}/agent-image/$key"
out="$out_dir/agent.img"
[ "$with_shell" = 0 ] || out="$out_dir/agent-shell.img"
if [ -s "$out" ]; then echo "$out"; exit 0; fi
if [ "$print_only" = 1 ]; then echo "$out"; exit 1; fi

mkdir -p "$out_dir"
staging=$(mktemp -d "$out_dir/staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
# Mount points the agent uses (the image is read-only: they must exist), /init, and
# /proc/self/exe -> /init for the Swift runtime's start before procfs is mounted
# (images/build-agent-initrd.sh explains).
mkdir -p "$staging"/{dev,proc/self,sys,run,tmp,etc}
install -m 0755 "$agent" "$staging/init"
ln -s /init "$staging/proc/self/exe"
if [ "$with_shell" = 1 ]; then
    mkdir -p "$staging/bin"
    install -m 0755 "$busybox" "$staging/bin/busybox"
    for applet in sh ls cat ps mount umount dmesg ip free top df grep sed awk vi kill tail head mkdir rm cp mv ln find; do
        ln -s busybox "$staging/bin/$applet"
    done
fi
bash "$here/build-rootfs-image.sh" "$staging" "$out" >/dev/null
chmod 0644 "$out"
echo "$out"
