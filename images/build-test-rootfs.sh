#!/usr/bin/env bash
# Builds the ext4 root filesystem the VMM's device tests boot from (root=/dev/vda): a
# static busybox and an /sbin/init that reports the virtio devices, the root mount and
# the entropy source, writes a file to the disk, then resets the VM. With `kasatest=vsock`
# on the kernel command line it first runs test-guest/vsock-echo (a static C program:
# connects to host port 5000, then echoes one connection on port 1024). With
# `kasatest=untar` (bench/untar-bench) it untars the tar on /dev/vdb into this ext4 root
# and then into the virtio-fs tag `kasashare`, each with a cold page cache and a sync, and
# prints `KASA-UNTAR <target> <centiseconds>` for each.
#
#   images/build-test-rootfs.sh               build if needed; last stdout line = image path
#   images/build-test-rootfs.sh --print-path  print the path; exit 0 if built, 1 if not
#
# The image is cached under ${KASA_CACHE_DIR:-/var/cache/kasa}/rootfs/<key>/ and must be
# copied before a guest writes to it.
set -euo pipefail

die() { echo "build-test-rootfs: error: $*" >&2; exit 1; }
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
busybox=/bin/busybox

print_only=0
case "${1:-}" in
    "") ;;
    --print-path) print_only=1 ;;
    *) die "unknown argument '$1' (use --print-path or no argument)" ;;
esac

if [ "$print_only" = 0 ]; then
    missing=()
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || missing+=(busybox-static)
    command -v mke2fs >/dev/null || missing+=(e2fsprogs)
    command -v gcc >/dev/null || missing+=(gcc libc6-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
            { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; } ||
            die "cannot install ${missing[*]}"
    fi
fi

key=$( { sha256sum <"$busybox" 2>/dev/null || echo none; sha256sum <"$0"; sha256sum <"$here/build-rootfs-image.sh"; sha256sum <"$here/test-guest/vsock-echo.c"; sha256sum <"$here/test-guest/virtiofs-posix.c"; } | sha256sum | cut -c1-16 )
out="${KASA_CACHE_DIR:-/var/cache/kasa}/rootfs/$key/test-rootfs.ext4"
if [ -s "$out" ]; then echo "$out"; exit 0; fi
if [ "$print_only" = 1 ]; then echo "$out"; exit 1; fi
[ -x "$busybox" ] || die "$busybox not found (install busybox-static)"

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging"/{bin,sbin,dev,proc,sys,tmp,etc,mnt}
cp "$busybox" "$staging/bin/busybox"
gcc -static -O2 -o "$staging/bin/vsock-echo" "$here/test-guest/vsock-echo.c" || die "cannot build vsock-echo (gcc, libc6-dev)"
strip "$staging/bin/vsock-echo"
gcc -static -O2 -o "$staging/bin/virtiofs-posix" "$here/test-guest/virtiofs-posix.c" || die "cannot build virtiofs-posix"
strip "$staging/bin/virtiofs-posix"
for applet in sh mount cat ls echo sleep reboot sync od head readlink tar mkdir umount; do ln -s busybox "$staging/bin/$applet"; done
cat > "$staging/sbin/init" <<'INIT'
#!/bin/busybox sh
# Kasa device test: runs from the ext4 root on /dev/vda.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "KASA-ROOTFS-OK"
while read -r device mountpoint type options rest; do
    [ "$mountpoint" = / ] && echo "KASA-ROOT $device $type $options"
done < /proc/mounts
for d in /sys/bus/virtio/devices/*; do
    [ -e "$d/device" ] || continue
    read -r id < "$d/device"
    driver=$(/bin/busybox readlink "$d/driver")
    echo "KASA-VIRTIO ${d##*/} $id ${driver##*/}"
done
[ -r /sys/class/misc/hw_random/rng_current ] && { read -r rng < /sys/class/misc/hw_random/rng_current; echo "KASA-RNG $rng"; }
echo "KASA-RNG-BYTES $(/bin/busybox head -c 16 /dev/hwrng | /bin/busybox od -An -tx1 | /bin/busybox tr -d ' \n')"
[ "$kasatest" = vsock ] && /bin/vsock-echo
if [ "$kasatest" = virtiofs ]; then
    /bin/busybox mount -t virtiofs kasashare /mnt && /bin/virtiofs-posix /mnt
    echo "KASA-FS-EXIT $?"
    /bin/busybox umount /mnt && echo "KASA-FS-UNMOUNTED"
fi
if [ "$kasatest" = untar ]; then
    t() { read -r up idle < /proc/uptime; echo "${up%.*}${up#*.}"; }
    /bin/busybox mount -t virtiofs kasashare /mnt
    for target in /untar /mnt/untar; do
        mkdir "$target"
        sync
        echo 3 > /proc/sys/vm/drop_caches
        a=$(t)
        tar -xf /dev/vdb -C "$target" && sync
        b=$(t)
        echo "KASA-UNTAR $target $((b-a))"
    done
    umount /mnt
fi
echo "written by the guest" > /guest-wrote-this
/bin/busybox sync
echo "KASA-ROOTFS-DONE"
/bin/busybox reboot -f
INIT
chmod 755 "$staging/sbin/init"
ln -s busybox "$staging/bin/tr"
mkdir -p "$(dirname "$out")"
bash "$here/build-rootfs-image.sh" "$staging" "$out" 16 >/dev/null
echo "$out"
