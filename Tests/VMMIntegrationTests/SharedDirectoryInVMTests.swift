import Foundation
import SharedFileSystem
import Testing
import VMM

/// virtio-fs with the real guest kernel: the test rootfs's init mounts the shared directory
/// (tag kasashare) and runs images/test-guest/virtiofs-posix.c on it; the host then checks
/// what the workload left in the directory. On kvm_pvm every FUSE request crosses the
/// emulated guest kernel, so this takes a few minutes here; the watchdog bounds it.
@Suite struct SharedDirectoryInVMTests {
    static let steps = ["mkdir", "create-write-read", "append", "truncate", "mkdir-p", "rename-across-directories",
                        "hard-link", "symlink", "chmod-chown", "readdir-10000", "sparse", "fsync", "mmap-read",
                        "rm-r", "host-visible-write", "unlink"]

    static func patternByte(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: index &* 31 &+ (index >> 9)) }

    @Test(.timeLimit(.minutes(20)))
    func guestMountsTheSharedDirectoryAndRunsAPOSIXWorkload() throws {
        let kernel = try RealKernelTests.artifact("KASA_TEST_KERNEL", script: "images/build-kernel.sh")
        let cached = try RealKernelTests.artifact("KASA_TEST_ROOTFS", script: "images/build-test-rootfs.sh")
        let directory = GuestBuilder.outputDirectory.appending(path: "virtiofs-\(UUID().uuidString.prefix(8))").path
        let share = directory + "/share"
        try FileManager.default.createDirectory(atPath: share + "/many", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let disk = directory + "/root.ext4"
        try FileManager.default.copyItem(atPath: cached, toPath: disk)
        for index in 0..<10_000 {
            #expect(FileManager.default.createFile(atPath: share + String(format: "/many/f%05d", index), contents: nil))
        }
        try Data((0..<(1 << 20)).map(SharedDirectoryInVMTests.patternByte)).write(to: URL(filePath: share + "/pattern"))

        let capture = GuestRun.Capture()
        var configuration = VMConfiguration(kernelPath: kernel, commandLine: "console=ttyS0 reboot=k panic=-1 kasatest=virtiofs",
                                            memoryMiB: 256, console: .handler { capture.append($0) })
        configuration.drives = [DriveConfiguration(path: disk, isRoot: true)]
        configuration.sharedDirectories = [SharedDirectoryConfiguration(tag: "kasashare", path: share)]
        let vm = try MicroVM(configuration: configuration)
        let watchdog = DispatchWorkItem { vm.stop() }
        DispatchQueue.global().asyncAfter(deadline: .now() + 600, execute: watchdog)
        let reason = try vm.run()
        watchdog.cancel()
        let console = capture.text
        let tail = String(console.suffix(4000))
        #expect(console.contains("KASA-VIRTIO virtio1 0x001a virtiofs"), "the virtio-fs driver did not bind; console tail:\n\(tail)")
        for step in SharedDirectoryInVMTests.steps {
            #expect(console.contains("KASA-FS-OK \(step)\r\n") || console.contains("KASA-FS-OK \(step)\n"),
                    "step \(step) did not pass; console tail:\n\(tail)")
        }
        #expect(console.contains("KASA-FS-DONE failures=0"), "console tail:\n\(tail)")
        #expect(console.contains("KASA-FS-EXIT 0"), "console tail:\n\(tail)")
        #expect(console.contains("KASA-FS-UNMOUNTED"), "the guest could not unmount; console tail:\n\(tail)")
        #expect(reason == .reset, "\(reason); console tail:\n\(tail)")
        NotificationCheck.expectNoneLost(vm)

        // What the workload left, seen from the host.
        let work = share + "/work"
        let renamed = try [UInt8](Data(contentsOf: URL(filePath: work + "/d1/d2/b.txt")))
        // "hello" (truncated to 5), extended with zeros to 100, "synced" written over the start.
        #expect(renamed == Array("synced".utf8) + [UInt8](repeating: 0, count: 94))
        let attributes = try FileManager.default.attributesOfItem(atPath: work + "/d1/d2/b.txt")
        #expect((attributes[.posixPermissions] as? Int) == 0o640)
        #expect((attributes[.ownerAccountID] as? Int) == 1234 && (attributes[.groupOwnerAccountID] as? Int) == 5678)
        #expect((attributes[.referenceCount] as? Int) == 1, "the hard link was removed again")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: work + "/sym") == "d1/d2/b.txt")
        #expect((try FileManager.default.attributesOfItem(atPath: work + "/sparse")[.size] as? Int) == (1 << 30) + 3)
        #expect(try String(contentsOfFile: work + "/from-guest", encoding: .utf8) == "written in the guest\n")
        #expect(!FileManager.default.fileExists(atPath: work + "/tree") && !FileManager.default.fileExists(atPath: work + "/a.txt"))
        var mode = stat()
        #expect(stat(work + "/d1/d2/d3", &mode) == 0 && mode.st_mode & 0o777 == 0o700)
    }
}
