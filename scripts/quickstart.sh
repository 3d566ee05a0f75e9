#!/usr/bin/env bash
# Installs everything and boots a microVM: the guest kernel from images/ with a busybox
# initrd under kasa-vmm. The guest prints KASA-INIT-OK from its user space and reboots,
# which ends the VM. On a kvm_pvm host (no VT-x/AMD-V) this takes about a minute because
# the guest kernel is emulated; on hardware KVM it is well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
swift build -c release --product kasa-vmm
kernel=$(bash images/build-kernel.sh | tail -n 1)
initrd=$(bash images/build-test-initrd.sh | tail -n 1)
exec "$(swift build -c release --show-bin-path)/kasa-vmm" --kernel "$kernel" --initrd "$initrd" \
    --memory 256 --cmdline "console=ttyS0 reboot=k panic=-1" "$@"
