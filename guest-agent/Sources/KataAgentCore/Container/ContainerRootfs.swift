#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CAgentLinux

/// The root filesystem of a new container, set up by the container process (PID 1 of
/// its new PID namespace, in its own mount namespace) before pivot_root. Every mount
/// happens in that private mount namespace; nothing propagates to the agent's.
enum ContainerRootfs {
    static func setUp(_ spec: ContainerLaunchSpec) throws {
        try containerCheck(kasa_mount(nil, "/", nil, UInt(KASA_MS_REC | KASA_MS_PRIVATE), nil),
                           "make all mounts private (MS_REC|MS_PRIVATE on /)")
        let rootfs = ContainerPath.normalize(spec.rootfs)
        guard rootfs.hasPrefix("/") else {
            throw ContainerInitFailure("rootfs \(rootfs): not an absolute path")
        }
        var info = stat()
        guard stat(rootfs, &info) == 0 else { throw ContainerInitFailure(ContainerSys.failure("rootfs \(rootfs)")) }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw ContainerInitFailure("rootfs \(rootfs): \(ContainerSys.describe(errno: ENOTDIR))")
        }
        try containerCheck(kasa_mount(rootfs, rootfs, "bind", UInt(KASA_MS_BIND | KASA_MS_REC), nil),
                           "bind mount rootfs \(rootfs) onto itself")
        for mount in spec.mounts {
            try self.mount(mount, rootfs: rootfs)
        }
        if spec.mounts.contains(where: { ContainerPath.normalize($0.destination) == "/dev" && $0.type == "tmpfs" }) {
            try createDevices(rootfs: rootfs)
        }
        if spec.terminal {
            try bindConsole(rootfs: rootfs)
        }
        for path in spec.readonlyPaths {
            try makeReadonly(path, rootfs: rootfs)
        }
        for path in spec.maskedPaths {
            try mask(path, rootfs: rootfs)
        }
        try pivotRoot(rootfs)
        if spec.readonlyRootfs {
            let keep = max(0, kasa_mount_flags_of("/"))
            try containerCheck(kasa_mount(nil, "/", nil, UInt(KASA_MS_BIND | KASA_MS_REMOUNT | KASA_MS_RDONLY) | UInt(keep), nil),
                               "remount the root filesystem read-only")
        }
        // A pod's shared UTS namespace keeps the sandbox's name.
        if let hostname = spec.hostname, !(spec.sharedNamespaces?.kinds.contains("uts") ?? false) {
            try containerCheck(kasa_sethostname(hostname, hostname.utf8.count), "sethostname \(hostname)")
        }
    }

    /// One OCI mount, below `rootfs` (symlinks in the destination cannot escape it).
    static func mount(_ mount: ContainerLaunchSpec.Mount, rootfs: String) throws {
        guard mount.destination.hasPrefix("/") else {
            throw ContainerInitFailure("mount \(mount.type) on \(mount.destination): destination is not an absolute path")
        }
        let options = MountOptions(parsing: mount.options)
        let target = try ContainerPath.secureJoin(root: rootfs, mount.destination)
        let what = "mount \(mount.type) \(mount.source) on \(mount.destination)"
        if mount.type == "bind" || options.isBind {
            guard mount.source.hasPrefix("/") else {
                throw ContainerInitFailure("\(what): bind source is not an absolute path")
            }
            var info = stat()
            guard stat(mount.source, &info) == 0 else {
                throw ContainerInitFailure(ContainerSys.failure("\(what): source \(mount.source)"))
            }
            if (info.st_mode & S_IFMT) == S_IFDIR {
                try ContainerPath.makeDirectories(target)
            } else {
                try ContainerPath.makeFile(target)
            }
            let recursive = options.isRecursive ? UInt(KASA_MS_REC) : 0
            try containerCheck(kasa_mount(mount.source, target, "bind", UInt(KASA_MS_BIND) | recursive, nil), what)
            if options.remountFlags != 0 {
                try containerCheck(kasa_mount(mount.source, target, "bind",
                                              options.remountFlags | UInt(KASA_MS_BIND | KASA_MS_REMOUNT), nil),
                                   "\(what): remount with \(mount.options.joined(separator: ","))")
            }
        } else if mount.type == "cgroup" || mount.type == "cgroup2" {
            try ContainerPath.makeDirectories(target)
            var info = stat()
            if mount.type == "cgroup2" || stat("/sys/fs/cgroup/cgroup.controllers", &info) == 0 {
                try containerCheck(kasa_mount("cgroup2", target, "cgroup2", options.flags, nil), what)
            } else {
                // A cgroup v1 host: show the agent's hierarchy (bound recursively).
                try containerCheck(kasa_mount("/sys/fs/cgroup", target, "bind", UInt(KASA_MS_BIND | KASA_MS_REC), nil), what)
                if options.remountFlags != 0 {
                    try containerCheck(kasa_mount(nil, target, nil, options.remountFlags | UInt(KASA_MS_BIND | KASA_MS_REMOUNT), nil),
                                       "\(what): remount with \(mount.options.joined(separator: ","))")
                }
            }
        } else {
            try ContainerPath.makeDirectories(target)
            let source = mount.source.isEmpty ? mount.type : mount.source
            try containerCheck(kasa_mount(source, target, mount.type, options.flags,
                                          options.data.isEmpty ? nil : options.data),
                               options.data.isEmpty ? what : "\(what) (data \"\(options.data)\")")
        }
        for propagation in options.propagation {
            try containerCheck(kasa_mount(nil, target, nil, propagation, nil), "\(what): change propagation")
        }
    }

    /// The character devices runc creates in a tmpfs /dev (DeviceFilter allows them to
    /// every container).
    static let deviceNodes: [(name: String, major: UInt32, minor: UInt32)] = [
        ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
    ]

    /// The device nodes runc creates in a tmpfs /dev: by mknod, or by binding the
    /// agent's node where mknod is refused; plus the usual symlinks.
    static func createDevices(rootfs: String) throws {
        let dev = try ContainerPath.secureJoin(root: rootfs, "/dev")
        for node in deviceNodes {
            let path = dev + "/" + node.name
            if kasa_mknod_char(path, 0o666, node.major, node.minor) == 0 { continue }
            let code = errno
            if code == EEXIST { continue }
            try ContainerPath.makeFile(path)
            try containerCheck(kasa_mount("/dev/" + node.name, path, "bind", UInt(KASA_MS_BIND), nil),
                               "create /dev/\(node.name) (mknod: \(ContainerSys.describe(errno: code))): bind /dev/\(node.name)")
        }
        let links: [(target: String, name: String)] = [
            ("pts/ptmx", "ptmx"), ("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"), ("/proc/kcore", "core"),
        ]
        for link in links {
            if symlink(link.target, dev + "/" + link.name) != 0 && errno != EEXIST {
                throw ContainerInitFailure(ContainerSys.failure("symlink /dev/\(link.name) -> \(link.target)"))
            }
        }
    }

    /// Binds the terminal on fd 0 (the pty slave) onto /dev/console. By its path: the
    /// descriptor itself belongs to the agent's mount namespace, and mount(2) refuses a
    /// bind source from another namespace; the path names our copy of that mount.
    static func bindConsole(rootfs: String) throws {
        guard let terminal = ContainerPath.readLink("/proc/self/fd/0"), terminal.hasPrefix("/") else {
            throw ContainerInitFailure(ContainerSys.failure("find the terminal's path (/proc/self/fd/0)"))
        }
        var info = stat()
        guard stat(terminal, &info) == 0, (info.st_mode & S_IFMT) == S_IFCHR else {
            throw ContainerInitFailure("the terminal \(terminal) on fd 0 is not a character device here")
        }
        let console = try ContainerPath.secureJoin(root: rootfs, "/dev/console")
        try ContainerPath.makeFile(console)
        try containerCheck(kasa_mount(terminal, console, "bind", UInt(KASA_MS_BIND), nil),
                           "bind the terminal \(terminal) onto /dev/console")
    }

    /// Binds `path` onto itself and remounts it read-only (keeping nosuid/nodev/noexec).
    /// A path that does not exist is skipped.
    static func makeReadonly(_ path: String, rootfs: String) throws {
        let target = try ContainerPath.secureJoin(root: rootfs, path)
        var info = stat()
        guard stat(target, &info) == 0 else {
            if errno == ENOENT { return }
            throw ContainerInitFailure(ContainerSys.failure("readonly path \(path)"))
        }
        try containerCheck(kasa_mount(target, target, "bind", UInt(KASA_MS_BIND | KASA_MS_REC), nil),
                           "readonly path \(path): bind")
        let keep = max(0, kasa_mount_flags_of(target))
        try containerCheck(kasa_mount(target, target, "bind",
                                      UInt(KASA_MS_BIND | KASA_MS_REMOUNT | KASA_MS_RDONLY) | UInt(keep), nil),
                           "readonly path \(path): remount read-only")
    }

    /// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a directory.
    /// A path that does not exist is skipped.
    static func mask(_ path: String, rootfs: String) throws {
        let target = try ContainerPath.secureJoin(root: rootfs, path)
        var info = stat()
        guard stat(target, &info) == 0 else {
            if errno == ENOENT { return }
            throw ContainerInitFailure(ContainerSys.failure("masked path \(path)"))
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            try containerCheck(kasa_mount("tmpfs", target, "tmpfs", UInt(KASA_MS_RDONLY), nil),
                               "masked path \(path): mount a read-only tmpfs")
        } else {
            try containerCheck(kasa_mount("/dev/null", target, "bind", UInt(KASA_MS_BIND), nil),
                               "masked path \(path): bind /dev/null")
        }
    }

    /// pivot_root(".", ".") in the new root, then lazily unmount the old root stacked on
    /// top of it (runc's way: no directory is created in the rootfs, so it works on a
    /// read-only one and leaves nothing behind).
    static func pivotRoot(_ rootfs: String) throws {
        let oldRoot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC)
        guard oldRoot >= 0 else { throw ContainerInitFailure(ContainerSys.failure("pivot_root: open /")) }
        defer { close(oldRoot) }
        let newRoot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC)
        guard newRoot >= 0 else { throw ContainerInitFailure(ContainerSys.failure("pivot_root: open \(rootfs)")) }
        defer { close(newRoot) }
        try containerCheck(fchdir(newRoot), "pivot_root: chdir \(rootfs)")
        try containerCheck(kasa_pivot_root(".", "."), "pivot_root \(rootfs)")
        try containerCheck(fchdir(oldRoot), "pivot_root: chdir to the old root")
        try containerCheck(kasa_mount(nil, ".", nil, UInt(KASA_MS_SLAVE | KASA_MS_REC), nil),
                           "pivot_root: make the old root a slave")
        try containerCheck(kasa_umount2(".", KASA_MNT_DETACH), "pivot_root: unmount the old root")
        try containerCheck(chdir("/"), "pivot_root: chdir /")
    }
}
