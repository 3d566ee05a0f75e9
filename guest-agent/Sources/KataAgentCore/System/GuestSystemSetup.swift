import AgentProtocol
import CAgentLinux
#if canImport(Glibc)
import Glibc
#endif

/// What the agent does first as the guest's PID 1, before any thread starts: mount the
/// kernel filesystems everything else relies on. Failures are logged, not fatal: PID 1
/// must keep going, and the host learns what is missing from the RPCs that need it.
public enum GuestSystemSetup {
    static let mounts: [(source: String, target: String, type: String, options: [String])] = [
        ("proc", "/proc", "proc", ["nosuid", "nodev", "noexec"]),
        ("sysfs", "/sys", "sysfs", ["nosuid", "nodev", "noexec"]),
        ("devtmpfs", "/dev", "devtmpfs", ["nosuid", "mode=0755"]),
        ("devpts", "/dev/pts", "devpts", ["nosuid", "noexec", "gid=5", "mode=0620", "ptmxmode=0666"]),
        ("tmpfs", "/dev/shm", "tmpfs", ["nosuid", "nodev", "mode=1777"]),
        ("tmpfs", "/run", "tmpfs", ["nosuid", "nodev", "mode=0755"]),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2", ["nosuid", "nodev", "noexec"]),
    ]

    public static let cgroupRoot = "/sys/fs/cgroup"

    /// The initramfs cannot be pivot_root'ed away from, so containers' pivot_root fails
    /// with EINVAL while the agent's root is it. Moving a bind mount of it over "/" and
    /// chroot'ing into that gives a root that child mount namespaces can pivot from.
    public static func leaveInitramfsRoot(log: (String) -> Void) {
        guard kasa_is_ram_filesystem("/") == 1 else { return }
        let staging = "/.kasa-root"
        mkdir(staging, 0o755)
        guard Glibc.mount("/", staging, nil, UInt(MS_BIND | MS_REC), nil) == 0,
              chdir(staging) == 0,
              Glibc.mount(".", "/", nil, UInt(MS_MOVE), nil) == 0,
              chroot(".") == 0, chdir("/") == 0 else {
            log("cannot move the initramfs root (containers will fail to pivot_root): \(String(cString: strerror(errno)))")
            return
        }
    }

    public static func mountKernelFilesystems(log: (String) -> Void) {
        for entry in mounts {
            do {
                try Mounter.mount(entry.source, at: entry.target, type: entry.type, options: entry.options)
            } catch {
                // devtmpfs may already be mounted by the kernel (DEVTMPFS_MOUNT).
                if errnoIsBusy { continue }
                log("mount \(entry.target): \(error)")
            }
        }
    }

    private static var errnoIsBusy: Bool { errno == EBUSY }

    /// The guest's loopback starts down: 127.0.0.1 works in a container (and between a
    /// pod's containers, which share the VM's network namespace) only once it is up.
    public static func bringLoopbackUp(log: (String) -> Void) {
        guard kasa_interface_up("lo") == 0 else {
            log("cannot bring the loopback interface up: \(String(cString: strerror(errno)))")
            return
        }
    }

    /// As a host process the agent is not PID 1: become the subreaper so container
    /// processes whose launcher exits are still ours to reap.
    public static func becomeSubreaper() {
        _ = kasa_set_child_subreaper(1)
    }
}
