#!/usr/bin/env bash
# Installs the Debian 12 packages Kasa's build and tests need, once: a second run only
# checks. The Swift 6 toolchain itself comes from swift.org and must already be on PATH.
# The guest-kernel build installs its own packages (images/build-kernel.sh).
set -euo pipefail

die() { echo "install-deps: error: $*" >&2; exit 1; }

command -v swift >/dev/null || die "no 'swift' on PATH: install the Swift 6 toolchain for Debian 12 from swift.org"
swift_major=$(swift --version 2>&1 | sed -n 's/.*Swift version \([0-9]*\).*/\1/p' | head -1)
[ "${swift_major:-0}" -ge 6 ] || die "Swift 6 or newer is needed (found: $(swift --version 2>&1 | head -1))"

# containerd: the shim's end-to-end tests run Debian's containerd 1.6 (not as a service).
# CRI tests: its CRI plugin with the CNI bridge plugins (containernetworking-plugins), a
# CRI client in Python (python3-grpcio, python3-protobuf; Tests/cri-client), iproute2.
packages=(gcc binutils libc6-dev busybox-static python3 cpio e2fsprogs containerd
          containernetworking-plugins python3-grpcio python3-protobuf iproute2
          libseccomp-dev)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root, or install them)"
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The unprivileged user every jailed kasa-vmm becomes after set-up ([hypervisor.kasa]
# vmm_user, docs/security.md): a system user with a group of its own, no home, no shell.
if ! getent passwd kasa-vmm >/dev/null; then
    [ "$(id -u)" = 0 ] || die "the user kasa-vmm is missing (run as root, or set vmm_user = \"root\")"
    echo "install-deps: creating the system user kasa-vmm" >&2
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kasa-vmm
fi

[ -e /dev/kvm ] || echo "install-deps: warning: /dev/kvm is missing; the VM tests need KVM (kvm_intel, kvm_amd or kvm_pvm)" >&2
exit 0
