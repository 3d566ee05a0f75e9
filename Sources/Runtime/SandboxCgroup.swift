import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// A sandbox's cgroup on the host (`sandbox_cgroup_only`): a cgroup v2 directory
/// `kasa/<sandbox>-<tag>` under the host's unified hierarchy that its kasa-vmm joins
/// before it runs (ChildProcess.Placement), so the VMM, every thread of it, is accounted
/// and can be limited as one unit by whoever runs the node. `<tag>` comes from the state
/// directory: two runtimes (containerd namespaces, test instances) may reuse a sandbox id.
/// Removed once the VMM is gone. A host without cgroup v2 has none (`kata-runtime check`).
public struct SandboxCgroup: Sendable, Equatable {
    public let path: String

    /// The cgroup `name` would have under `hierarchy` (made or not).
    public init(hierarchy: String, name: String) {
        path = hierarchy + "/kasa/" + name
    }

    /// The cgroup of the sandbox `sandboxID` whose state is in `stateDirectory` (made or not).
    public init(hierarchy: String, sandboxID: String, stateDirectory: String) {
        self.init(hierarchy: hierarchy, name: Self.name(sandboxID: sandboxID, stateDirectory: stateDirectory))
    }

    /// The name for a sandbox: its id and a tag of its state directory.
    public static func name(sandboxID: String, stateDirectory: String) -> String {
        sandboxID + "-" + ContentHash.hexDigest(of: stateDirectory).prefix(8)
    }

    /// Where the host mounts cgroup v2 (`/sys/fs/cgroup` on a unified host,
    /// `/sys/fs/cgroup/unified` on a hybrid one), from `mountinfo`; nil when it has none.
    public static func unifiedHierarchy(mountinfo: String? = HostFile.readText("/proc/self/mountinfo")) -> String? {
        var found: [String] = []
        for line in (mountinfo ?? "").split(separator: "\n") {
            // "... mount-point options ... - fstype source super-options"
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2, halves[1].split(separator: " ").first == "cgroup2" else { continue }
            let fields = halves[0].split(separator: " ")
            if fields.count > 4 { found.append(String(fields[4])) }
        }
        return found.first { $0 == "/sys/fs/cgroup" } ?? found.first { $0.hasPrefix("/sys/fs/cgroup") } ?? found.first
    }

    /// Makes the cgroup (and `kasa/` above it) if missing; one left by a runtime that died
    /// is reused when empty.
    public static func make(sandboxID: String, stateDirectory: String, hierarchy: String) throws(RuntimeError) -> SandboxCgroup {
        let cgroup = SandboxCgroup(hierarchy: hierarchy, sandboxID: sandboxID, stateDirectory: stateDirectory)
        for directory in [hierarchy + "/kasa", cgroup.path] where mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw RuntimeError.host("cannot make the sandbox's cgroup \(directory) (sandbox_cgroup_only): \(HostFile.lastErrorDescription(errno))")
        }
        return cgroup
    }

    /// The processes in it now (nil when it cannot be read).
    public var processes: [Int32]? {
        HostFile.readText(path + "/cgroup.procs").map { $0.split(separator: "\n").compactMap { Int32($0) } }
    }

    /// Removes the cgroup once its processes are gone (a process just killed may take a
    /// moment to leave it): true when it is gone. `kasa/` itself stays, shared.
    @discardableResult
    public func remove(waitingUpTo seconds: Double = 5) -> Bool {
        let deadline = MonotonicClock.now + seconds
        while rmdir(path) != 0 {
            if errno == ENOENT { return true }
            guard errno == EBUSY, MonotonicClock.now < deadline else { return false }
            usleep(10_000)
        }
        return true
    }
}
