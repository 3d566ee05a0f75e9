import Foundation
import KasaJSON
@testable import Runtime
import Testing

/// `shared_fs = "virtio-fs"` through `kata-runtime run --bundle`, as a user runs it: a
/// volume shared live both ways, a file beyond the copy limit, a read-only volume,
/// and the container's rootfs served from the host directory itself (no image built).
extension KataRuntimeCommandTests {
    @Test(.timeLimit(.minutes(20)))
    func volumesAndTheRootfsAreSharedLiveOverVirtioFS() throws {
        let kernel = try RuntimeTestSupport.artifact("KASA_TEST_KERNEL", script: "images/build-kernel.sh", what: "the guest kernel")
        let image = try RuntimeTestSupport.artifact("KASA_TEST_AGENT_IMAGE", script: "images/build-agent-image.sh", what: "the agent image")
        let setup = try Setup(kernel: kernel, boot: image, hypervisorExtra: "shared_fs = \"virtio-fs\"")
        let bundle = setup.directory + "/bundle"
        let rootfs = try RuntimeTestSupport.busyboxRootfs()
        defer { try? FileManager.default.removeItem(atPath: rootfs) }
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        let data = setup.directory + "/data", readOnly = setup.directory + "/readonly"
        for directory in [data, readOnly] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        try "original".write(toFile: data + "/in", atomically: false, encoding: .utf8)
        try "kept".write(toFile: readOnly + "/file", atomically: false, encoding: .utf8)
        // 17 MiB, more than a copied bind mount may hold (16 MiB). (ContainerdSharedFSTests
        // reads 100 MiB: on kvm_pvm that takes minutes, once is enough.)
        var big = [UInt8](repeating: 0, count: 17 << 20)
        for index in stride(from: 0, to: big.count, by: 4096) { big[index] = UInt8(truncatingIfNeeded: index >> 12) }
        try Data(big).write(to: URL(filePath: data + "/big"))
        var hash = ContentHash()
        hash.update(big)
        let digest = hash.hexDigest()

        let script = """
            echo from-container > /data/out
            n=0; while [ "$(cat /data/in)" != changed ]; do n=$((n+1)); [ $n -gt 1500 ] && { echo no-change-seen; exit 9; }; sleep 0.2; done
            echo saw-change
            echo "big $(busybox sha256sum /data/big)"
            if echo x > /readonly/new 2>/dev/null; then echo readonly-writable; else echo readonly-refused; fi
            echo written-by-the-container > /rootfs-marker
            echo done
            """
        let config = """
            {"ociVersion": "1.0.2", "root": {"path": "\(rootfs)"},
             "process": {"args": ["sh", "-c", \(JSONValue.string(script).jsonText)], "cwd": "/", "env": ["PATH=/bin"]},
             "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                        {"destination": "/data", "type": "bind", "source": "\(data)", "options": ["rbind", "rw"]},
                        {"destination": "/readonly", "type": "bind", "source": "\(readOnly)", "options": ["rbind", "ro"]}],
             "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}
            """
        try config.write(toFile: bundle + "/config.json", atomically: false, encoding: .utf8)

        let process = Process()
        process.executableURL = KataRuntimeCommandTests.productsDirectory.appending(path: "kata-runtime")
        process.arguments = ["run", "--config", setup.configPath, "--bundle", bundle]
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // The container's write reaches the host while it runs; then the host's reaches it.
        let deadline = Date().addingTimeInterval(420)
        // (The guest's shell creates the file, then writes it: two requests.)
        var seen: String?
        while seen != "from-container\n", process.isRunning, Date() < deadline {
            usleep(100_000)
            seen = try? String(contentsOfFile: data + "/out", encoding: .utf8)
        }
        #expect(seen == "from-container\n", "the container's write did not reach the host while it ran")
        try "changed".write(toFile: data + "/in", atomically: false, encoding: .utf8)
        let waiter = DispatchWorkItem { if process.isRunning { process.terminate() } }
        // Generous: reading through virtio-fs crosses the emulated guest kernel on a kvm_pvm
        // host for every request (100 MiB took ~4 minutes alone, past 300 s in a full suite).
        DispatchQueue.global().asyncAfter(deadline: .now() + 540, execute: waiter)
        let stdout = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        waiter.cancel()
        #expect(process.terminationStatus == 0, "stdout: \(stdout)\nstderr: \(stderr)")
        #expect(stdout.contains("saw-change\n"), "the host's change did not reach the container: \(stdout) \(stderr)")
        #expect(stdout.contains("big \(digest)"), "17 MiB read back wrong: \(stdout)")
        #expect(stdout.contains("readonly-refused\n") && !FileManager.default.fileExists(atPath: readOnly + "/new"))
        #expect(stdout.contains("done\n"), "\(stdout) \(stderr)")
        #expect(try String(contentsOfFile: rootfs + "/rootfs-marker", encoding: .utf8) == "written-by-the-container\n",
                "the rootfs is the host directory itself")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: setup.imageCache))?.isEmpty ?? true, "no rootfs image was built")
        #expect((try? FileManager.default.attributesOfItem(atPath: data + "/big")[.size] as? Int) == 17 << 20, "the volume is untouched")
        setup.expectNothingLeft()
    }
}
