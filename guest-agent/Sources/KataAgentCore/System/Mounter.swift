import AgentProtocol
#if canImport(Glibc)
import Glibc
#endif

/// mount(2) with fstab-style options: flag words become mount flags, the rest is passed
/// to the filesystem as data ("size=64m,mode=755", overlay's lowerdir=...).
enum Mounter {
    static let flagWords: [String: (set: UInt, clear: Bool)] = [
        "ro": (UInt(MS_RDONLY), false), "rw": (UInt(MS_RDONLY), true),
        "nosuid": (UInt(MS_NOSUID), false), "suid": (UInt(MS_NOSUID), true),
        "nodev": (UInt(MS_NODEV), false), "dev": (UInt(MS_NODEV), true),
        "noexec": (UInt(MS_NOEXEC), false), "exec": (UInt(MS_NOEXEC), true),
        "sync": (UInt(MS_SYNCHRONOUS), false), "async": (UInt(MS_SYNCHRONOUS), true),
        "noatime": (UInt(MS_NOATIME), false), "relatime": (UInt(MS_RELATIME), false),
        "strictatime": (UInt(MS_STRICTATIME), false), "nodiratime": (UInt(MS_NODIRATIME), false),
        "bind": (UInt(MS_BIND), false), "rbind": (UInt(MS_BIND | MS_REC), false),
        "remount": (UInt(MS_REMOUNT), false), "defaults": (0, false),
    ]

    static func parse(_ options: [String]) -> (flags: UInt, data: String) {
        var flags: UInt = 0
        var data: [String] = []
        for option in options {
            if let word = flagWords[option] {
                if word.clear { flags &= ~word.set } else { flags |= word.set }
            } else {
                data.append(option)
            }
        }
        return (flags, data.joined(separator: ","))
    }

    static func mount(_ source: String, at target: String, type: String, options: [String]) throws {
        guard FileManagerLite.makeDirectories(target) else {
            throw AgentError(.internal, "cannot create mount point \(target): \(String(cString: strerror(errno)))")
        }
        let (flags, data) = parse(options)
        guard Glibc.mount(source, target, type.isEmpty ? nil : type, flags, data.isEmpty ? nil : data) == 0 else {
            throw AgentError(.internal, "mount \(source) on \(target) (\(type)): \(String(cString: strerror(errno)))")
        }
        // A read-only bind needs a second, remounting call: MS_BIND ignores MS_RDONLY.
        if flags & UInt(MS_BIND) != 0 && flags & UInt(MS_RDONLY) != 0 {
            guard Glibc.mount(nil, target, nil, flags | UInt(MS_REMOUNT), nil) == 0 else {
                throw AgentError(.internal, "remount \(target) read-only: \(String(cString: strerror(errno)))")
            }
        }
    }

    static func unmount(_ target: String) {
        if umount2(target, Int32(MNT_DETACH)) != 0 && errno != EINVAL && errno != ENOENT {
            // Still mounted and busy: a lazy unmount already detached what it could.
        }
    }
}

/// A container's root filesystem as the agent assembles it from the request's mounts:
/// the first is the root itself (a block device or a directory to bind); a read-only
/// root gets a tmpfs-backed overlay so the container can still write.
struct PreparedRootfs {
    let path: String?
    let mountedPaths: [String]

    func undo() { RootfsPreparer.undo(mountedPaths) }
}

enum RootfsPreparer {
    static func prepare(containerID: String, mounts: [AgentMount], stateDirectory: String) throws -> PreparedRootfs {
        guard let first = mounts.first else { return PreparedRootfs(path: nil, mountedPaths: []) }
        let base = stateDirectory + "/containers/" + containerID
        let target = base + "/rootfs"
        var mounted: [String] = []
        do {
            try Mounter.mount(first.source, at: target, type: first.type, options: first.options)
            mounted.append(target)
            for extra in mounts.dropFirst() {
                let path = target + (extra.target.hasPrefix("/") ? extra.target : "/" + extra.target)
                try Mounter.mount(extra.source, at: path, type: extra.type, options: extra.options)
                mounted.append(path)
            }
        } catch {
            undo(mounted)
            throw error
        }
        return PreparedRootfs(path: target, mountedPaths: mounted)
    }

    /// Unmounts in reverse order (inner mounts first).
    static func undo(_ paths: [String]) {
        for path in paths.reversed() { Mounter.unmount(path) }
    }
}
