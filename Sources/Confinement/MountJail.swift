import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A host path the jailed VMM keeps, at the same absolute path inside the jail.
public struct JailPath: Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let writable: Bool

    public init(_ path: String, writable: Bool) {
        self.path = path
        self.writable = writable
    }

    public var description: String { path + (writable ? "" : " (read-only)") }
}

public struct JailError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ what: String, _ code: Int32 = errno) {
        description = "jail: \(what): \(String(cString: strerror(code)))"
    }
    init(message: String) { description = "jail: \(message)" }
}

/// kasa-vmm's own mount namespace and root (`--jail DIR`), entered at start while the
/// process has one thread: a tmpfs on DIR (seen only in the new namespace, so nothing of
/// it is left on the host) holding bind mounts of exactly the paths the VMM uses (its
/// kernel, disks and snapshot read-only unless they are written; the directories its
/// sockets, console and shared directories live in), each at its own absolute path, so
/// no path the runtime gives needs translating; /dev with only kvm, net/tun, null, zero
/// and urandom; a proc of its own (thread names, virtio-fs's /proc/self/fd). Then
/// pivot_root into it, the old root detached, the new root read-only. The binds are
/// slaves of the host's mounts: a volume the runtime mounts into a shared directory later
/// still reaches the VMM, and nothing the VMM mounts could reach the host.
public enum MountJail {
    static let devices = ["/dev/kvm", "/dev/net/tun", "/dev/null", "/dev/zero", "/dev/urandom"]

    /// Relative paths are kept as the working directory's; the working directory stays the
    /// same inside the jail (where the paths kept make it exist), so they still resolve.
    public static func enter(root: String, keeping paths: [JailPath]) throws {
        guard root.hasPrefix("/"), root != "/" else { throw JailError(message: "\(root) is not an absolute directory") }
        let workingDirectory = currentDirectory()
        let paths = paths.map { JailPath(absolute($0.path, in: workingDirectory), writable: $0.writable) }
        var status = stat()
        guard stat(root, &status) == 0 else { throw JailError("\(root)") }
        guard status.st_mode & S_IFMT == S_IFDIR else { throw JailError(message: "\(root) is not a directory") }
        guard clinux_unshare_mount_namespace() == 0 else { throw JailError("unshare(CLONE_NEWNS)") }
        // Nothing mounted here travels back to the host; the host's later mounts still arrive.
        try mount(nil, "/", nil, CLINUX_MS_REC | CLINUX_MS_SLAVE, "making / a slave")
        try mount("tmpfs", root, "tmpfs", CLINUX_MS_NOSUID | CLINUX_MS_NODEV | CLINUX_MS_NOEXEC, "the jail's root",
                  data: "mode=0755,size=1m")
        // The root usually sits inside a directory it keeps (the sandbox's state): recursive
        // binds of that directory must not copy the root into itself.
        try mount(nil, root, nil, CLINUX_MS_UNBINDABLE, "making the jail's root unbindable")
        for kept in plan(paths) {
            try bind(kept.path, under: root, writable: kept.writable)
        }
        for device in devices where access(device, F_OK) == 0 {
            try bind(device, under: root, writable: true)
        }
        for (name, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                               ("stderr", "/proc/self/fd/2")] {
            guard symlink(target, root + "/dev/" + name) == 0 else { throw JailError("\(root)/dev/\(name)") }
        }
        try makeDirectories(root + "/proc")
        try mount("proc", root + "/proc", "proc", CLINUX_MS_NOSUID | CLINUX_MS_NODEV | CLINUX_MS_NOEXEC, "proc")
        try makeDirectories(root + "/.old-root")
        guard clinux_pivot_root(root, root + "/.old-root") == 0 else { throw JailError("pivot_root into \(root)") }
        guard chdir("/") == 0 else { throw JailError("chdir /") }
        guard clinux_umount_detached("/.old-root") == 0 else { throw JailError("detaching the old root") }
        rmdir("/.old-root")
        try mount(nil, "/", nil, CLINUX_MS_REMOUNT | CLINUX_MS_RDONLY | CLINUX_MS_NOSUID | CLINUX_MS_NODEV | CLINUX_MS_NOEXEC,
                  "making the jail's root read-only")
        if let workingDirectory { _ = chdir(workingDirectory) }
    }

    static func currentDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return nil }
        return String(cString: buffer)
    }

    /// `path` made absolute against `directory` (a relative path with no known working
    /// directory is taken from the root).
    static func absolute(_ path: String, in directory: String?) -> String {
        path.hasPrefix("/") ? path : (directory ?? "") + "/" + path
    }

    /// The binds to make, parents before children, each path once (writable if any asked).
    /// A path inside a directory already kept needs no bind of its own unless it must be
    /// read-only there or writable where the directory is not.
    static func plan(_ paths: [JailPath]) -> [JailPath] {
        var merged: [String: Bool] = [:]
        for kept in paths {
            let path = normalized(kept.path)
            merged[path] = (merged[path] ?? false) || kept.writable
        }
        var result: [JailPath] = []
        for path in merged.keys.sorted(by: { $0.count < $1.count || ($0.count == $1.count && $0 < $1) }) {
            let writable = merged[path]!
            let enclosing = result.last { path.hasPrefix($0.path == "/" ? "/" : $0.path + "/") }
            if let enclosing, enclosing.writable == writable { continue }
            result.append(JailPath(path, writable: writable))
        }
        return result
    }

    /// An absolute `path` without a trailing slash, doubled slashes, `.` or `..` components.
    static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        return "/" + parts.joined(separator: "/")
    }

    private static func bind(_ source: String, under root: String, writable: Bool) throws {
        var status = stat()
        guard stat(source, &status) == 0 else { throw JailError("\(source)") }
        let target = root + source
        if access(target, F_OK) != 0 {
            if status.st_mode & S_IFMT == S_IFDIR {
                try makeDirectories(target)
            } else {
                try makeDirectories(String(target[..<target.lastIndex(of: "/")!]))
                let created = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
                guard created >= 0 else { throw JailError("\(target)") }
                close(created)
            }
        }
        try mount(source, target, nil, CLINUX_MS_BIND | CLINUX_MS_REC, "binding \(source)")
        let flags = CLINUX_MS_BIND | CLINUX_MS_REMOUNT | CLINUX_MS_NOSUID | (writable ? 0 : CLINUX_MS_RDONLY)
            | (source.hasPrefix("/dev/") ? 0 : CLINUX_MS_NODEV)
        try mount(nil, target, nil, flags, "restricting \(source)")
    }

    private static func makeDirectories(_ path: String) throws {
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw JailError("mkdir \(current)") }
        }
    }

    private static func mount(_ source: String?, _ target: String, _ type: String?, _ flags: UInt, _ what: String,
                              data: String? = nil) throws {
        guard clinux_mount(source, target, type, flags, data) == 0 else { throw JailError(what) }
    }
}
