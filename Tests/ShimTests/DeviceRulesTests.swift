import Foundation
import Testing

/// The spec's `linux.resources.devices` inside the VM (the agent's BPF device filter on the
/// container's cgroup). ctr's default spec refuses every device but the usual nodes, and
/// its containers keep CAP_MKNOD: without the filter one could make a node for the VM's
/// own disk — in a pod, the other containers' root filesystems — and read it. With it the
/// node can be made (runc allows mknod of anything) but not opened, until an update of the
/// running container's rules allows it.
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

    /// The rules at create refuse the disk; Task.Update with rules that allow block
    /// devices replaces the filter in the running container (UpdateContainer), and the same
    /// script then reads it: what the filter stopped is really there, and an update reaches
    /// the guest.
    @Test(.timeLimit(.minutes(20)))
    func aContainerCannotReachTheVMsDiskThroughANodeItMakesUntilAnUpdateAllowsIt() throws {
        let containerd = try C.Containerd()
        let rootfs = try C.busyboxRootfs()
        let run = try C.ctr(containerd, ["run", "-d", "--runtime", "io.containerd.kata.v2", "--rootfs", rootfs,
                                         "devices", "sh", "-c", "trap 'exit 0' TERM; \(C.idleLoop)"], timeout: 480)
        try #require(run.status == 0, "ctr run: \(run.stderr)\n\(containerd.tail)")
        let confined = try C.ctr(containerd, ["task", "exec", "--exec-id", "before", "devices", "sh", "-c", Self.diskThroughMknod],
                                 timeout: 120)
        #expect(confined.status == 0 && confined.stdout == "made\ndisk-not-read\nurandom-read\n",
                "status \(confined.status), stdout \(confined.stdout.debugDescription), stderr \(confined.stderr)\n\(containerd.tail)")
        // ctr 1.6 has no `task update`: Task.Update goes to the shim's socket as containerd
        // sends it (LinuxResources as JSON).
        let address = try String(contentsOfFile: containerd.directory + "/state/io.containerd.runtime.v2.task/default/devices/address",
                                 encoding: .utf8)
        try C.updateTask(shimAddress: address, id: "devices", resourcesJSON: #"{"devices":[{"allow":true,"type":"b","access":"r"}]}"#)
        let allowed = try C.ctr(containerd, ["task", "exec", "--exec-id", "after", "devices", "sh", "-c", "rm -f /vda; " + Self.diskThroughMknod],
                                timeout: 120)
        #expect(allowed.status == 0 && allowed.stdout == "made\ndisk-read\nurandom-read\n",
                "status \(allowed.status), stdout \(allowed.stdout.debugDescription), stderr \(allowed.stderr)")
        try C.stopAndRemove(containerd, "devices", signal: "SIGKILL")
        let states = try C.entries(of: containerd.directory + "/kasa-state")
        #expect(states.isEmpty, "sandbox state left: \(states)")
    }
}
