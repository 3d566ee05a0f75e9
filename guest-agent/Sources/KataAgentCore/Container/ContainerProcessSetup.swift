#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CAgentLinux

/// The per-process part of container set-up, for both a container's first process and
/// an exec into it, in runc's order: rlimits, the seccomp filter when the process may not
/// set no_new_privs, bounding set, user (with keep-caps), the other capability sets,
/// no_new_privs, cwd, session and controlling terminal; with no_new_privs the filter is
/// loaded just before exec instead (`loadDeferredSeccomp`).
enum ContainerProcessSetup {
    /// The filter waiting for exec. Only ever set and read in a forked container process,
    /// which has one thread.
    nonisolated(unsafe) static var deferredSeccomp: SeccompFilter?

    static func apply(_ spec: ContainerLaunchSpec) throws {
        // Compiled first: a profile libseccomp refuses fails the create, not the exec.
        let filter = try spec.seccomp.map(SeccompFilter.init)
        for limit in spec.rlimits {
            guard let resource = LinuxResourceLimits.number(of: limit.type) else {
                throw ContainerInitFailure("setrlimit: unknown rlimit type \"\(limit.type)\"")
            }
            try containerCheck(kasa_setrlimit(resource, limit.soft, limit.hard),
                               "setrlimit \(limit.type) soft=\(limit.soft) hard=\(limit.hard)")
        }
        if let filter {
            // Without no_new_privs loading a filter takes CAP_SYS_ADMIN, gone once the
            // capabilities are set: load it now (the rest of set-up must then pass it, as
            // with runc). With no_new_privs it waits for exec, filtering only the workload.
            if spec.noNewPrivileges { deferredSeccomp = filter } else { try filter.load() }
        }

        let sets = try spec.effectiveCapabilitySets.map(CapabilityMasks.init)
        if let sets {
            for cap in 0...sets.lastCap where sets.bounding & (1 << UInt64(cap)) == 0 {
                if kasa_capbset_read(Int32(cap)) == 1 {
                    try containerCheck(kasa_capbset_drop(Int32(cap)),
                                       "drop \(LinuxCapabilities.names[cap]) from the bounding set")
                }
            }
            try containerCheck(kasa_set_keepcaps(1), "prctl(PR_SET_KEEPCAPS)")
        }

        try containerCheck(spec.additionalGids.withUnsafeBufferPointer { kasa_setgroups($0.count, $0.baseAddress) },
                           "setgroups \(spec.additionalGids)")
        try containerCheck(kasa_setresgid(spec.gid), "setgid \(spec.gid)")
        try containerCheck(kasa_setresuid(spec.uid), "setuid \(spec.uid)")

        if let sets {
            try containerCheck(kasa_set_keepcaps(0), "prctl(PR_SET_KEEPCAPS, 0)")
            try containerCheck(kasa_capset(sets.effective, sets.permitted, sets.inheritable),
                               "capset effective=\(hex(sets.effective)) permitted=\(hex(sets.permitted)) inheritable=\(hex(sets.inheritable))")
            if kasa_cap_ambient_clear_all() != 0 && sets.ambient != 0 {
                throw ContainerInitFailure(ContainerSys.failure("clear the ambient capabilities"))
            }
            for cap in 0...sets.lastCap where sets.ambient & (1 << UInt64(cap)) != 0 {
                try containerCheck(kasa_cap_ambient_raise(Int32(cap)),
                                   "raise ambient capability \(LinuxCapabilities.names[cap])")
            }
        }

        if spec.noNewPrivileges {
            try containerCheck(kasa_set_no_new_privs(), "prctl(PR_SET_NO_NEW_PRIVS)")
        }
        try containerCheck(chdir(spec.cwd), "chdir \(spec.cwd)")
        try containerCheck(setsid(), "setsid")
        if spec.terminal {
            try containerCheck(kasa_set_controlling_terminal(0), "make the terminal the controlling terminal (TIOCSCTTY)")
        }
    }

    /// Loads the filter `apply` deferred, if any: the last step before exec.
    static func loadDeferredSeccomp() throws {
        try deferredSeccomp?.load()
        deferredSeccomp = nil
    }

    /// The capability sets as masks, limited to what this kernel knows (runc ignores
    /// capabilities newer than the kernel too). Unknown names are an error.
    struct CapabilityMasks {
        var bounding, effective, permitted, inheritable, ambient: UInt64
        var lastCap: Int

        init(_ sets: ContainerLaunchSpec.CapabilitySets) throws {
            var unknown: [String] = []
            func mask(_ names: [String]) -> UInt64 {
                let result = LinuxCapabilities.mask(of: names)
                unknown += result.unknown
                return result.mask
            }
            bounding = mask(sets.bounding)
            effective = mask(sets.effective)
            permitted = mask(sets.permitted)
            inheritable = mask(sets.inheritable)
            ambient = mask(sets.ambient)
            if !unknown.isEmpty {
                var seen: Set<String> = []
                let names = unknown.filter { seen.insert($0).inserted }
                throw ContainerInitFailure("unknown capabilities: \(names.joined(separator: ", "))")
            }
            lastCap = Self.kernelLastCap()
            let known: UInt64 = lastCap >= 63 ? ~0 : (1 << UInt64(lastCap + 1)) - 1
            bounding &= known; effective &= known; permitted &= known; inheritable &= known; ambient &= known
        }

        /// The highest capability number the kernel knows (PR_CAPBSET_READ says EINVAL
        /// past it), without needing /proc.
        static func kernelLastCap() -> Int {
            var last = 0
            for cap in 0..<64 {
                if kasa_capbset_read(Int32(cap)) < 0 { break }
                last = cap
            }
            return last
        }
    }

    static func hex(_ value: UInt64) -> String {
        "0x" + String(value, radix: 16)
    }

    static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The spec's environment plus HOME (from the container's /etc/passwd, else "/")
    /// when it has none, as runc does.
    static func environment(for spec: ContainerLaunchSpec) -> [String] {
        var environment = InheritedEnvironment.adding(to: spec.env)
        if !environment.contains(where: { $0.hasPrefix("HOME=") }) {
            environment.append("HOME=" + (homeDirectory(uid: spec.uid) ?? "/"))
        }
        return environment
    }

    /// The home directory of `uid` in /etc/passwd of the current root (no NSS).
    static func homeDirectory(uid: UInt32, passwd: String = "/etc/passwd") -> String? {
        let fd = open(passwd, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let text = String(decoding: ContainerSys.readToEnd(fd, limit: 1 << 20), as: UTF8.self)
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 6, UInt32(fields[2]) == uid, !fields[5].isEmpty {
                return String(fields[5])
            }
        }
        return nil
    }

    /// args[0] as exec will run it: itself when it has a slash, else the first regular,
    /// executable file of that name in the environment's PATH (like runc).
    static func resolveExecutable(_ name: String, environment: [String]) throws -> String {
        if name.contains("/") { return name }
        let path = environment.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? defaultPath
        for directory in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + name
            var info = stat()
            if stat(candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_mode & 0o111 != 0 {
                return candidate
            }
        }
        throw ContainerInitFailure("exec: \"\(name)\": executable file not found in $PATH")
    }
}
