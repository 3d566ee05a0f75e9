import Foundation
import Testing
@testable import KataAgentCore
import CAgentLinux

/// Mount option parsing and path resolution inside a root (pure, no privileges needed).
struct ContainerMountOptionsTests {
    @Test func flagsDataAndPropagation() {
        let options = MountOptions(parsing: ["nosuid", "noexec", "nodev", "ro", "mode=755", "size=65536k", "rprivate"])
        #expect(options.flags == UInt(KASA_MS_NOSUID | KASA_MS_NOEXEC | KASA_MS_NODEV | KASA_MS_RDONLY))
        #expect(options.data == "mode=755,size=65536k")
        #expect(options.propagation == [UInt(KASA_MS_PRIVATE | KASA_MS_REC)])
        #expect(!options.isBind)
    }

    @Test func bindAndRbind() {
        let bind = MountOptions(parsing: ["bind", "ro"])
        #expect(bind.isBind && !bind.isRecursive)
        #expect(bind.remountFlags == UInt(KASA_MS_RDONLY))
        let rbind = MountOptions(parsing: ["rbind", "rw", "slave"])
        #expect(rbind.isBind && rbind.isRecursive)
        #expect(rbind.remountFlags == 0)
        #expect(rbind.propagation == [UInt(KASA_MS_SLAVE)])
    }

    @Test func laterOptionsWin() {
        #expect(MountOptions(parsing: ["ro", "rw"]).flags == 0)
        #expect(MountOptions(parsing: ["rw", "ro"]).flags == UInt(KASA_MS_RDONLY))
        #expect(MountOptions(parsing: ["nosuid", "suid", "noexec", "exec", "nodev", "dev"]).flags == 0)
        #expect(MountOptions(parsing: ["defaults", ""]).flags == 0)
        #expect(MountOptions(parsing: ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]).data
                == "newinstance,ptmxmode=0666,mode=0620,gid=5")
    }

    /// A scratch tree with links that try to leave it.
    @Test func secureJoinStaysInsideTheRoot() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-join-\(UUID().uuidString)").path
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: root) }
        try fm.createSymbolicLink(atPath: root + "/escape", withDestinationPath: "../../../../etc")
        try fm.createSymbolicLink(atPath: root + "/abs", withDestinationPath: "/etc")
        try fm.createSymbolicLink(atPath: root + "/etc/loop", withDestinationPath: "loop")
        try fm.createSymbolicLink(atPath: root + "/etc/rel", withDestinationPath: "../etc/./x")

        #expect(try ContainerPath.secureJoin(root: root, "/proc") == root + "/proc")
        #expect(try ContainerPath.secureJoin(root: root, "/escape/passwd") == root + "/etc/passwd")
        #expect(try ContainerPath.secureJoin(root: root, "/abs/passwd") == root + "/etc/passwd")
        #expect(try ContainerPath.secureJoin(root: root, "/../../etc/shadow") == root + "/etc/shadow")
        #expect(try ContainerPath.secureJoin(root: root, "/etc/rel/y") == root + "/etc/x/y")
        #expect(try ContainerPath.secureJoin(root: root + "/", "/") == root)
        #expect(throws: ContainerPath.Failure.self) { _ = try ContainerPath.secureJoin(root: root, "/etc/loop/x") }
    }

    @Test func makeDirectoriesAndFiles() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-mkdir-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try ContainerPath.makeDirectories(root + "/a/b/c")
        try ContainerPath.makeDirectories(root + "/a/b/c")
        try ContainerPath.makeFile(root + "/a/f/file")
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: root + "/a/b/c", isDirectory: &isDirectory) && isDirectory.boolValue)
        #expect(FileManager.default.fileExists(atPath: root + "/a/f/file", isDirectory: &isDirectory) && !isDirectory.boolValue)
        #expect(throws: ContainerPath.Failure.self) { try ContainerPath.makeDirectories(root + "/a/f/file/sub") }
    }

    @Test func capabilityAndRlimitNames() {
        #expect(LinuxCapabilities.number(of: "CAP_SYS_ADMIN") == 21)
        #expect(LinuxCapabilities.number(of: "net_raw") == 13)
        #expect(LinuxCapabilities.number(of: "CAP_CHECKPOINT_RESTORE") == 40)
        #expect(LinuxCapabilities.mask(of: ["CAP_CHOWN", "CAP_KILL", "CAP_NOPE"]) == (0x21, ["CAP_NOPE"]))
        #expect(LinuxResourceLimits.number(of: "RLIMIT_NOFILE") == 7)
        #expect(LinuxResourceLimits.number(of: "RLIMIT_RTTIME") == 15)
        #expect(LinuxResourceLimits.number(of: "NOFILE") == nil)
    }

    @Test func executableLookup() throws {
        #expect(try ContainerProcessSetup.resolveExecutable("/x/y", environment: []) == "/x/y")
        #expect(try ContainerProcessSetup.resolveExecutable("sh", environment: ["PATH=/nowhere:/bin"]) == "/bin/sh")
        #expect(throws: (any Error).self) {
            _ = try ContainerProcessSetup.resolveExecutable("no-such-program-kasa", environment: ["PATH=/bin"])
        }
    }
}
