#!/usr/bin/env bash
# Everything a sandbox boots, in one command: the guest kernel (images/build-kernel.sh:
# Debian's linux-source with Kasa's config and patch set, including the one that lets
# guest user space make system calls on kvm_pvm hosts) and the read-only root disk whose
# /init is kata-agent (images/build-agent-image.sh). Both are cached under
# ${KASA_CACHE_DIR:-/var/cache/kasa}; a rerun only prints the paths.
#
#   images/build-guest.sh    prints two lines: the kernel path, then the agent image path
set -euo pipefail
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")

echo "build-guest: guest kernel (about 8 minutes on 2 cores the first time, cached afterwards)" >&2
kernel=$(bash "$here/build-kernel.sh" | tail -n 1)
echo "build-guest: agent image (static kata-agent: about 3 minutes the first time, cached afterwards)" >&2
image=$(bash "$here/build-agent-image.sh" | tail -n 1)
[ -f "$kernel" ] || { echo "build-guest: error: no kernel at '$kernel'" >&2; exit 1; }
[ -f "$image" ] || { echo "build-guest: error: no agent image at '$image'" >&2; exit 1; }
echo "$kernel"
echo "$image"
