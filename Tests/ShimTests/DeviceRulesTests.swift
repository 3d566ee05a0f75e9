import Foundation
import Testing

/// The spec's `linux.resources.devices` inside the VM (the agent's BPF device filter on the
/// container's cgroup). ctr's default spec refuses every device but the usual nodes, and
/// its containers keep CAP_MKNOD: without the filter one could make a node for the VM's
/// own disk — in a pod, the other containers' root filesystems — and read it. With it the
/// node can be made (runc allows mknod of anything) but not opened.
///
/// In ContainerdTests' serialized suite (see StressTests.swift for why).
extension ContainerdTests {
    /// Makes a node for the guest's first disk (numbers from /proc/partitions) and reads it.
    static let diskThroughMknod = """
        set -- $(grep -m1 ' vda$' /proc/partitions)
        [ -n "$1" ] || { echo no-vda; exit 3; }
        if mknod /vda b "$1" "$2" 2>/dev/null; then echo made; else echo mknod-refused; fi
        if [ -b /vda ] && head -c 512 /vda > /dev/null 2>&1; then echo disk-read; else echo disk-not-read; fi
        head -c 1 /dev/urandom > /dev/null && echo urandom-read
        """

    @Test(.timeLimit(.minutes(20)))
    func aContainerCannotReachTheVMsDiskThroughANodeItMakes() throws {
        let containerd = try C.Containerd()
        let rootfs = try C.busyboxRootfs()
        let confined = try C.ctr(containerd, ["run", "--rm", "--runtime", "io.containerd.kata.v2", "--rootfs", rootfs,
                                              "devices", "sh", "-c", Self.diskThroughMknod], timeout: 480)
        #expect(confined.status == 0 && confined.stdout == "made\ndisk-not-read\nurandom-read\n",
                "status \(confined.status), stdout \(confined.stdout.debugDescription), stderr \(confined.stderr)\n\(containerd.tail)")
        // The same script in a privileged container (every device allowed) reaches the
        // disk: what the filter stops is really there.
        let privileged = try C.ctr(containerd, ["run", "--rm", "--privileged", "--runtime", "io.containerd.kata.v2", "--rootfs", rootfs,
                                                "devices-all", "sh", "-c", Self.diskThroughMknod], timeout: 480)
        #expect(privileged.status == 0 && privileged.stdout == "made\ndisk-read\nurandom-read\n",
                "status \(privileged.status), stdout \(privileged.stdout.debugDescription), stderr \(privileged.stderr)")
        let states = try C.entries(of: containerd.directory + "/kasa-state")
        #expect(states.isEmpty, "sandbox state left: \(states)")
    }
}
