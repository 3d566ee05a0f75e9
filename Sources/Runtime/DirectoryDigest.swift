#if canImport(Glibc)
import Glibc
#endif

/// A content key for a root filesystem directory: SHA-256 over a walk in a fixed order
/// of every entry's relative path, type, mode, owner, and its bytes (files), target
/// (links) or device number. Timestamps are left out, so a copied or re-extracted tree
/// with the same content keeps its key; anything the image would show differently
/// changes it.
public enum DirectoryDigest {
    public struct Summary: Sendable, Equatable {
        public var digest: String
        public var entries: Int
        /// Bytes in 4 KiB blocks, as the files will occupy them in the image.
        public var blockBytes: UInt64
    }

    public static func summarize(_ root: String) throws(RuntimeError) -> Summary {
        var hasher = ContentHash()
        var summary = Summary(digest: "", entries: 0, blockBytes: 0)
        try walk(root, relative: ".", hasher: &hasher, summary: &summary)
        summary.digest = hasher.hexDigest()
        return summary
    }

    private static func walk(_ path: String, relative: String, hasher: inout ContentHash, summary: inout Summary) throws(RuntimeError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw RuntimeError.invalidInput("cannot read \(path): \(HostFile.lastErrorDescription())")
        }
        summary.entries += 1
        summary.blockBytes += (UInt64(max(0, info.st_size)) + 4095) / 4096 * 4096
        hasher.update("\(relative)\u{0}\(info.st_mode)\u{0}\(info.st_uid)\u{0}\(info.st_gid)\u{0}")
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            hasher.update("dir\u{0}")
            for name in try HostFile.directoryEntries(path) {
                try walk(path + "/" + name, relative: relative + "/" + name, hasher: &hasher, summary: &summary)
            }
            hasher.update("end\u{0}")
        case S_IFREG:
            hasher.update("file\u{0}\(info.st_size)\u{0}")
            try hashContents(path, into: &hasher)
        case S_IFLNK:
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = readlink(path, &buffer, buffer.count - 1)
            guard count >= 0 else { throw RuntimeError.invalidInput("cannot read link \(path): \(HostFile.lastErrorDescription())") }
            hasher.update("link\u{0}")
            hasher.update(buffer[0..<count].map { UInt8(bitPattern: $0) })
            hasher.update([0])
        default:
            hasher.update("node\u{0}\(info.st_rdev)\u{0}")
        }
    }

    /// A key for the tree as it stands, from metadata alone (no file is read): every
    /// entry's relative path, device and inode number, type and mode, owner, size,
    /// modification and change times (nanoseconds), link target or device number. Writing
    /// a file changes its change time, which no user can set back, so a tree with the same
    /// key has the same content: what lets a cache hit skip reading the tree.
    public static func metadataKey(_ root: String) throws(RuntimeError) -> String {
        var hasher = ContentHash()
        try walkMetadata(root, relative: ".", hasher: &hasher)
        return hasher.hexDigest()
    }

    private static func walkMetadata(_ path: String, relative: String, hasher: inout ContentHash) throws(RuntimeError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw RuntimeError.invalidInput("cannot read \(path): \(HostFile.lastErrorDescription())")
        }
        hasher.update("\(relative)\u{0}\(info.st_dev):\(info.st_ino)\u{0}\(info.st_mode)\u{0}\(info.st_uid):\(info.st_gid)\u{0}"
                      + "\(info.st_size)\u{0}\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)\u{0}\(info.st_ctim.tv_sec).\(info.st_ctim.tv_nsec)\u{0}")
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            for name in try HostFile.directoryEntries(path) {
                try walkMetadata(path + "/" + name, relative: relative + "/" + name, hasher: &hasher)
            }
            hasher.update("end\u{0}")
        case S_IFLNK:
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = readlink(path, &buffer, buffer.count - 1)
            guard count >= 0 else { throw RuntimeError.invalidInput("cannot read link \(path): \(HostFile.lastErrorDescription())") }
            hasher.update(buffer[0..<count].map { UInt8(bitPattern: $0) })
            hasher.update([0])
        default:
            hasher.update("\(info.st_rdev)\u{0}")
        }
    }

    private static func hashContents(_ path: String, into hasher: inout ContentHash) throws(RuntimeError) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else { throw RuntimeError.invalidInput("cannot read \(path): \(HostFile.lastErrorDescription())") }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw RuntimeError.invalidInput("cannot read \(path): \(HostFile.lastErrorDescription())")
            }
            if count == 0 { return }
            hasher.update(buffer[0..<count])
        }
    }
}
