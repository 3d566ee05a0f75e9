import AgentProtocol
import Foundation
import KasaJSON
@testable import Runtime
import Testing

/// `shared_fs = "virtio-fs"` on the host side: the configuration keys, the bind-mount plan
/// that shares instead of copying, the export's bind mounts, and a teardown that never
/// deletes through a mount point (the user's volume behind it).
@Suite(.serialized) struct VirtioFSExportTests {
    @Test func sharedFSAndCacheKeysAreReadAndCheckedAsKatasAre() throws {
        let loaded = try ConfigurationLoader.parse("""
            [hypervisor.kasa]
            shared_fs = "virtio-fs"
            virtio_fs_cache = "none"
            """, path: "/etc/test.toml")
        #expect(loaded.configuration.hypervisor.sharedFileSystem == .virtioFS)
        #expect(loaded.configuration.hypervisor.virtioFSCache == "never", "Kata's \"none\" is never")
        #expect(loaded.warnings.isEmpty)
        #expect(try ConfigurationLoader.parse("", path: "/x").configuration.hypervisor.sharedFileSystem == .none)
        #expect(throws: RuntimeError.self) { try ConfigurationLoader.parse("[hypervisor.kasa]\nshared_fs = \"virtio-9p\"", path: "/x") }
        #expect(throws: RuntimeError.self) { try ConfigurationLoader.parse("[hypervisor.kasa]\nvirtio_fs_cache = \"metadata\"", path: "/x") }
        var configuration = loaded.configuration
        configuration.runtime.stateDirectory = "/run/kasa-test"
        let settings = MicroVMBackend.Settings(configuration: configuration, sandboxID: "pod1")
        #expect(settings.virtioFS == VirtioFSExport(stateDirectory: "/run/kasa-test/pod1", cache: "never"))
        #expect(settings.virtioFS?.vmmArguments == ["--shared-dir", "tag=kataShared,path=/run/kasa-test/pod1/shared,cache=never"])
    }

    @Test func bindsAreSharedNotCopiedAndPodShmStaysInTheGuest() throws {
        let host = try RuntimeTestSupport.temporaryDirectory("kasa-share-plan")
        defer { try? FileManager.default.removeItem(atPath: host) }
        try FileManager.default.createDirectory(atPath: host + "/data", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: host + "/shm", withIntermediateDirectories: true)
        // Far beyond what copying allows: sharing has no size limit.
        #expect(FileManager.default.createFile(atPath: host + "/data/big", contents: nil))
        #expect(truncate(host + "/data/big", off_t(HostBindMounts.limitBytes * 4)) == 0)
        let spec = try HostBindMountsTests.spec("""
            {"destination": "/data", "type": "bind", "source": "\(host)/data", "options": ["rbind", "rw"]},
            {"destination": "/config", "source": "\(host)/data", "options": ["bind", "ro"]},
            {"destination": "/dev/shm", "type": "bind", "source": "\(host)/shm", "options": ["rbind"]}
            """)
        #expect(throws: RuntimeError.self) { try HostBindMounts.plan(spec, containerID: "c1") }
        let plan = try HostBindMounts.plan(spec, containerID: "c1", sharing: true)
        #expect(plan.shares.map(\.mount) == [1, 2])
        #expect(plan.shares.map(\.path) == ["c1/mounts/1-data", "c1/mounts/2-data"])
        #expect(plan.shares.map(\.readOnly) == [false, true])
        #expect(plan.requests.map(\.path) == [HostBindMounts.podSharedMemoryName], "only the pod's shm directory is made in the guest")
        let missing = try HostBindMountsTests.spec(#"{"destination": "/x", "type": "bind", "source": "/nonexistent/kasa", "options": ["rbind"]}"#)
        #expect(throws: RuntimeError.self) { try HostBindMounts.plan(missing, containerID: "c1", sharing: true) }
    }

    @Test func theExportBindsRootfsAndVolumesAndUnsharesThem() throws {
        let base = try RuntimeTestSupport.temporaryDirectory("kasa-export")
        defer {
            HostMounts.unmountAll(under: base)
            try? FileManager.default.removeItem(atPath: base)
        }
        try FileManager.default.createDirectory(atPath: base + "/rootfs/etc", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: base + "/volume", withIntermediateDirectories: true)
        try "v1".write(toFile: base + "/volume/file", atomically: false, encoding: .utf8)
        try "nameserver 10.0.0.1\n".write(toFile: base + "/resolv.conf", atomically: false, encoding: .utf8)
        let export = VirtioFSExport(stateDirectory: base + "/state", cache: "auto")
        try export.prepare()
        let attributes = try FileManager.default.attributesOfItem(atPath: export.hostDirectory)
        #expect((attributes[.posixPermissions] as? Int) == 0o700)
        #expect(export.storage.source == "kataShared" && export.storage.type == "virtiofs"
                && export.storage.target == VirtioFSExport.guestMountPoint)

        let rootfs = try export.shareRootfs(base + "/rootfs", containerID: "c1")
        #expect(rootfs.source == VirtioFSExport.guestMountPoint + "/c1/rootfs" && rootfs.options == ["bind"])
        #expect(FileManager.default.fileExists(atPath: export.hostDirectory + "/c1/rootfs/etc"))
        let volume = try export.share(base + "/volume", as: "c1/mounts/1-volume", readOnly: true)
        #expect(volume == VirtioFSExport.guestMountPoint + "/c1/mounts/1-volume")
        #expect(try String(contentsOfFile: export.hostDirectory + "/c1/mounts/1-volume/file", encoding: .utf8) == "v1")
        #expect(!FileManager.default.createFile(atPath: export.hostDirectory + "/c1/mounts/1-volume/new", contents: nil),
                "a read-only share is read-only on the host too")
        _ = try export.share(base + "/resolv.conf", as: "c1/mounts/2-resolv.conf", readOnly: false)
        #expect(try String(contentsOfFile: export.hostDirectory + "/c1/mounts/2-resolv.conf", encoding: .utf8) == "nameserver 10.0.0.1\n")
        #expect(throws: RuntimeError.self) { try export.shareRootfs(base + "/rootfs", containerID: "../escape") }

