#!/usr/bin/env bash
# The project's test command (README, and .ci/run): installs what is missing, builds the
# guest kernel and test initrd (cached outside the clone), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "test: guest kernel (first build takes ~8 minutes on 2 cores; cached afterwards)" >&2
kernel=$(bash images/build-kernel.sh | tail -n 1)
initrd=$(bash images/build-test-initrd.sh | tail -n 1)
rootfs=$(bash images/build-test-rootfs.sh | tail -n 1)
[ -f "$rootfs" ] || { echo "test: error: rootfs build did not produce a file ('$rootfs')" >&2; exit 1; }
[ -f "$kernel" ] || { echo "test: error: kernel build did not produce a file ('$kernel')" >&2; exit 1; }
[ -f "$initrd" ] || { echo "test: error: initrd build did not produce a file ('$initrd')" >&2; exit 1; }
export KASA_TEST_KERNEL="$kernel" KASA_TEST_INITRD="$initrd" KASA_TEST_ROOTFS="$rootfs"

swift build --build-tests
swift test --skip-build
