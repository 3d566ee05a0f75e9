import Foundation
@testable import KataAgentCore
import Testing

/// The host names a container's rootfs disk by its virtio serial; the agent finds it in
/// sysfs (here a fake one), as the guest has no udev to make the by-id link.
@Suite struct VirtioDiskNameTests {
    /// A sysfs with `disks` (name -> serial file contents) under block/.
    static func fakeSysfs(_ disks: [String: String]) throws -> String {
        let root = FileManager.default.temporaryDirectory.appending(path: "kasa-sysfs-\(UUID().uuidString)").path
        for (name, serial) in disks {
            try FileManager.default.createDirectory(atPath: root + "/block/" + name, withIntermediateDirectories: true)
            try serial.write(toFile: root + "/block/" + name + "/serial", atomically: true, encoding: .utf8)
        }
        return root
    }

    @Test func aDiskIsFoundByItsSerialWhateverItsPlaceInTheOrder() throws {
        let sysfs = try Self.fakeSysfs(["vda": "agent.img\n", "vdb": "kasa-0123456789abcde\n", "vdc": "kasa-feedfacecafe000\n"])
        defer { try? FileManager.default.removeItem(atPath: sysfs) }
        #expect(try VirtioDiskName.resolve("/dev/disk/by-id/virtio-kasa-feedfacecafe000", sysfs: sysfs, timeout: 0) == "/dev/vdc")
        #expect(try VirtioDiskName.resolve("/dev/disk/by-id/virtio-kasa-0123456789abcde", sysfs: sysfs, timeout: 0) == "/dev/vdb")
        // Other sources pass through untouched (a directory to bind, a plain device name).
        #expect(try VirtioDiskName.resolve("/dev/vda", sysfs: sysfs, timeout: 0) == "/dev/vda")
        #expect(try VirtioDiskName.resolve("/run/rootfs", sysfs: sysfs, timeout: 0) == "/run/rootfs")
    }

    @Test func aMissingSerialIsNotFoundAfterTheWait() throws {
        let sysfs = try Self.fakeSysfs(["vda": "agent.img\n", "sda": "kasa-feedfacecafe000\n"])
        defer { try? FileManager.default.removeItem(atPath: sysfs) }
        let started = Date()
        let error = #expect(throws: AgentError.self) {
            _ = try VirtioDiskName.resolve("/dev/disk/by-id/virtio-kasa-feedfacecafe000", sysfs: sysfs, timeout: 0.2)
        }
        #expect(error?.code == .notFound, "only vd* disks are virtio disks: \(String(describing: error))")
        #expect(error?.message.contains("no virtio disk has serial kasa-feedfacecafe000") == true)
        #expect(Date().timeIntervalSince(started) >= 0.15, "it waited for the disk to appear")
        #expect(throws: AgentError.self) { _ = try VirtioDiskName.resolve("/dev/disk/by-id/virtio-a/../b", sysfs: sysfs, timeout: 0) }
    }

    @Test func aDiskThatAppearsWhileWaitingIsFound() throws {
        let sysfs = try Self.fakeSysfs(["vda": "agent.img\n"])
        defer { try? FileManager.default.removeItem(atPath: sysfs) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) {
            try? FileManager.default.createDirectory(atPath: sysfs + "/block/vdb", withIntermediateDirectories: true)
            try? "kasa-late\n".write(toFile: sysfs + "/block/vdb/serial", atomically: true, encoding: .utf8)
        }
        #expect(try VirtioDiskName.resolve("/dev/disk/by-id/virtio-kasa-late", sysfs: sysfs, timeout: 5) == "/dev/vdb")
    }
}
