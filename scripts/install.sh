#!/usr/bin/env bash
# Installs Kasa on a Debian 12 host and runs a container in its own microVM:
#   - Debian packages and the system user kasa-vmm runs as (scripts/install-deps.sh), the
#     guest kernel and the agent's root disk image (images/build-guest.sh, cached in
#     /var/cache/kasa),
#   - kasa-vmm, kata-runtime and containerd-shim-kata-v2 (release builds) into
#     /usr/local/bin, the guest files into /usr/share/kasa, the default
#     configuration.toml where Kata keeps it,
#   - then `kata-runtime check` and one `kata-runtime run` with a busybox rootfs.
# On hardware KVM the run takes about a second; on a kvm_pvm host (a cloud VM without
# nested virtualization) the guest kernel is emulated and it takes about a minute and a half.
# Rerunning is cheap: every step is cached or idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "install: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: it installs into /usr/local/bin and /usr/share/kasa"

bash scripts/install-deps.sh
mapfile -t guest < <(bash images/build-guest.sh)
[ ${#guest[@]} = 2 ] || die "images/build-guest.sh did not print a kernel and an agent image"

echo "install: building kasa-vmm, kata-runtime and containerd-shim-kata-v2 (release; a few minutes the first time)" >&2
for product in kasa-vmm kata-runtime containerd-shim-kata-v2; do
    swift build -c release --product "$product" >&2
done
bin=$(swift build -c release --show-bin-path)
install -m 0755 "$bin/kasa-vmm" "$bin/kata-runtime" "$bin/containerd-shim-kata-v2" /usr/local/bin/
install -d -m 0755 /usr/share/kasa
install -m 0644 "${guest[0]}" /usr/share/kasa/vmlinux
install -m 0644 "${guest[1]}" /usr/share/kasa/kata-agent.img

config=/usr/share/defaults/kata-containers/configuration.toml
if [ ! -e "$config" ] || head -n 1 "$config" | grep -q '^# Kasa'; then
    install -D -m 0644 config/configuration.toml "$config"
else
    echo "install: warning: $config is not Kasa's (Kata Containers?); left alone. Kasa's is config/configuration.toml" >&2
fi

/usr/local/bin/kata-runtime check
rootfs=$(bash images/build-busybox-rootfs.sh | tail -n 1)
echo "install: running a container in a microVM (hardware KVM: about a second; kvm_pvm: about a minute and a half)" >&2
exec /usr/local/bin/kata-runtime run --rootfs "$rootfs" -- \
    sh -c 'echo "Hello from a container in its own Kasa microVM ($(uname -sr), $(nproc) vCPU)"'
