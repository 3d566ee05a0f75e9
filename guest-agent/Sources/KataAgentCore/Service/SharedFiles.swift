import AgentProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Host files copied into the guest (CopyFile), for bind mounts of host paths: the VM has
/// no file system shared with the host, so the runtime sends CRI's /etc/hosts,
/// resolv.conf, hostname, termination log, secrets and config maps here, one request per
/// file, directory, symlink or chunk, and points the mount at the copy.
///
/// Everything stays below `directory`: paths are absolute, with no "."/".." components,
/// and no existing component below the directory may be a symlink (a copied symlink
/// must not let a later request write outside).
struct SharedFiles {
    let directory: String
    /// Per request; the runtime chunks larger files (ttrpc frames are at most 4 MiB).
    static let maximumChunk = 1 << 20

    func copy(_ request: AgentCopyFileRequest) throws {
        let components = try relativeComponents(of: request.path)
        let type = request.fileMode & UInt32(S_IFMT)
        try makeParents(components.dropLast(), mode: request.dirMode == 0 ? 0o755 : request.dirMode & 0o7777)
        let path = request.path
        let permissions = mode_t(request.fileMode & 0o7777)
        switch type {
        case UInt32(S_IFDIR):
            if mkdir(path, permissions) != 0 && errno != EEXIST { throw failure("mkdir", path) }
            try refuseSymlink(path)
            // Owner first: chown clears the set-id bits chmod sets.
            _ = lchown(path, uid_t(bitPattern: request.uid), gid_t(bitPattern: request.gid))
            _ = chmod(path, permissions)
        case UInt32(S_IFLNK):
            let target = String(decoding: request.data, as: UTF8.self)
            guard !target.isEmpty else { throw AgentError(.invalidArgument, "CopyFile \(path): a symlink without a target") }
            if unlink(path) != 0 && errno != ENOENT { throw failure("replace", path) }
            guard symlink(target, path) == 0 else { throw failure("symlink", path) }
            _ = lchown(path, uid_t(bitPattern: request.uid), gid_t(bitPattern: request.gid))
        case UInt32(S_IFREG):
            try writeChunk(request, to: path, permissions: permissions)
        default:
            throw AgentError(.invalidArgument, "CopyFile \(path): only regular files, directories and symlinks are copied (mode 0o\(String(request.fileMode, radix: 8)))")
        }
    }

    private func writeChunk(_ request: AgentCopyFileRequest, to path: String, permissions: mode_t) throws {
        guard request.data.count <= Self.maximumChunk else {
            throw AgentError(.invalidArgument, "CopyFile \(path): a chunk of \(request.data.count) bytes (at most \(Self.maximumChunk))")
        }
        // Written so that no sum can overflow (a request is untrusted input to PID 1).
        guard request.offset >= 0, request.fileSize >= Int64(request.data.count),
              request.offset <= request.fileSize - Int64(request.data.count) else {
            throw AgentError(.invalidArgument, "CopyFile \(path): \(request.data.count) bytes at offset \(request.offset) do not fit a \(request.fileSize)-byte file")
        }
        // The first chunk starts the file afresh; O_NOFOLLOW: never write through a symlink.
        let flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (request.offset == 0 ? O_TRUNC : 0)
        let fd = open(path, flags, permissions)
        guard fd >= 0 else { throw failure("open", path) }
        defer { close(fd) }
        let written = request.data.withUnsafeBytes { raw -> Int in
            var done = 0
            while done < raw.count {
                let count = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(request.offset) + off_t(done))
                if count < 0 { if errno == EINTR { continue }; return -1 }
                done += count
            }
            return done
        }
        guard written == request.data.count else { throw failure("write", path) }
        if request.offset == request.fileSize - Int64(request.data.count) {
            guard ftruncate(fd, off_t(request.fileSize)) == 0 else { throw failure("truncate", path) }
        }
        // Owner first: chown clears the set-id bits chmod sets.
        _ = fchown(fd, uid_t(bitPattern: request.uid), gid_t(bitPattern: request.gid))
        _ = fchmod(fd, permissions)
    }

    /// The path's components below `directory`.
    private func relativeComponents(of path: String) throws -> [Substring] {
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        guard !path.utf8.contains(0) else { throw AgentError(.invalidArgument, "CopyFile: a path with a NUL byte") }
        guard path.hasPrefix(prefix) else {
            throw AgentError(.invalidArgument, "CopyFile: \(path) is not inside the shared-files directory \(directory)")
        }
        let components = path.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard !components.isEmpty, !components.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw AgentError(.invalidArgument, "CopyFile: \(path) has an empty, '.' or '..' component")
        }
        return components
    }

    /// Creates the missing directories from `directory` down; every existing one must be a
    /// real directory (not a symlink).
    private func makeParents(_ components: ArraySlice<Substring>, mode: UInt32) throws {
        guard FileManagerLite.makeDirectories(directory) else { throw failure("create", directory) }
        var path = directory
        for component in components {
            path += "/" + component
            if mkdir(path, mode_t(mode)) != 0 && errno != EEXIST { throw failure("mkdir", path) }
            try refuseSymlink(path)
        }
    }

    private func refuseSymlink(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw failure("lstat", path) }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw AgentError(.invalidArgument, "CopyFile: \(path) exists and is not a directory")
        }
    }

    /// Removes a container's copies (when it goes, or its create failed).
    func removeCopies(of containerID: String) {
        Self.removeTree(directory + "/" + containerID)
    }

    /// Removes `path` and everything below it. Walks
    /// by directory descriptor without following symlinks, with names as raw bytes (a
    /// container may have created any name in a writable copy).
    static func removeTree(_ path: String) {
        if unlink(path) == 0 || errno == ENOENT { return }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return }
        removeContents(of: fd)
        close(fd)
        rmdir(path)
    }

    /// Empties the directory open as `fd`.
    private static func removeContents(of fd: Int32) {
        let listing = dup(fd)
        guard listing >= 0, let directory = fdopendir(listing) else { return }
        var names: [[CChar]] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                Array(raw.prefix(while: { $0 != 0 }).map { CChar(bitPattern: $0) }) + [0]
            }
            if name != [46, 0] && name != [46, 46, 0] { names.append(name) }  // "." and ".."
        }
        closedir(directory)
        for name in names {
            if unlinkat(fd, name, 0) == 0 { continue }
            let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard child >= 0 else { continue }
            removeContents(of: child)
            close(child)
            unlinkat(fd, name, AT_REMOVEDIR)
        }
    }

    private func failure(_ what: String, _ path: String) -> AgentError {
        AgentError(.internal, "CopyFile: \(what) \(path): \(String(cString: strerror(errno)))")
    }
}
