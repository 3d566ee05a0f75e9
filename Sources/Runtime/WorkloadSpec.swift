import KasaJSON

/// What `kata-runtime run` runs: the OCI runtime spec sent to the agent (its process and
/// mounts) and where the root filesystem directory is.
public struct WorkloadSpec: Sendable {
    /// The container's root directory on the host.
    public var rootfs: String
    /// The OCI config.json the agent receives; `root.path` is replaced by the agent's
    /// own mount of the rootfs.
    public var ociSpec: JSONObject
    public var terminal: Bool {
        ociSpec["process"]?["terminal"]?.boolValue ?? false
    }

    /// The spec as the agent gets it under `configuration`: without its seccomp profile
    /// when `disable_guest_seccomp` is on.
    public func forGuest(_ configuration: RuntimeConfiguration) -> WorkloadSpec {
        guard configuration.runtime.disableGuestSeccomp, var linux = ociSpec["linux"]?.objectValue, linux["seccomp"] != nil else {
            return self
        }
        var copy = self
        linux["seccomp"] = nil
        copy.ociSpec["linux"] = .object(linux)
        return copy
    }

    /// A container from a bare rootfs directory, with runc's usual mounts and devices,
    /// Docker's default capabilities, and `command` as its process.
    public static func forRootfs(_ rootfs: String, command: [String], terminal: Bool, hostname: String,
                                 environment: [String] = []) throws(RuntimeError) -> WorkloadSpec {
        guard !command.isEmpty else { throw RuntimeError.invalidInput("no command to run: give one after --") }
        var env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        if terminal { env.append("TERM=xterm") }
        env += environment
        var process = JSONObject()
        process["terminal"] = .bool(terminal)
        process["user"] = .object(JSONObject([("uid", .number(JSONNumber(0))), ("gid", .number(JSONNumber(0)))]))
        process["args"] = .array(command.map { .string($0) })
        process["env"] = .array(env.map { .string($0) })
        process["cwd"] = .string("/")
        let capabilities = JSONValue.array(defaultCapabilities.map { .string($0) })
        process["capabilities"] = .object(JSONObject([("bounding", capabilities), ("effective", capabilities),
                                                      ("permitted", capabilities)]))
        process["noNewPrivileges"] = .bool(true)

        var spec = JSONObject()
        spec["ociVersion"] = .string("1.1.0")
        spec["process"] = .object(process)
        spec["root"] = .object(JSONObject([("path", .string("rootfs")), ("readonly", .bool(false))]))
        spec["hostname"] = .string(hostname)
        spec["mounts"] = .array(standardMounts.map { mount in
            var object = JSONObject()
            object["destination"] = .string(mount.destination)
            object["type"] = .string(mount.type)
            object["source"] = .string(mount.type)
            object["options"] = .array(mount.options.map { .string($0) })
            return .object(object)
        })
        var linux = JSONObject()
        linux["maskedPaths"] = .array(["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"].map { .string($0) })
        linux["readonlyPaths"] = .array(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"].map { .string($0) })
        spec["linux"] = .object(linux)
        return WorkloadSpec(rootfs: rootfs, ociSpec: spec)
    }

    /// A container from an OCI bundle: DIR/config.json and its root.path (relative to
    /// the bundle). A non-empty `command` replaces process.args; `terminal` forces one.
    /// The network namespace the spec names (`linux.namespaces[type=network].path`): where
    /// CRI and CNI made the pod's network. nil when the spec names none.
    public var networkNamespacePath: String? {
        let namespaces = ociSpec["linux"]?["namespaces"]?.arrayValue ?? []
        let path = namespaces.first { $0["type"]?.stringValue == "network" }?["path"]?.stringValue
        return path?.isEmpty == false ? path : nil
    }

    public static func forBundle(_ bundle: String, command: [String], terminal: Bool) throws(RuntimeError) -> WorkloadSpec {
        let configPath = bundle + "/config.json"
        guard let bytes = HostFile.readBytes(configPath) else {
            throw RuntimeError.invalidInput("bundle \(bundle): cannot read config.json (\(HostFile.lastErrorDescription()))")
        }
        let document: JSONValue
        do {
            document = try JSONValue(parsing: bytes)
        } catch {
            throw RuntimeError.invalidInput("bundle \(bundle): config.json is not valid JSON: \(error)")
        }
        guard var spec = document.objectValue else {
            throw RuntimeError.invalidInput("bundle \(bundle): config.json must be a JSON object")
        }
        guard let rootPath = spec["root"]?["path"]?.stringValue, !rootPath.isEmpty else {
            throw RuntimeError.invalidInput("bundle \(bundle): config.json has no root.path")
        }
        guard var process = spec["process"]?.objectValue else {
            throw RuntimeError.invalidInput("bundle \(bundle): config.json has no process")
        }
        if !command.isEmpty { process["args"] = .array(command.map { .string($0) }) }
        if terminal { process["terminal"] = .bool(true) }
        guard let args = process["args"]?.arrayValue, !args.isEmpty, args.allSatisfy({ $0.stringValue != nil }) else {
            throw RuntimeError.invalidInput("bundle \(bundle): process.args must be a non-empty list of strings (or give a command after --)")
        }
        spec["process"] = .object(process)
        let rootfs = rootPath.hasPrefix("/") ? rootPath : bundle + "/" + rootPath
        return WorkloadSpec(rootfs: rootfs, ociSpec: spec)
    }

    /// The default set Docker and containerd grant.
    static let defaultCapabilities = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ]

    static let standardMounts: [(destination: String, type: String, options: [String])] = [
        ("/proc", "proc", ["nosuid", "noexec", "nodev"]),
        ("/dev", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        ("/dev/pts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
        ("/dev/shm", "tmpfs", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        ("/dev/mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        ("/sys", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
    ]
}
