#!/usr/bin/env bash
# Build the agent initrd: an uncompressed newc cpio whose /init is the static kata-agent
# (images/build-agent.sh), with only what the agent needs around it: the directories it
# mounts on (/proc /sys /dev /run /tmp /etc) and /dev/console, so that the kernel starts
# PID 1 with the console as stdin/stdout/stderr (kata-agent logs there).
#
#   images/build-agent-initrd.sh               build if needed; last stdout line = cpio path
#   images/build-agent-initrd.sh --print-path  print the path; exit 0 if built, 1 if not
#   images/build-agent-initrd.sh --with-shell  the debug variant (agent-initrd-shell.cpio):
#       Debian's static busybox as /bin/sh for the agent's debug console
#       (debug_console_enabled, `kata-runtime exec`); about 2 MB more to unpack
#
# Output: ${KASA_CACHE_DIR:-/var/cache/kasa}/initrd/<key>/agent-initrd.cpio
# <key> = short sha256 of the agent's own cache key (its path), this script and
# images/newc-cpio.py: a new agent build gives a new initrd, and reruns are free.
#
# /proc/self/exe -> /init: a static Swift program's runtime asks for its own path while
# it starts, before main (the backtracer looks for swift-backtrace next to it). Static
# glibc's dladdr() cannot answer, so the runtime reads the /proc/self/exe link, and
# without /proc it aborts ("Unable to obtain Swift runtime path"), which as PID 1 is a
# kernel panic. This link answers until the agent mounts procfs over /proc; the other
# way out is `SWIFT_BACKTRACE=swift-backtrace=<any path>` in init's environment.
#
# Uncompressed on purpose: on kvm_pvm hosts the guest kernel's decompression would be
# emulated (docs/kernel.md). The kernel needs no command-line change: without root=,
# it runs /init from the initramfs.
set -euo pipefail

die() { echo "build-agent-initrd: error: $*" >&2; exit 1; }

print_only=0
with_shell=0
for argument in "$@"; do
    case "$argument" in
        --print-path) print_only=1 ;;
        --with-shell) with_shell=1 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) die "unknown argument '$argument' (use --print-path and/or --with-shell)" ;;
    esac
done
busybox=/bin/busybox
if [ "$with_shell" = 1 ] && [ "$print_only" = 0 ]; then
    [ -x "$busybox" ] || die "--with-shell needs $busybox (apt-get install busybox-static)"
fi

script_path=$(readlink -f "${BASH_SOURCE[0]}")
here=$(dirname "$script_path")
cache_root="${KASA_CACHE_DIR:-/var/cache/kasa}/initrd"

if [ "$print_only" = 1 ]; then
    agent=$(bash "$here/build-agent.sh" --print-path | tail -n 1) || true
else
    command -v python3 >/dev/null || die "python3 is needed to write the archive"
    agent=$(bash "$here/build-agent.sh" | tail -n 1)
    [ -x "$agent" ] || die "images/build-agent.sh did not produce an executable ('$agent')"
fi
[ -n "$agent" ] || die "images/build-agent.sh printed no path"

key=$( { echo "$agent"; sha256sum <"$script_path"; sha256sum <"$here/newc-cpio.py";
         [ "$with_shell" = 0 ] || sha256sum <"$busybox" 2>/dev/null || echo none; } | sha256sum | cut -c1-16 )
out_dir="$cache_root/$key"
out="$out_dir/agent-initrd.cpio"
[ "$with_shell" = 0 ] || out="$out_dir/agent-initrd-shell.cpio"

if [ -s "$out" ]; then echo "$out"; exit 0; fi
if [ "$print_only" = 1 ]; then echo "$out"; exit 1; fi

mkdir -p "$out_dir" || die "cannot create $out_dir"
tmp=$(mktemp "$out_dir/.agent-initrd.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
    for name in dev proc sys run tmp etc; do echo "dir $name"; done
    echo "char dev/console 5 1 0600"
    echo "dir proc/self"
    echo "link proc/self/exe /init"
    echo "file init 0755 $agent"
    if [ "$with_shell" = 1 ]; then
        # The debug console's shell (kata-agent's DebugConsole, `kata-runtime exec`).
        echo "dir bin"
        echo "file bin/busybox 0755 $busybox"
        for applet in sh ls cat ps mount umount dmesg ip free top df grep sed awk vi kill tail head mkdir rm cp mv ln find; do
            echo "link bin/$applet busybox"
        done
    fi
} | python3 "$here/newc-cpio.py" "$tmp" || die "writing the cpio archive failed"
chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "$out"
