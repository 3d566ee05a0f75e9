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
            _ = chmod(path, permissions)
            _ = lchown(path, uid_t(bitPattern: request.uid), gid_t(bitPattern: request.gid))
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
        guard request.offset >= 0, request.fileSize >= 0, request.offset + Int64(request.data.count) <= request.fileSize else {
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
        if request.offset + Int64(request.data.count) == request.fileSize {
            guard ftruncate(fd, off_t(request.fileSize)) == 0 else { throw failure("truncate", path) }
        }
        _ = fchmod(fd, permissions)
        _ = fchown(fd, uid_t(bitPattern: request.uid), gid_t(bitPattern: request.gid))
    }

    /// The path's components below `directory`.
    private func relativeComponents(of path: String) throws -> [Substring] {
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
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

    /// Removes `path` and everything below it (a container's copies when it goes).
    static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR, let directory = opendir(path) {
            var names: [String] = []
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(directory)
            for name in names { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    private func failure(_ what: String, _ path: String) -> AgentError {
        AgentError(.internal, "CopyFile: \(what) \(path): \(String(cString: strerror(errno)))")
    }
}
