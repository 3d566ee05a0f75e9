import AgentProtocol
#if canImport(Glibc)
import Glibc
#endif

/// mount(2) with fstab-style options, parsed by `MountOptions` (the same words the
/// container launcher accepts): flag words become mount flags, the rest is filesystem data.
enum Mounter {
    static func mount(_ requested: String, at target: String, type: String, options: [String]) throws {
        let source = try VirtioDiskName.resolve(requested)
        guard FileManagerLite.makeDirectories(target) else {
            throw AgentError(.internal, "cannot create mount point \(target): \(String(cString: strerror(errno)))")
        }
        let parsed = MountOptions(parsing: options)
        let flags = parsed.flags, data = parsed.data
        waitForMedium(source)
        try BlockDeviceRelease.waitUntilReleased(source)
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

    /// A drive the host filled while the VM runs (kasa-vmm's drive slots) exists from boot
    /// with size 0; the kernel learns the new size from a config-change interrupt handled
    /// in a work queue, which may not have run when the host's CreateContainer arrives.
    /// Waits up to `timeout` seconds for a non-zero size; mount reports what is left.
    static func waitForMedium(_ source: String, timeout: Double = 30) {
        guard source.hasPrefix("/dev/") else { return }
        var info = stat()
        guard stat(source, &info) == 0, info.st_mode & S_IFMT == S_IFBLK else { return }
        let sizePath = "/sys/class/block/\(source.split(separator: "/").last ?? "")/size"
        for _ in 0..<Int(timeout * 100) {
            guard let text = FileManagerLite.read(sizePath), let sectors = UInt64(text.split(separator: "\n").first ?? "") else { return }
            if sectors > 0 { return }
            usleep(10_000)
        }
    }

    /// Lazy unmount: detaches even a busy mount; failure (not mounted) is not an error here.
    static func unmount(_ target: String) {
        _ = umount2(target, Int32(MNT_DETACH))
    }
}

/// A container's root filesystem as the agent assembles it from the request's mounts:
/// the first is the root itself (a block device or a directory to bind), the others are
/// mounted inside it.
///
/// A first mount marked "ro" gets a writable overlay: the read-only root is the lower
/// layer and a private tmpfs holds the upper one, so the image on the host is never
/// written (several VMs may share it) and the container still sees a root it can change.
/// Its changes vanish with it. A container with a read-only root (OCI `root.readonly`,
/// CRI's pause container) gets the overlay too: its mount points (CRI binds
/// /etc/resolv.conf, /etc/hostname, /dev/shm, ... over paths the image may not have) are
/// created in it before the container's own process makes its root read-only, as runc
/// creates them in the writable bundle rootfs.
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
            if first.options.contains("ro") {
                mounted += try mountOverlay(first, base: base, at: target)
            } else {
                try Mounter.mount(first.source, at: target, type: first.type, options: first.options)
                mounted.append(target)
            }
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

    /// lower = the read-only root, scratch = tmpfs with upper/ and work/ (overlayfs wants
    /// both on one filesystem), target = the overlay. Returns the mounts in order.
    private static func mountOverlay(_ root: AgentMount, base: String, at target: String) throws -> [String] {
        let lower = base + "/lower", scratch = base + "/scratch"
        var mounted: [String] = []
        do {
            try Mounter.mount(root.source, at: lower, type: root.type, options: root.options)
            mounted.append(lower)
            try Mounter.mount("tmpfs", at: scratch, type: "tmpfs", options: ["mode=755"])
            mounted.append(scratch)
            for directory in [scratch + "/upper", scratch + "/work"] where !FileManagerLite.makeDirectories(directory) {
                throw AgentError(.internal, "cannot create \(directory): \(String(cString: strerror(errno)))")
            }
            try Mounter.mount("overlay", at: target, type: "overlay",
                              options: ["lowerdir=\(lower)", "upperdir=\(scratch)/upper", "workdir=\(scratch)/work"])
            mounted.append(target)
            return mounted
        } catch {
            undo(mounted)
            throw error
        }
    }

    /// Unmounts in reverse order (inner mounts first).
    static func undo(_ paths: [String]) {
        for path in paths.reversed() { Mounter.unmount(path) }
    }
}
