#!/usr/bin/env bash
# Turns a directory (for example a busybox-static root filesystem) into an ext4 image
# for a virtio-blk drive, without root privileges or loop mounts (mke2fs -d).
#
#   images/build-rootfs-image.sh DIR IMAGE [SIZE_MIB]
#
# SIZE_MIB defaults to the directory's size plus half again, at least 16 MiB.
# Files are owned by root in the image, whoever runs the script.
set -euo pipefail

die() { echo "build-rootfs-image: error: $*" >&2; exit 1; }

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 DIR IMAGE [SIZE_MIB]"
source_dir=$1
image=$2
[ -d "$source_dir" ] || die "'$source_dir' is not a directory"
command -v mke2fs >/dev/null || die "mke2fs not found: apt-get install e2fsprogs"

used_kib=$(du -sk "$source_dir" | cut -f1)
size_mib=${3:-$(( (used_kib * 3 / 2) / 1024 + 8 ))}
[ "$size_mib" -ge 16 ] || size_mib=16

tmp="$image.tmp.$$"
trap 'rm -f "$tmp"' EXIT
truncate -s "${size_mib}M" "$tmp"
# -E root_owner: files belong to root even when built by another user; no journal keeps
# the image small and the guest's emulated kernel quick to mount it.
mke2fs -q -t ext4 -O ^has_journal -E root_owner=0:0 -L kasa-root -d "$source_dir" "$tmp" ||
    die "mke2fs could not build the image from '$source_dir'"
mv "$tmp" "$image"
trap - EXIT
echo "$image"
