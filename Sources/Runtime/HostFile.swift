#if canImport(Glibc)
import Glibc
#endif

/// File-system calls the runtime needs, on plain Glibc (the runtime does not link
/// Foundation: it stays resident beside every sandbox, docs/performance.md).
public enum HostFile {
    public static func lastErrorDescription(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    public static func readBytes(_ path: String, limit: Int = 64 << 20) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while result.count < limit {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 { if errno == EINTR { continue }; return nil }
            if count == 0 { break }
            result += buffer[0..<count]
        }
        return result
    }

    public static func readText(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Writes the whole file (created 0644 or truncated).
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(RuntimeError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw RuntimeError.host("cannot write \(path): \(lastErrorDescription())") }
        defer { close(descriptor) }
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw RuntimeError.host("cannot write \(path): \(lastErrorDescription())")
            }
            offset += count
        }
    }

    /// mkdir -p.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(RuntimeError) {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, mode) != 0 && errno != EEXIST {
                throw RuntimeError.host("cannot create directory \(prefix): \(lastErrorDescription())")
            }
        }
        guard isDirectory(path) else { throw RuntimeError.host("\(path) exists and is not a directory") }
    }

    /// rm -rf, without following symbolic links. Returns false if something stayed.
    @discardableResult
    public static func removeTree(_ path: String) -> Bool {
        // Never through a mount point: a sandbox's state directory holds bind mounts of the
        // volumes it shares over virtio-fs, and deleting through one deletes the user's
        // data. Paths are compared in their canonical form, as the mount table has them.
        var top = stat()
        guard lstat(path, &top) == 0 else { return errno == ENOENT }
        guard (top.st_mode & S_IFMT) == S_IFDIR else { return unlink(path) == 0 }
        guard let canonical = realPath(path) else { return false }
        guard let mountPoints = HostMounts.lookedUp(under: canonical) else { return false }
        return removeTree(canonical, sparing: Set(mountPoints))
    }

    private static func removeTree(_ path: String, sparing mountPoints: Set<String>) -> Bool {
        if mountPoints.contains(path) { return false }
        var info = stat()
        guard lstat(path, &info) == 0 else { return errno == ENOENT }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in (try? directoryEntries(path)) ?? [] {
                _ = removeTree(path + "/" + name, sparing: mountPoints)
            }
            return rmdir(path) == 0
        }
        return unlink(path) == 0
    }

    /// realpath(3): the path with every link and "." or ".." resolved; nil if it fails.
    public static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Names in a directory, without "." and "..", sorted bytewise (a stable order).
    public static func directoryEntries(_ path: String) throws(RuntimeError) -> [String] {
        guard let directory = opendir(path) else {
            throw RuntimeError.host("cannot read directory \(path): \(lastErrorDescription())")
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// The absolute form of `path` (relative to the working directory), without resolving links.
    public static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        let directory = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (directory == "/" ? "" : directory) + "/" + path
    }

    /// realpath(3): symbolic links resolved; the path itself when that fails.
    public static func resolved(_ path: String) -> String {
        guard let pointer = realpath(path, nil) else { return path }
        defer { free(pointer) }
        return String(cString: pointer)
    }


    /// The last `count` bytes of a file as text (console logs in error messages).
    public static func tail(_ path: String, bytes count: Int = 3000) -> String {
        guard let bytes = readBytes(path) else { return "" }
        return String(decoding: bytes.suffix(count), as: UTF8.self)
    }
}

/// The process environment as a dictionary (no Foundation ProcessInfo).
public enum ProcessEnvironment {
    public static var current: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}
