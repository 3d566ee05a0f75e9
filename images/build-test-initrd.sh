#!/usr/bin/env bash
# Build a tiny test initrd for booting the Kasa guest kernel: an uncompressed
# newc cpio with a static busybox and a shell-script /init that proves user
# space runs (mount, a few syscalls, output on the console) and then resets
# the VM.
#
#   images/build-test-initrd.sh               build if needed; last stdout line = cpio path
#   images/build-test-initrd.sh --print-path  print the path; exit 0 if built, 1 if not
#
# Output: ${KASA_CACHE_DIR:-/var/cache/kasa}/initrd/<key>/test-initrd.cpio
# <key> = short sha256 of the busybox binary and this script (which contains
# the /init text), so any change gives a new file and reruns are free.
#
# What /init prints on the console (the VMM tests look for these lines):
#   KASA-INIT-OK
#   KASA-UPTIME <seconds since boot> <idle seconds>      (from /proc/uptime)
#   KASA-VIRTIO <name> <virtio device id>                (one per virtio device)
#   KASA-INIT-DONE
# then `reboot -f`: with `reboot=k` on the kernel command line this is a
# write of 0xfe to port 0x64 (i8042 reset), which the VMM (or QEMU with
# `-device i8042` and `-no-reboot`) turns into VM exit.
#
# The archive is written by a small Python program rather than cpio(1) so
# that no root, mknod or fakeroot is needed for /dev/console, and so the
# output is byte-for-byte reproducible (fixed owners and timestamps).
set -euo pipefail

die() { echo "build-test-initrd: error: $*" >&2; exit 1; }

print_only=0
case "${1:-}" in
    "") ;;
    --print-path) print_only=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (use --print-path or no argument)" ;;
esac

script_path=$(readlink -f "${BASH_SOURCE[0]}")
cache_root="${KASA_CACHE_DIR:-/var/cache/kasa}/initrd"
busybox=/bin/busybox

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Debian's busybox-static puts a static /bin/busybox in place; the dynamic
# `busybox` package would not work in an initrd without its libc.
ensure_packages() {
    local missing=()
    pkg_installed busybox-static || missing+=(busybox-static)
    command -v python3 >/dev/null || missing+=(python3-minimal)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root or install them)"
    echo "build-test-initrd: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
}

if [ "$print_only" = 0 ]; then
    ensure_packages
fi
[ -x "$busybox" ] || {
    [ "$print_only" = 1 ] && { echo "$cache_root/<not-computable: no $busybox>/test-initrd.cpio"; exit 1; }
    die "$busybox not found (is busybox-static installed?)"
}

key=$( { sha256sum <"$busybox"; sha256sum <"$script_path"; } | sha256sum | cut -c1-16 )
out_dir="$cache_root/$key"
out="$out_dir/test-initrd.cpio"

if [ -s "$out" ]; then echo "$out"; exit 0; fi
if [ "$print_only" = 1 ]; then echo "$out"; exit 1; fi

file "$busybox" 2>/dev/null | grep -q 'dynamically linked' &&
    die "$busybox is dynamically linked; install busybox-static"

mkdir -p "$out_dir" || die "cannot create $out_dir"
tmp=$(mktemp "$out_dir/.test-initrd.XXXXXX")
trap 'rm -f "$tmp"' EXIT

# /init. Kept to shell builtins where possible: every fork+exec is slow on
# kvm_pvm (the guest kernel is emulated there), and a test should not wait
# for more of them than it needs.
read -r -d '' init_script <<'INIT' || true
#!/bin/busybox sh
# Kasa test init: prove that user space runs, report, reset the VM.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "KASA-INIT-OK"
read -r up idle < /proc/uptime
echo "KASA-UPTIME $up $idle"
for d in /sys/bus/virtio/devices/*; do
    [ -e "$d/device" ] || continue
    read -r id < "$d/device"
    echo "KASA-VIRTIO ${d##*/} $id"
done
echo "KASA-INIT-DONE"
/bin/busybox reboot -f
# Only reached if the reset did not happen (e.g. no reset device).
echo "KASA-INIT-RESET-FAILED"
while :; do /bin/busybox sleep 3600; done
INIT

INIT_SCRIPT="$init_script" BUSYBOX="$busybox" python3 - "$tmp" <<'PY'
# Minimal writer for the "newc" cpio format the kernel unpacks (see the
# kernel's Documentation/driver-api/early-userspace/buffer-format.rst).
import os, sys

out_path = sys.argv[1]
busybox = open(os.environ["BUSYBOX"], "rb").read()
init = os.environ["INIT_SCRIPT"].encode() + b"\n"

S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000
entries = []          # (name, mode, data, (rdev major, minor))
def d(name): entries.append((name, S_IFDIR | 0o755, b"", (0, 0)))
def f(name, data, perm): entries.append((name, S_IFREG | perm, data, (0, 0)))
def l(name, target): entries.append((name, S_IFLNK | 0o777, target.encode(), (0, 0)))
def c(name, major, minor, perm): entries.append((name, S_IFCHR | perm, b"", (major, minor)))

for name in ("bin", "dev", "proc", "sys", "tmp", "root", "etc"):
    d(name)
f("bin/busybox", busybox, 0o755)
# A few applet links for interactive debugging (init itself calls busybox
# by full path and does not need them).
for applet in ("sh", "mount", "cat", "ls", "echo", "sleep", "reboot", "poweroff", "dmesg", "uname"):
    l("bin/" + applet, "busybox")
# Without /dev/console the kernel starts init with no stdin/stdout/stderr.
c("dev/console", 5, 1, 0o600)
c("dev/null", 1, 3, 0o666)
f("init", init, 0o755)

def pad4(n): return (4 - n % 4) % 4

with open(out_path, "wb") as o:
    ino = 1
    for name, mode, data, (rmaj, rmin) in entries + [("TRAILER!!!", 0, b"", (0, 0))]:
        nameb = name.encode() + b"\0"
        nlink = 2 if (mode & 0o170000) == S_IFDIR else 1
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(nameb), 0)
        hdr = b"070701" + b"".join(b"%08x" % v for v in fields)
        o.write(hdr + nameb + b"\0" * pad4(len(hdr) + len(nameb)))
        o.write(data + b"\0" * pad4(len(data)))
        ino += 1
    # Round the archive up to 512 bytes like cpio(1) does.
    size = o.tell()
    o.write(b"\0" * ((512 - size % 512) % 512))
PY

chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "$out"