        #expect(export.unshare(containerID: "c1"))
        #expect(!FileManager.default.fileExists(atPath: export.hostDirectory + "/c1"))
        // Only the shared directory's own mount is left (shared propagation, so a jailed
        // VMM's copy receives later mounts); it comes off with the sandbox.
        let exportMount = HostFile.realPath(export.hostDirectory) ?? export.hostDirectory
        #expect(HostMounts.mountPoints(under: base) == [exportMount])
        let propagation = HostMounts.propagation(of: exportMount)
        #expect(propagation?.contains { $0.hasPrefix("shared:") } == true,
                "the shared directory's mount has no shared propagation: \(propagation.map { "\($0)" } ?? "not a mount point")")
        #expect(export.release())
        #expect(HostMounts.mountPoints(under: base).isEmpty)
        #expect(try String(contentsOfFile: base + "/volume/file", encoding: .utf8) == "v1", "the volume itself is untouched")
        #expect(FileManager.default.fileExists(atPath: base + "/rootfs/etc"))
    }

    /// The state directory goes with `removeTree`; a volume still mounted in it must come
    /// through untouched (its mount point is left, not deleted through).
    @Test func removingAStateDirectoryNeverDeletesThroughAMount() throws {
        let base = try RuntimeTestSupport.temporaryDirectory("kasa-removetree")
        defer {
            HostMounts.unmountAll(under: base)
            try? FileManager.default.removeItem(atPath: base)
        }
        try FileManager.default.createDirectory(atPath: base + "/volume/deep", withIntermediateDirectories: true)
        try "keep me".write(toFile: base + "/volume/deep/precious", atomically: false, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: base + "/state/junk", withIntermediateDirectories: true)
        try HostMounts.bind(base + "/volume", at: base + "/state/shared/c1/mounts/0-volume", readOnly: false)
        #expect(!HostFile.removeTree(base + "/state"), "a tree with a mount in it is not wholly removed")
        #expect(try String(contentsOfFile: base + "/volume/deep/precious", encoding: .utf8) == "keep me")
        #expect(!FileManager.default.fileExists(atPath: base + "/state/junk"), "the rest went")
        #expect(HostMounts.unmountAll(under: base + "/state"))
        #expect(HostFile.removeTree(base + "/state"))
        #expect(!FileManager.default.fileExists(atPath: base + "/state"))
        #expect(try String(contentsOfFile: base + "/volume/deep/precious", encoding: .utf8) == "keep me")
    }

    @Test func mountTableEscapesAreDecoded() {
        #expect(HostMounts.unescape(#"/run/with\040space/and\134backslash"#) == "/run/with space/and\\backslash")
        #expect(HostMounts.unescape("/plain") == "/plain")
        #expect(HostMounts.unescape(#"/short\04"#) == #"/short\04"#)
    }
}
