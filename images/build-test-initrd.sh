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
# <key> = short sha256 of the busybox binary, this script (which contains
# the /init text) and images/newc-cpio.py, so any change gives a new file and
# reruns are free.
#
# What /init prints on the console (the VMM tests look for these lines):
#   KASA-INIT-OK
#   KASA-UPTIME <seconds since boot> <idle seconds>      (from /proc/uptime)
#   KASA-VIRTIO <name> <virtio device id>                (one per virtio device)
#   KASA-NET-MAC <mac>, KASA-NET-UP, KASA-NET-SERVED     (with kasa.net=ADDR/PREFIX: eth0
#                                                         configured, one TCP connection on
#                                                         port 8080 served; with kasa.netbench
#                                                         too: KASA-NETBENCH-READY, then httpd
#                                                         on 8080 and a TCP sink on 5001 until
#                                                         the VM is killed)
#   KASA-INIT-DONE
# then `reboot -f`: with `reboot=k` on the kernel command line this is a
# write of 0xfe to port 0x64 (i8042 reset), which the VMM (or QEMU with
# `-device i8042` and `-no-reboot`) turns into VM exit.
#
# The archive is written by images/newc-cpio.py rather than cpio(1) so that
# no root, mknod or fakeroot is needed for /dev/console, and so the output is
# byte-for-byte reproducible (fixed owners and timestamps).
set -euo pipefail

die() { echo "build-test-initrd: error: $*" >&2; exit 1; }

print_only=0
case "${1:-}" in
    "") ;;
    --print-path) print_only=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (use --print-path or no argument)" ;;
esac

script_path=$(readlink -f "${BASH_SOURCE[0]}")
here=$(dirname "$script_path")
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

key=$( { sha256sum <"$busybox"; sha256sum <"$script_path"; sha256sum <"$here/newc-cpio.py"; } | sha256sum | cut -c1-16 )
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
# With kasa.net=ADDR/PREFIX on the command line: eth0 gets that address, init reports
# its MAC, serves one TCP connection on port 8080 (a line, then close) and goes on.
for word in $(cat /proc/cmdline); do
    case "$word" in
        kasa.net=*) net=${word#kasa.net=} ;;
        kasa.netbench) netbench=1 ;;
    esac
done
if [ -n "$net" ]; then
    /bin/busybox ip link set lo up
    /bin/busybox ip addr add "$net" dev eth0 && /bin/busybox ip link set eth0 up
    read -r mac < /sys/class/net/eth0/address
    echo "KASA-NET-MAC $mac"
    echo "KASA-NET-UP"
    if [ -n "$netbench" ]; then
        # bench/net-bench: an HTTP server on 8080 and a TCP sink on 5001, until killed.
        /bin/busybox mkdir -p /www && echo ok > /www/index.html
        /bin/busybox httpd -p 8080 -h /www
        echo "KASA-NETBENCH-READY"
        while :; do /bin/busybox nc -l -p 5001 > /dev/null; done
    fi
    echo "hello from the guest over tcp" | /bin/busybox nc -l -p 8080
    echo "KASA-NET-SERVED"
fi
echo "KASA-INIT-DONE"
/bin/busybox reboot -f
# Only reached if the reset did not happen (e.g. no reset device).
echo "KASA-INIT-RESET-FAILED"
while :; do /bin/busybox sleep 3600; done
INIT

# The archive, in order; images/newc-cpio.py writes it.
init_file=$(mktemp "$out_dir/.init.XXXXXX")
trap 'rm -f "$tmp" "$init_file"' EXIT
printf '%s\n' "$init_script" >"$init_file"
{
    for name in bin dev proc sys tmp root etc; do echo "dir $name"; done
    echo "file bin/busybox 0755 $busybox"
    # A few applet links for interactive debugging (init itself calls busybox by full
    # path and does not need them).
    for applet in sh mount cat ls echo sleep reboot poweroff dmesg uname; do echo "link bin/$applet busybox"; done
    # Without /dev/console the kernel starts init with no stdin/stdout/stderr.
    echo "char dev/console 5 1 0600"
    echo "char dev/null 1 3 0666"
    echo "file init 0755 $init_file"
} | python3 "$here/newc-cpio.py" "$tmp" || die "writing the cpio archive failed"

chmod 644 "$tmp"
mv -f "$tmp" "$out"
rm -f "$init_file"
trap - EXIT
echo "$out"
