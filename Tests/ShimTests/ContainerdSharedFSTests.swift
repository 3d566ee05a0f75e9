import Foundation
import Runtime
import Testing

/// containerd with `shared_fs = "virtio-fs"`: `ctr run --mount` gives the container the host
/// directory itself, live both ways while the task runs; a 100 MiB file (six times what a
/// copied bind mount may hold) reads back with its checksum; a read-only mount refuses
/// writes; the rootfs comes from the host directory (no image); nothing is left mounted after.
/// The sandbox is restored from a template that has the virtio-fs device.
extension ContainerdTests {
    @Test(.timeLimit(.minutes(20)))
    func ctrRunSharesAVolumeLiveOverVirtioFS() throws {
        let containerd = try Containerd(hypervisorKeys: "shared_fs = \"virtio-fs\"")
        let rootfs = try Self.busyboxRootfs()
        let data = containerd.directory + "/volume", readOnly = containerd.directory + "/config-map"
        for directory in [data, readOnly] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        try "original".write(toFile: data + "/in", atomically: false, encoding: .utf8)
        try "level=debug\n".write(toFile: readOnly + "/app.conf", atomically: false, encoding: .utf8)
        var big = [UInt8](repeating: 0, count: 100 << 20)
        for index in stride(from: 0, to: big.count, by: 4096) { big[index] = UInt8(truncatingIfNeeded: index >> 12) }
        try Data(big).write(to: URL(filePath: data + "/big"))
        var hash = ContentHash()
        hash.update(big)
        let digest = hash.hexDigest()
        let script = """
            echo from-container > /data/out
            n=0; while [ "$(cat /data/in)" != changed ]; do n=$((n+1)); [ $n -gt 1500 ] && exit 9; sleep 0.2; done
            echo saw-change; cat /etc/app/app.conf
            sum=$(busybox sha256sum /data/big); echo "big ${sum%% *}"
            if echo x > /etc/app/new 2>/dev/null; then echo readonly-writable; else echo readonly-refused; fi
            """
        // ctr runs while the test watches the volume: its output goes to files.
        let ctr = Process()
        ctr.executableURL = URL(filePath: "/usr/bin/ctr")
        ctr.arguments = ["--address", containerd.socket, "run", "--rm", "--runtime", "io.containerd.kata.v2",
                         "--mount", "type=bind,src=\(data),dst=/data,options=rbind:rw",
                         "--mount", "type=bind,src=\(readOnly),dst=/etc/app,options=rbind:ro",
                         "--rootfs", rootfs, "fs1", "sh", "-c", script]
        let stdoutPath = containerd.directory + "/ctr.out", stderrPath = containerd.directory + "/ctr.err"
        for path in [stdoutPath, stderrPath] { #expect(FileManager.default.createFile(atPath: path, contents: nil)) }
        ctr.standardOutput = try FileHandle(forWritingTo: URL(filePath: stdoutPath))
        ctr.standardError = try FileHandle(forWritingTo: URL(filePath: stderrPath))
        ctr.standardInput = FileHandle.nullDevice
        try ctr.run()
        var seen: String?
        let deadline = Date().addingTimeInterval(540)
        while seen != "from-container\n", ctr.isRunning, Date() < deadline {
            usleep(200_000)
            seen = try? String(contentsOfFile: data + "/out", encoding: .utf8)
        }
        #expect(seen == "from-container\n", "the container's write did not reach the host while the task ran\n\(containerd.tail)")
        // The sandbox started from the virtio-fs template, its device serving this sandbox's directory.
        let vmms = CRITests.commandLines(containing: containerd.directory + "/kasa-state/").filter { $0.contains("kasa-vmm") }
        #expect(vmms.count == 1 && vmms.allSatisfy { $0.contains("--restore") && $0.contains("--shared-dir tag=kataShared,path=\(containerd.directory)/kasa-state/") },
                "the VM is restored from the template with the sandbox's shared directory: \(vmms)")
        try "changed".write(toFile: data + "/in", atomically: false, encoding: .utf8)
        // Reading 100 MiB through virtio-fs crosses the emulated guest kernel for every
        // request on kvm_pvm: about 4 minutes alone (docs/performance.md).
        while ctr.isRunning, Date() < deadline.addingTimeInterval(540) { usleep(200_000) }
        if ctr.isRunning { ctr.terminate() }
        ctr.waitUntilExit()
        let run = Outcome(status: ctr.terminationStatus, stdout: (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "",
                          stderr: (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "")
        let context = "ctr stderr: \(run.stderr)\ncontainerd log:\n\(containerd.tail)"
        #expect(run.status == 0, "\(context)")
        #expect(run.stdout == "saw-change\nlevel=debug\nbig \(digest)\nreadonly-refused\n", "\(context)\n\(OutputBytes.describe(run.stdout))")
        #expect(!FileManager.default.fileExists(atPath: readOnly + "/new"))
        let states = try ContainerdTests.entries(of: containerd.directory + "/kasa-state")
        #expect(states.isEmpty, "sandbox state left: \(states)")
        #expect(HostMounts.lookedUp(under: containerd.directory + "/kasa-state")?.isEmpty == true)
        #expect(try String(contentsOfFile: data + "/out", encoding: .utf8) == "from-container\n", "the volume is untouched")
        #expect((try? FileManager.default.attributesOfItem(atPath: data + "/big")[.size] as? Int) == 100 << 20)
        Thread.sleep(forTimeInterval: 1)
        #expect(containerd.leftovers().isEmpty, "shim or VMM processes left")
    }
}
