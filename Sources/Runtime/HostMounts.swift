#if canImport(Glibc)
import Glibc
#endif

/// The host's mount table as this process sees it (/proc/self/mountinfo), and bind mounts
/// made and undone by the runtime. What a sandbox shares over virtio-fs is bind-mounted
/// into its state directory, so nothing may ever delete through a mount point there:
/// `HostFile.removeTree` asks `mountPoints(under:)` first.
public enum HostMounts {
    /// Every mount point at or beneath `path`, deepest first ([] if the table cannot be read).
    public static func mountPoints(under path: String) -> [String] { lookedUp(under: path) ?? [] }

    /// The same, nil when the table cannot be read: for a caller about to delete (or a
    /// test checking that nothing is left), which must not take "no mounts" from a table
    /// it could not look at.
    public static func lookedUp(under path: String) -> [String]? {
        // The table has canonical paths (links resolved).
        let directory = HostFile.realPath(path) ?? path
        guard let entries = table() else { return nil }
        let points = entries.compactMap { entry -> String? in
            entry.point == directory || entry.point.hasPrefix(directory + "/") ? entry.point : nil
        }
        return points.sorted { $0.count > $1.count }
    }

    /// The propagation fields of the topmost mount at exactly `point` ("shared:N",
    /// "master:N", ...; none for a private mount); nil when nothing is mounted there or
    /// the table cannot be read.
    public static func propagation(of point: String) -> [String]? {
        let canonical = HostFile.realPath(point) ?? point
        return table()?.last { $0.point == canonical }?.propagation
    }

    /// This process's mount table (/proc/self/mountinfo, read with read(2) to its end),
    /// in its order; nil when it cannot be read. A line is
    /// `id parent major:minor root point options [optional...] - type source super`.
    private static func table() -> [(point: String, propagation: [String])]? {
        guard let text = HostFile.readText("/proc/self/mountinfo") else { return nil }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count > 4 else { return nil }
            return (unescape(String(fields[4])), fields.dropFirst(6).prefix { $0 != "-" }.map(String.init))
        }
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo octal escapes.
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var index = 0
        while index < raw.count {
            if raw[index] == UInt8(ascii: "\\"), index + 3 < raw.count,
               let value = UInt8(String(decoding: raw[(index + 1)...(index + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(raw[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Binds `source` (a directory or a file, links followed as mount(2) follows them) at
    /// `target`, recursively (the source's own submounts come along); read-only by a
    /// second, remounting call where asked (MS_BIND ignores MS_RDONLY). The mount point
    /// is made first: a directory, or an empty file for a file.
    public static func bind(_ source: String, at target: String, readOnly: Bool) throws(RuntimeError) {
        var info = stat()
        guard stat(source, &info) == 0 else {
            throw RuntimeError.invalidInput("bind mount source \(source): \(HostFile.lastErrorDescription())")
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFDIR || kind == S_IFREG else {
            throw RuntimeError.invalidInput("\(source) is not a directory or regular file: it cannot be shared with the VM")
        }
        if kind == S_IFDIR {
            try HostFile.makeDirectories(target, mode: 0o755)
        } else {
            let parent = String(target[..<(target.lastIndex(of: "/") ?? target.endIndex)])
            try HostFile.makeDirectories(parent, mode: 0o755)
            let descriptor = open(target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard descriptor >= 0 else { throw RuntimeError.host("cannot create mount point \(target): \(HostFile.lastErrorDescription())") }
            close(descriptor)
        }
        guard mount(source, target, nil, UInt(MS_BIND | MS_REC), nil) == 0 else {
            throw RuntimeError.host("bind mount \(source) on \(target): \(HostFile.lastErrorDescription())")
        }
        if readOnly {
            guard mount(nil, target, nil, UInt(MS_BIND | MS_REMOUNT | MS_RDONLY), nil) == 0 else {
                let reason = HostFile.lastErrorDescription()
                _ = umount2(target, Int32(MNT_DETACH))
                throw RuntimeError.host("remount \(target) read-only: \(reason)")
            }
        }
    }

    /// Makes `directory` a mount point of its own with shared propagation (a bind onto
    /// itself), so that what is mounted beneath it later also appears in mount namespaces
    /// holding a slave copy of it: a jailed kasa-vmm serving it over virtio-fs sees the
    /// volumes and rootfs of containers added after it started. Nothing when it is one already.
    public static func makeSharedMountPoint(_ directory: String) throws(RuntimeError) {
        let canonical = HostFile.realPath(directory) ?? directory
        if mountPoints(under: directory).contains(canonical) { return }
        guard mount(directory, directory, nil, UInt(MS_BIND), nil) == 0 else {
            throw RuntimeError.host("bind mount \(directory) on itself: \(HostFile.lastErrorDescription())")
        }
        guard mount(nil, directory, nil, UInt(MS_SHARED), nil) == 0 else {
            let reason = HostFile.lastErrorDescription()
            _ = umount2(directory, Int32(MNT_DETACH))
            throw RuntimeError.host("make \(directory) a shared mount: \(reason)")
        }
    }

    /// Lazily unmounts every mount at or beneath `directory`, deepest first; true when
    /// none is left.
    @discardableResult
    public static func unmountAll(under directory: String) -> Bool {
        for point in mountPoints(under: directory) { _ = umount2(point, Int32(MNT_DETACH)) }
        return lookedUp(under: directory)?.isEmpty == true
    }
}
