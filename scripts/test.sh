#!/usr/bin/env bash
# The project's test command (README, and .ci/run): installs what is missing, builds the
# guest kernel, the test initrd and rootfs, and the agent initrd (static kata-agent as
# /init), all cached outside the clone; then runs the root package's tests and the
# guest agent's (guest-agent/).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "test: guest kernel (first build takes ~8 minutes on 2 cores; cached afterwards)" >&2
kernel=$(bash images/build-kernel.sh | tail -n 1)
initrd=$(bash images/build-test-initrd.sh | tail -n 1)
rootfs=$(bash images/build-test-rootfs.sh | tail -n 1)
echo "test: agent initrd (static kata-agent: about 2 minutes when its sources changed; cached afterwards)" >&2
agent_initrd=$(bash images/build-agent-initrd.sh | tail -n 1)
agent_image=$(bash images/build-agent-image.sh | tail -n 1)
busybox_rootfs=$(bash images/build-busybox-rootfs.sh | tail -n 1)
agent_shell_image=$(bash images/build-agent-image.sh --with-shell | tail -n 1)
[ -f "$rootfs" ] || { echo "test: error: rootfs build did not produce a file ('$rootfs')" >&2; exit 1; }
[ -f "$kernel" ] || { echo "test: error: kernel build did not produce a file ('$kernel')" >&2; exit 1; }
[ -f "$initrd" ] || { echo "test: error: initrd build did not produce a file ('$initrd')" >&2; exit 1; }
[ -f "$agent_initrd" ] || { echo "test: error: agent initrd build did not produce a file ('$agent_initrd')" >&2; exit 1; }
export KASA_TEST_KERNEL="$kernel" KASA_TEST_INITRD="$initrd" KASA_TEST_ROOTFS="$rootfs"
export KASA_TEST_AGENT_INITRD="$agent_initrd" KASA_TEST_AGENT_IMAGE="$agent_image" KASA_TEST_AGENT_SHELL_IMAGE="$agent_shell_image"
export KASA_TEST_BUSYBOX_ROOTFS="$busybox_rootfs"
# The same static kata-agent, run as a host process by the Runtime's fast tests.
KASA_TEST_AGENT=$(bash images/build-agent.sh --print-path | tail -n 1)
export KASA_TEST_AGENT

# Both packages' tests run even when the first fails; the exit status covers both.
status=0
swift build --build-tests
# Every test process, and every shim, VMM and runtime the tests start, runs under a
# close(2) audit (scripts/fd-audit.sh): closing a descriptor that is not open is a double
# close, which can close another component's file (issue 15, fault 2).
fd_audit=$(bash scripts/fd-audit.sh build)
KASA_FD_AUDIT_LOG=$(mktemp /tmp/kasa-fd-audit.XXXXXX)
trap 'rm -f "$KASA_FD_AUDIT_LOG"' EXIT  # an interrupted run leaves no log behind either
chmod 0666 "$KASA_FD_AUDIT_LOG"  # whichever user a program runs as appends to it
export KASA_FD_AUDIT_LOG
audited() { LD_PRELOAD="$fd_audit" "$@"; }
# Swift Testing runs synchronous tests on the cooperative pool, which has one thread per
# core: the real-KVM tests block theirs for minutes, and on a 2-core machine they starve
# the suites that need the pool (the NIO ttrpc server, the shim's task service) and hold
# quick suites in the queue past their time limits (NotificationRaceTests, a few seconds
# alone, ran into its 1-minute limit in a full run). Those run first, on their own.
pool_suites='TTRPCServerTests|TaskServiceTests|WireFactsTests|ShimArgumentsTests|ContainerRunTests|BinaryLoggerTests|KasaShimRuntimeTests|NetDeviceTests|UnpluggedNICTests|PodNetworkTests|NotificationRaceTests'
audited swift test --skip-build --filter "$pool_suites" || status=1
# The containerd suites (ContainerdTests with the fault tests; CRITests with the stress
# test) hold both pool threads for many minutes: run beside the rest they stalled it, and
# time-limited quick tests whose end could not be processed were failed (GuestProfilerTests,
# once). They run last, on their own: two serialized suites of about equal length, two VM
# tests at a time (a third suite made it three, and the phase took twice as long).
long_suites='ContainerdTests|CRITests'
audited swift test --skip-build --skip "$pool_suites|$long_suites" || status=1
audited swift test --skip-build --filter "$long_suites" || status=1

echo "test: guest agent package (guest-agent/)" >&2
swift build --build-tests --package-path guest-agent
audited swift test --skip-build --package-path guest-agent || status=1
bash scripts/fd-audit.sh report "$KASA_FD_AUDIT_LOG" || status=1
exit $status
