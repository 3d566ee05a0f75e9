#if canImport(Glibc)
import Glibc
#endif

/// Root filesystem images for virtio-blk, built from a directory with `mke2fs -d` and
/// kept by content digest, so a second run of the same rootfs reuses the image.
///
/// Why ext4 and not erofs: the guest kernel already carries ext4 (the test root
/// filesystem), so one filesystem driver serves both; e2fsprogs is in every Debian
/// install (Priority: required), `mke2fs -d` needs neither root nor loop devices, and
/// the image is attached read-only under the agent's tmpfs overlay, so ext4's
/// writability costs nothing. erofs would give smaller images; it would add a kernel
/// option and a package (docs/architecture.md).
public struct RootfsImageCache: Sendable {
    public let directory: String

    public struct Image: Sendable, Equatable {
        public let path: String
        /// True when the image already existed (nothing was built).
        public let reused: Bool
        /// False when the tree's metadata alone found the image (no file of it was read).
        public var contentRead = true
    }

    public init(directory: String) { self.directory = directory }

    /// The image for `rootfs` (a directory), building it if the cache has none.
    public func image(for requested: String) throws(RuntimeError) -> Image {
        guard HostFile.isDirectory(requested) else {
            throw RuntimeError.invalidInput(HostFile.exists(requested) ? "rootfs \(requested) is not a directory"
                                                                       : "rootfs \(requested) does not exist")
        }
        // A bundle's rootfs is often a symbolic link to the tree: walk the tree itself.
        let rootfs = HostFile.resolved(requested)
        // The tree's metadata first: a tree seen before (nothing in it written since) maps
        // to its image without a byte of it read.
        let indexPath = directory + "/index/" + String(try DirectoryDigest.metadataKey(rootfs).prefix(32))
        if let recorded = HostFile.readText(indexPath), recorded.utf8.count == 32,
           recorded.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }),
           HostFile.exists(imagePath(recorded)) {
            return Image(path: reuse(imagePath(recorded)), reused: true, contentRead: false)
        }
        let summary = try DirectoryDigest.summarize(rootfs)
        let key = String(summary.digest.prefix(32))
        let path = imagePath(key)
        defer { record(key, at: indexPath) }
        if HostFile.exists(path) { return Image(path: reuse(path), reused: true) }
        try HostFile.makeDirectories(directory, mode: 0o700)
        let temporary = path + ".partial-\(getpid())"
        defer { unlink(temporary) }
        try build(rootfs, into: temporary, summary: summary)
        // rename(2) is atomic: a concurrent run sees no image or a whole one.
        guard rename(temporary, path) == 0 else {
            throw RuntimeError.host("cannot store the rootfs image at \(path): \(HostFile.lastErrorDescription())")
        }
        return Image(path: path, reused: false)
    }

    private func imagePath(_ key: String) -> String { directory + "/" + key + ".ext4" }

    /// Marks an image used now (for whoever prunes the cache by age) and root's only.
    private func reuse(_ path: String) -> String {
        _ = utime(path, nil)
        _ = chmod(path, 0o600)
        return path
    }

    /// Remembers which image the tree's metadata key stands for (written whole, by rename;
    /// losing it only costs the next run a full read).
    private func record(_ key: String, at indexPath: String) {
        guard HostFile.exists(imagePath(key)), (try? HostFile.makeDirectories(directory + "/index", mode: 0o700)) != nil else { return }
        let temporary = indexPath + ".partial-\(getpid())"
        guard (try? HostFile.write(Array(key.utf8), to: temporary, mode: 0o600)) != nil else { return }
        if rename(temporary, indexPath) != 0 { unlink(temporary) }
    }

    /// Content plus a fifth, plus inode tables and 4 MiB for ext4's own metadata.
    static func imageSize(for summary: DirectoryDigest.Summary) -> UInt64 {
        let inodes = UInt64(summary.entries + 64) * 256
        let bytes = summary.blockBytes + summary.blockBytes / 5 + inodes + (4 << 20)
        return max(16 << 20, (bytes + (1 << 20) - 1) / (1 << 20) * (1 << 20))
    }

    private func build(_ rootfs: String, into image: String, summary: DirectoryDigest.Summary) throws(RuntimeError) {
        guard let mke2fs = Self.findTool("mke2fs") else {
            throw RuntimeError.host("mke2fs not found: install e2fsprogs (apt-get install e2fsprogs)")
        }
        // Root's only: an image holds the container's whole tree.
        let descriptor = open(image, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0, ftruncate(descriptor, off_t(Self.imageSize(for: summary))) == 0 else {
            throw RuntimeError.host("cannot create \(image): \(HostFile.lastErrorDescription())")
        }
        close(descriptor)
        // No journal: the image is only read (the overlay takes the writes); the emulated
        // guest kernel of a kvm_pvm host mounts it faster too.
        let result = try ChildProcess.run(mke2fs, [
            "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-b", "4096", "-m", "0",
            "-N", String(summary.entries + 64), "-E", "root_owner=0:0", "-L", "kasa-rootfs", "-d", rootfs, image,
        ])
        guard result.status == 0 else {
            throw RuntimeError.host("mke2fs could not build an image from \(rootfs) (\(ChildProcess.describe(waitStatus: result.status))): \(result.output)")
        }
    }

    /// A tool on PATH or in the sbin directories (not on a plain user's PATH in Debian).
    public static func findTool(_ name: String) -> String? {
        let path = ProcessEnvironment.current["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        return directories.map { $0 + "/" + name }.first { access($0, X_OK) == 0 }
    }
}
