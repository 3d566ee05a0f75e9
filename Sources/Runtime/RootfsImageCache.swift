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
        let summary = try DirectoryDigest.summarize(rootfs)
        let path = directory + "/" + String(summary.digest.prefix(32)) + ".ext4"
        if HostFile.exists(path) {
            _ = utime(path, nil)  // last use, for whoever prunes the cache by age
            return Image(path: path, reused: true)
        }
        try HostFile.makeDirectories(directory)
        let temporary = path + ".partial-\(getpid())"
        defer { unlink(temporary) }
        try build(rootfs, into: temporary, summary: summary)
        // rename(2) is atomic: a concurrent run sees no image or a whole one.
        guard rename(temporary, path) == 0 else {
            throw RuntimeError.host("cannot store the rootfs image at \(path): \(HostFile.lastErrorDescription())")
        }
        return Image(path: path, reused: false)
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
        let descriptor = open(image, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
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
