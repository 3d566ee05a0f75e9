#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Paths inside a container root that cannot escape it, and directory creation.
public enum ContainerPath {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// `root` joined with `path` where every symlink met on the way is resolved as if
    /// `root` were "/" (absolute targets restart at root, ".." stops at root), like
    /// filepath-securejoin. Components that do not exist are kept as written. The result
    /// is always `root` or below it (lexically and after the links that exist).
    public static func secureJoin(root: String, _ path: String) throws(Failure) -> String {
        let base = normalize(root)
        var remaining = components(path)
        var resolved: [String] = []
        var linksFollowed = 0
        while !remaining.isEmpty {
            let part = remaining.removeFirst()
            if part == "." { continue }
            if part == ".." {
                if !resolved.isEmpty { resolved.removeLast() }
                continue
            }
            let candidate = join(base, resolved + [part])
            var info = stat()
            if lstat(candidate, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK {
                linksFollowed += 1
                if linksFollowed > 255 {
                    throw Failure(description: "resolve \(path) in \(root): too many levels of symbolic links")
                }
                guard let target = readLink(candidate) else {
                    throw Failure(description: "readlink \(candidate): \(String(cString: strerror(errno)))")
                }
                if target.hasPrefix("/") { resolved.removeAll() }
                remaining = components(target) + remaining
            } else {
                resolved.append(part)
            }
        }
        return join(base, resolved)
    }

    /// mkdir -p with `mode` for the missing directories. Fails if a component exists and
    /// is not a directory.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(Failure) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in components(path) {
            current += "/" + part
            if mkdir(current, mode) == 0 { continue }
            let code = errno
            var info = stat()
            if code == EEXIST, stat(current, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR { continue }
            throw Failure(description: "mkdir \(current): \(String(cString: strerror(code == EEXIST ? ENOTDIR : code)))")
        }
    }

    /// Creates an empty regular file (and its parent directories) unless something is
    /// already there: a bind-mount point for a file.
    public static func makeFile(_ path: String) throws(Failure) {
        var info = stat()
        if stat(path, &info) == 0 { return }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectories(String(path[..<slash]))
        }
        let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        if fd < 0 {
            throw Failure(description: "create \(path): \(String(cString: strerror(errno)))")
        }
        close(fd)
    }

    static func components(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }

    static func normalize(_ root: String) -> String {
        var result = root
        while result.count > 1 && result.hasSuffix("/") { result.removeLast() }
        return result
    }

    static func join(_ base: String, _ parts: [String]) -> String {
        if parts.isEmpty { return base }
        return (base == "/" ? "" : base) + "/" + parts.joined(separator: "/")
    }

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
