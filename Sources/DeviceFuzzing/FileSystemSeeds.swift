import Foundation
import HostOS
import SharedFileSystem

/// virtio-fs under the device fuzzer: each input exports a fresh small directory (a file,
/// a subdirectory, a symbolic link pointing outside), the host may change it meanwhile,
/// and when the input ends a canary directory beside the exports must be exactly as it
/// was — a request that reached outside its export is a fault like a crash.
enum FileSystemSeeds {
    static let canary = DeviceFuzzer.directory + "/canary"
    nonisolated(unsafe) static var exports = 0  // libFuzzer runs one input at a time

    static func freshExport() throws -> String {
        let manager = FileManager.default
        if !manager.fileExists(atPath: canary) {
            try manager.createDirectory(atPath: canary, withIntermediateDirectories: true)
            try Data("canary".utf8).write(to: URL(filePath: canary + "/secret"))
        }
        exports += 1
        let path = DeviceFuzzer.directory + "/export-\(exports)"
        try manager.createDirectory(atPath: path + "/sub", withIntermediateDirectories: true)
        guard writeFile(path + "/hello", Array("hello, fuzzer\n".utf8)), writeFile(path + "/sub/inner", [1, 2, 3]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        try manager.createSymbolicLink(atPath: path + "/out", withDestinationPath: canary)
        return path
    }

    /// Writes a small file, never through a link (the guest may have put one there).
    /// Not Foundation's `Data.write` or `createFile`: they fsync, and flushing these
    /// throwaway files to disk took a quarter of each input's time.
    static func writeFile(_ path: String, _ bytes: [UInt8]) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return DescriptorIO.write(fd, bytes, socket: false) == 0
    }

    static func removeExport(_ path: String) {
        // removeItem deletes links, never what they point at.
        try? FileManager.default.removeItem(atPath: path)
        let listing = try? FileManager.default.contentsOfDirectory(atPath: canary)
        let secret = try? Data(contentsOf: URL(filePath: canary + "/secret"))
        guard listing == ["secret"], secret == Data("canary".utf8) else {
            fatalError("virtio-fs: a request changed the canary directory outside the export: \(listing ?? [])")
        }
    }

    /// The host changing the export under the guest: a new file, a rename, a directory
    /// swapped for a link out of the export, a removal.
    static func hostChanges(_ export: String, _ choice: UInt8, _ bytes: [UInt8]) {
        let manager = FileManager.default
        switch choice % 4 {
        case 0: _ = writeFile(export + "/host-\(choice)", bytes)
        case 1: try? manager.moveItem(atPath: export + "/hello", toPath: export + "/moved")
        case 2:
            try? manager.moveItem(atPath: export + "/sub", toPath: export + "/sub-old")
            try? manager.createSymbolicLink(atPath: export + "/sub", withDestinationPath: canary)
        default: try? manager.removeItem(atPath: export + "/moved")
        }
    }

    /// Requests as the Linux driver sends them, node IDs as the server hands them out
    /// (the root is 1, each new node the next number, handles from 1).
    static func seeds(setUp: [UInt8], chain: (UInt8, [(readable: [UInt8]?, writable: Int)]) -> [UInt8],
                      notify: (UInt8) -> [UInt8], settle: [UInt8]) -> [(name: String, bytes: [UInt8])] {
        var unique: UInt64 = 0
        func le32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
        func le64(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
        func name(_ text: String) -> [UInt8] { Array(text.utf8) + [0] }
        func request(_ opcode: FUSEOpcode, node: UInt64, _ arguments: [UInt8], reply: Int, queue: UInt8 = 1) -> [UInt8] {
            unique += 1
            let header = FUSEInHeader(length: UInt32(FUSE.inHeaderSize + arguments.count), opcode: opcode.rawValue,
                                      unique: unique, nodeID: node).encoded
            let buffers: [(readable: [UInt8]?, writable: Int)] = reply > 0 ? [(header + arguments, 0), (nil, FUSE.outHeaderSize + reply)]
                                                                          : [(header + arguments, 0)]
            return chain(queue, buffers) + notify(queue) + settle
        }
        let readArguments = { (handle: UInt64, size: UInt32) in le64(handle) + le64(0) + le32(size) + le32(0) + le64(0) + le32(0) + le32(0) }
        func session(_ body: () -> [UInt8]) -> [UInt8] {
            unique = 0
            let initialize = request(.`init`, node: 0, le32(7) + le32(37) + le32(0) + le32(0xFFFF_FFFF) + [UInt8](repeating: 0, count: 48),
                                     reply: FUSE.initOutSize)
            return setUp + initialize + body()
        }
        return [
            ("lookup-read", session {
                request(.lookup, node: 1, name("hello"), reply: FUSE.entryOutSize)
                    + request(.open, node: 2, le32(0) + le32(0), reply: FUSE.openOutSize)
                    + request(.read, node: 2, readArguments(1, 64), reply: 64)
                    + request(.release, node: 2, le64(1) + le32(0) + le32(0) + le64(0), reply: 0)
            }),
            ("create-write", session {
                request(.create, node: 1, le32(2) + le32(0o100644) + le32(0) + le32(0) + name("new"), reply: FUSE.entryOutSize + FUSE.openOutSize)
                    + request(.write, node: 2, le64(1) + le64(0) + le32(5) + le32(0) + le64(0) + le32(0) + le32(0) + Array("12345".utf8), reply: 8)
                    + request(.setattr, node: 2, le32(1 | 8) + le32(0) + le64(0) + le64(3) + le64(0) + le64(0) + le64(0) + le64(0)
                        + le32(0) + le32(0) + le32(0) + le32(0o100600) + le32(0) + le32(0) + le32(0) + le32(0), reply: FUSE.attrOutSize)
            }),
            ("directories", session {
                request(.mkdir, node: 1, le32(0o755) + le32(0) + name("dir"), reply: FUSE.entryOutSize)
                    + request(.opendir, node: 1, le32(0) + le32(0), reply: FUSE.openOutSize)
                    + request(.readdirplus, node: 1, readArguments(1, 4096), reply: 4096)
                    + request(.rename, node: 1, le64(2) + name("hello") + name("hello2"), reply: 0)
                    + request(.rmdir, node: 1, name("sub"), reply: 0)
            }),
            ("links", session {
                request(.symlink, node: 1, name("link") + name("/etc/passwd"), reply: FUSE.entryOutSize)
                    + request(.readlink, node: 2, [], reply: 256)
                    + request(.lookup, node: 1, name("out"), reply: FUSE.entryOutSize)
                    + request(.open, node: 3, le32(2) + le32(0), reply: FUSE.openOutSize)
                    + request(.link, node: 1, le64(2) + name("hard"), reply: FUSE.entryOutSize)
                    + request(.forget, node: 3, le64(1), reply: 0, queue: 0)
            }),
            ("xattr-statfs", session {
                request(.setxattr, node: 1, le32(2) + le32(0) + name("user.k") + [1, 2], reply: 0)
                    + request(.listxattr, node: 1, le32(0) + le32(0), reply: 8)
                    + request(.statfs, node: 1, [], reply: FUSE.statfsOutSize)
            }),
        ]
    }
}
