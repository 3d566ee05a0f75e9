import Foundation
import Runtime
import Testing

/// A pod through CRI with `shared_fs = "virtio-fs"`: the files a kubelet mounts (a hostPath
/// volume, the termination-message file) are the host's own, live both ways; the app
/// container's rootfs (a pod's second container: no drive slot) is the snapshot's
/// directory served over virtio-fs; removal leaves no mount. The pod's VM is restored from a
/// template that has the virtio-fs device.
extension CRITests {
    @Test(.timeLimit(.minutes(20)))
    func aPodSharesItsVolumesAndTerminationLogOverVirtioFS() throws {
        let containerd = try Containerd(cri: .init(subnet: "10.88.10.0/24"), hypervisorKeys: "shared_fs = \"virtio-fs\"")
        let busybox = "docker.io/kasa/busybox:test"
        try Self.importImage(containerd, name: containerd.cri!.sandboxImage,
                             command: ["sh", "-c", "trap 'exit 0' TERM INT; while true; do sleep 3600 & wait $!; done"])
        try Self.importImage(containerd, name: busybox, command: ["sh"])
        let volume = containerd.directory + "/host-volume", terminationLog = containerd.directory + "/termination-log"
        try FileManager.default.createDirectory(atPath: volume, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: terminationLog, contents: nil))
        let pod = Self.podConfig(name: "shared-pod", directory: containerd.directory, dns: nil)
        let podID: String
        do {
            let ran = try Self.call(containerd, "RunPodSandbox", ["config": pod, "runtime_handler": "kata"])
            podID = try #require(ran["pod_sandbox_id"] as? String, "\(ran)")
        } catch {
            Issue.record("RunPodSandbox: \(error)\ncontainerd log:\n\(containerd.tail)")
            return
        }
        // The pod starts from the virtio-fs template: its device serves this pod's directory.
        let vmms = Self.commandLines(containing: containerd.directory + "/kasa-state").filter { $0.contains("kasa-vmm") }
        #expect(vmms.count == 1 && vmms.allSatisfy { $0.contains("--restore") && $0.contains("--shared-dir tag=kataShared,path=\(containerd.directory)/kasa-state/") },
                "the pod's VM is restored from the template with the pod's shared directory: \(vmms)")
        var config = Self.containerConfig(name: "app", image: busybox,
                                          script: "echo finished > /dev/termination-log; echo from-the-pod > /data/out; \(ContainerdTests.idleLoop)")
        config["mounts"] = [["container_path": "/data", "host_path": volume],
                            ["container_path": "/dev/termination-log", "host_path": terminationLog]]
        let created = try Self.call(containerd, "CreateContainer", ["pod_sandbox_id": podID, "sandbox_config": pod, "config": config])
        let id = try #require(created["container_id"] as? String)
        try Self.call(containerd, "StartContainer", ["container_id": id])
        #expect(ContainerdTests.waitFor(120) { (try? String(contentsOfFile: volume + "/out", encoding: .utf8)) == "from-the-pod\n" },
                "the container's write did not reach the hostPath volume\n\(containerd.tail)")
        #expect(ContainerdTests.waitFor(30) { (try? String(contentsOfFile: terminationLog, encoding: .utf8)) == "finished\n" },
                "the termination message did not reach the host file")
        try "from-the-node\n".write(toFile: volume + "/in", atomically: false, encoding: .utf8)
        let seen = try Self.exec(containerd, id, "cat /data/in; ls /data")
        #expect(seen.stdout == "from-the-node\nin\nout\n", "\(seen)")
        try Self.call(containerd, "StopPodSandbox", ["pod_sandbox_id": podID])
        try Self.call(containerd, "RemovePodSandbox", ["pod_sandbox_id": podID])
        try Self.expectNothingLeft(containerd)
        #expect(HostMounts.lookedUp(under: containerd.directory + "/kasa-state")?.isEmpty == true,
                "mounts left in the sandbox state")
        #expect(try String(contentsOfFile: volume + "/out", encoding: .utf8) == "from-the-pod\n", "the volume is untouched")
    }
}
