import KVM
#if canImport(Glibc)
import Glibc
#endif

/// What `kata-runtime check` verifies: everything a host needs to run sandboxes, each
/// with a verdict and, when it fails, the fix.
public struct HostCheck: Sendable, Equatable {
    public enum Verdict: String, Sendable { case pass = "PASS", fail = "FAIL", note = "INFO" }

    public let verdict: Verdict
    public let subject: String
    public let detail: String
    public let fix: String?

    public static func run(configuration: RuntimeConfiguration, kvmPath: String = KVMSystem.defaultPath) -> [HostCheck] {
        var results: [HostCheck] = []
        results += kvmChecks(path: kvmPath)
        for (role, path, fix) in [
            ("kasa-vmm", configuration.hypervisor.path, "run scripts/install.sh or set [hypervisor.kasa] path"),
            ("guest kernel", configuration.hypervisor.kernel, "run images/build-guest.sh (scripts/install.sh does) or set [hypervisor.kasa] kernel"),
            configuration.hypervisor.image.isEmpty
                ? ("agent initrd", configuration.hypervisor.initrd, "run images/build-agent-initrd.sh or set [hypervisor.kasa] initrd")
                : ("agent image", configuration.hypervisor.image, "run images/build-guest.sh (scripts/install.sh does) or set [hypervisor.kasa] image"),
        ] {
            let executable = role == "kasa-vmm"
            let ok = executable ? access(path, X_OK) == 0 : access(path, R_OK) == 0
            results.append(HostCheck(verdict: ok ? .pass : .fail, subject: role,
                                     detail: ok ? path : "\(path): \(HostFile.lastErrorDescription())", fix: ok ? nil : fix))
        }
        let mke2fs = RootfsImageCache.findTool("mke2fs")
        results.append(HostCheck(verdict: mke2fs != nil ? .pass : .fail, subject: "mke2fs (rootfs images)",
                                 detail: mke2fs ?? "not found", fix: mke2fs != nil ? nil : "apt-get install e2fsprogs"))
        for (subject, directory) in [("state directory", configuration.runtime.stateDirectory),
                                     ("image cache", configuration.runtime.imageCacheDirectory)] {
            results.append(writableDirectoryCheck(subject, directory))
        }
        if configuration.runtime.internetworkingModel == .tcFilter {
            // Pods' NICs are TAPs: /dev/net/tun must open (the ingress/u32/mirred tc modules
            // are checked when a pod is set up, in its own namespace).
            let tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC)
            let code = errno
            if tun >= 0 { close(tun) }
            results.append(HostCheck(verdict: tun >= 0 ? .pass : .fail, subject: "pod networking (TAP)",
                                     detail: tun >= 0 ? "/dev/net/tun opens" : "/dev/net/tun: \(HostFile.lastErrorDescription(code))",
                                     fix: tun >= 0 ? nil : "modprobe tun, or set [runtime] internetworking_model = \"none\" (pods get no network)"))
        }
        results.append(templateCheck(configuration))
        results.append(vmmConfinementCheck(configuration, status: HostFile.readText("/proc/self/status") ?? ""))
        results.append(cgroupCheck(configuration, hierarchy: SandboxCgroup.unifiedHierarchy()))
        return results
    }

    /// kasa-vmm's confinement layers: what this host and configuration give it, and what is
    /// not built yet. `status` is /proc/self/status (a kernel with seccomp filters shows a
    /// `Seccomp:` line there).
    static func vmmConfinementCheck(_ configuration: RuntimeConfiguration, status: String) -> HostCheck {
        let subject = "kasa-vmm confinement"
        let jail = configuration.hypervisor.enableJail
            ? " A jail: its own mount namespace and root holding only what its VM uses, its own PID namespace (it sees"
                + " no other process) and an empty network namespace, at most 4096 open files (more with shared directories)."
            : " No jail (enable_jail = false): it sees the host's files, processes and network."
        let userLine: String
        if !configuration.hypervisor.enableJail || configuration.hypervisor.disableSeccomp {
            userLine = " It runs as root (vmm_user applies with the jail and the filters)."
        } else {
            let name = configuration.hypervisor.vmmUser
            do {
                if let user = try VMMUser.resolve(name) {
                    userLine = " After set-up it runs as \(name) (uid \(user.uid), gid \(user.gid), no supplementary groups)."
                } else {
                    userLine = " It stays root (vmm_user = \"\(name)\")."
                }
            } catch {
                return HostCheck(verdict: .fail, subject: subject, detail: "\(error)",
                                 fix: "bash scripts/install-deps.sh as root (it creates the user), or set vmm_user")
            }
        }
        if configuration.hypervisor.disableSeccomp {
            return HostCheck(verdict: .note, subject: subject,
                             detail: "off (disable_seccomp = true): kasa-vmm runs without seccomp filters and keeps its capabilities."
                                 + jail + userLine,
                             fix: nil)
        }
        guard status.split(separator: "\n").contains(where: { $0.hasPrefix("Seccomp:") }) else {
            return HostCheck(verdict: .fail, subject: subject,
                             detail: "this kernel has no seccomp (CONFIG_SECCOMP_FILTER): kasa-vmm will refuse to start",
                             fix: "a kernel with CONFIG_SECCOMP_FILTER, or [hypervisor.kasa] disable_seccomp = true (no filters)")
        }
        return HostCheck(verdict: .pass, subject: subject,
                         detail: "each kasa-vmm thread under a seccomp filter for its role, capabilities dropped (virtio-fs workers keep "
                             + "five file ones), no_new_privs, its own IPC and UTS namespaces, no core files." + jail + userLine,
                         fix: nil)
    }

    /// `sandbox_cgroup_only`: where each sandbox's kasa-vmm is accounted. `hierarchy`: the
    /// host's cgroup v2 mount (`SandboxCgroup.unifiedHierarchy`), nil when it has none.
    static func cgroupCheck(_ configuration: RuntimeConfiguration, hierarchy: String?) -> HostCheck {
        let subject = "sandbox cgroups"
        guard configuration.runtime.sandboxCgroupOnly else {
            return HostCheck(verdict: .note, subject: subject,
                             detail: "off (sandbox_cgroup_only = false): every kasa-vmm stays in the runtime's cgroup", fix: nil)
        }
        guard let hierarchy else {
            return HostCheck(verdict: .note, subject: subject,
                             detail: "no cgroup v2 hierarchy on this host: every kasa-vmm stays in the runtime's cgroup "
                                 + "(containers are limited by the guest's own cgroup v2 either way)",
                             fix: "mount cgroup2 (a unified or hybrid hierarchy) to account each sandbox's VMM apart")
        }
        let writable = access(hierarchy, W_OK) == 0
        return HostCheck(verdict: writable ? .pass : .fail, subject: subject,
                         detail: writable ? "each sandbox's kasa-vmm in \(hierarchy)/kasa/<sandbox>-<tag>"
                                          : "\(hierarchy) is not writable: sandboxes cannot start",
                         fix: writable ? nil : "a writable cgroup v2 hierarchy, or [runtime] sandbox_cgroup_only = false")
    }

    /// `[factory]`: whether sandboxes start from a template, its state, and the trade-off.
    static func templateCheck(_ configuration: RuntimeConfiguration) -> HostCheck {
        guard configuration.factory.enableTemplate else {
            return HostCheck(verdict: .note, subject: "VM templates", detail: "off: every sandbox boots its kernel ([factory] enable_template = false)", fix: nil)
        }
        let settings = MicroVMBackend.Settings(configuration: configuration, sandboxID: "check")
        let template = VMTemplate(path: configuration.templateDirectory)
        let state: String
        switch template.status(for: settings) {
        case .absent: state = "not built yet (first use builds it, or kata-runtime factory init)"
        case .ready: state = "ready"
        case .stale(_, let changed): state = "stale, rebuilt on next use (changed: \(changed.joined(separator: ", ")))"
        }
        return HostCheck(verdict: .note, subject: "VM templates",
                         detail: "on: sandboxes are restored from \(template.path), \(state). They share the template's memory pages read-only "
                             + "until they write them (less memory, faster starts; shared pages are a possible side channel between sandboxes: "
                             + "[factory] enable_template = false turns this off)",
                         fix: nil)
    }

    static func kvmChecks(path: String) -> [HostCheck] {
        let descriptor = open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else {
            let code = errno
            let fix = code == ENOENT
                ? "load a KVM module (modprobe kvm_intel or kvm_amd on bare metal; kvm_pvm on a cloud VM without nested virtualization)"
                : "give this user access to \(path) (add it to the kvm group) or run as root"
            return [HostCheck(verdict: .fail, subject: "/dev/kvm", detail: "\(path): \(HostFile.lastErrorDescription(code))", fix: fix)]
        }
        close(descriptor)
        var results = [HostCheck(verdict: .pass, subject: "/dev/kvm", detail: "\(path) is readable and writable", fix: nil)]
        let system: KVMSystem
        do {
            system = try KVMSystem(path: path)
        } catch {
            results.append(HostCheck(verdict: .fail, subject: "KVM API version", detail: "\(error)",
                                     fix: "use a kernel whose KVM speaks API version \(KVMSystem.expectedAPIVersion)"))
            return results
        }
        results.append(HostCheck(verdict: .pass, subject: "KVM API version", detail: "\(KVMSystem.expectedAPIVersion)", fix: nil))
        let missing = (KVMCapability.required + KVMCapability.snapshot).filter { system.check($0) <= 0 }
        results.append(HostCheck(verdict: missing.isEmpty ? .pass : .fail, subject: "KVM extensions",
                                 detail: missing.isEmpty ? (KVMCapability.required + KVMCapability.snapshot).map(\.name).joined(separator: " ")
                                                         : "missing: " + missing.map(\.name).joined(separator: " "),
                                 fix: missing.isEmpty ? nil : "a newer host kernel"))
        if KVMSystem.isPVMHost {
            results.append(HostCheck(
                verdict: .note, subject: "KVM flavour",
                detail: "kvm_pvm (paravirtual KVM, no hardware virtualization): guest kernel code is emulated, so a sandbox boots in 1-2 minutes instead of well under a second; guest user code runs natively. The guest kernel needs Kasa's PVM patch set (images/build-kernel.sh applies it) and kasa-vmm adds the PVM command line itself.",
                fix: nil))
        } else {
            results.append(HostCheck(verdict: .note, subject: "KVM flavour", detail: "hardware virtualization (VT-x/AMD-V)", fix: nil))
        }
        return results
    }

    static func writableDirectoryCheck(_ subject: String, _ directory: String) -> HostCheck {
        var probe = directory
        while !HostFile.exists(probe), let slash = probe.lastIndex(of: "/") {
            probe = slash == probe.startIndex ? "/" : String(probe[..<slash])
        }
        let ok = access(probe, W_OK) == 0
        return HostCheck(verdict: ok ? .pass : .fail, subject: subject,
                         detail: ok ? "\(directory) (writable)" : "\(probe) is not writable",
                         fix: ok ? nil : "run as root, or point [runtime] \(subject == "image cache" ? "image_cache_dir" : "state_dir") at a writable directory")
    }
}
