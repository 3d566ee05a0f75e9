import AgentProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Resource limits the OCI spec asks for (linux.resources), cgroup v2 terms.
public struct ContainerResources: Sendable, Equatable {
    public var memoryLimit: Int64?
    public var cpuQuota: Int64?
    public var cpuPeriod: UInt64?
    public var pidsLimit: Int64?

    public init(memoryLimit: Int64? = nil, cpuQuota: Int64? = nil, cpuPeriod: UInt64? = nil, pidsLimit: Int64? = nil) {
        self.memoryLimit = memoryLimit
        self.cpuQuota = cpuQuota
        self.cpuPeriod = cpuPeriod
        self.pidsLimit = pidsLimit
    }
}

/// One cgroup v2 directory per container under the agent's root: limits, stats, OOM
/// counts, and killing everything inside on removal.
enum CgroupManager {
    static func path(for id: String, root: String) -> String { root + "/kasa-" + id }

    /// Creates the container's cgroup and writes its limits; nil when cgroups are off.
    static func create(for id: String, root: String?, resources: ContainerResources) throws -> String? {
        guard let root else { return nil }
        // Controllers must be enabled in the parent for the child's files to exist.
        FileManagerLite.write("+memory +pids +cpu", to: root + "/cgroup.subtree_control", create: false)
        let path = path(for: id, root: root)
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw AgentError(.internal, "cannot create cgroup \(path): \(String(cString: strerror(errno)))")
        }
        // A new cgroup has no limits: only positive ones need writing.
        func positive(_ value: Int64?) -> Int64? { value.flatMap { $0 > 0 ? $0 : nil } }
        try apply(ContainerResources(memoryLimit: positive(resources.memoryLimit), cpuQuota: positive(resources.cpuQuota),
                                     cpuPeriod: positive(resources.cpuQuota) == nil ? nil : resources.cpuPeriod,
                                     pidsLimit: positive(resources.pidsLimit)), to: path)
        return path
    }

    /// Writes the limits `resources` names; the others stay as they are. A limit of -1
    /// (memory, cpu quota) or 0 (pids, as in OCI) removes it.
    static func apply(_ resources: ContainerResources, to path: String) throws {
        func set(_ file: String, _ value: String) throws {
            guard FileManagerLite.write(value, to: path + "/" + file, create: false) else {
                throw AgentError(.invalidArgument, "cannot set \(file) = \(value) in \(path): \(String(cString: strerror(errno)))")
            }
        }
        if let limit = resources.memoryLimit {
            try set("memory.max", limit > 0 ? String(limit) : "max")
            if limit > 0 { FileManagerLite.write("0", to: path + "/memory.swap.max", create: false) }
        }
        if let limit = resources.pidsLimit { try set("pids.max", limit > 0 ? String(limit) : "max") }
        if let quota = resources.cpuQuota {
            try set("cpu.max", "\(quota > 0 ? String(quota) : "max") \(resources.cpuPeriod ?? 100_000)")
        } else if let period = resources.cpuPeriod {
            let quota = FileManagerLite.read(path + "/cpu.max")?.split(separator: " ").first.map(String.init) ?? "max"
            try set("cpu.max", "\(quota) \(period)")
        }
    }

    /// Freezes (or thaws) every process in the cgroup and waits until the kernel says it
    /// is done: freezing completes asynchronously (cgroup.events `frozen`).
    static func setFrozen(_ frozen: Bool, in path: String, timeout: Double = 10) throws {
        guard FileManagerLite.write(frozen ? "1" : "0", to: path + "/cgroup.freeze", create: false) else {
            throw AgentError(.internal, "cannot write \(path)/cgroup.freeze: \(String(cString: strerror(errno)))")
        }
        let deadline = monotonicSeconds() + timeout
        while let state = keyed("cgroup.events", "frozen", in: path), state != (frozen ? 1 : 0) {
            guard monotonicSeconds() < deadline else {
                throw AgentError(.deadlineExceeded, "\(path) did not \(frozen ? "freeze" : "thaw") within \(Int(timeout)) s")
            }
            usleep(10_000)
        }
    }

    /// Every process in the cgroup (cgroup.procs), ascending.
    static func processes(in path: String) -> [Int32]? {
        guard let text = FileManagerLite.read(path + "/cgroup.procs") else { return nil }
        return text.split(separator: "\n").compactMap { Int32(String($0).trimmed) }.filter { $0 > 0 }.sorted()
    }

    static func remove(for id: String, root: String?) {
        guard let root else { return }
        let path = path(for: id, root: root)
        killAll(in: path)
        for _ in 0..<50 {
            if rmdir(path) == 0 || errno == ENOENT { return }
            usleep(20_000)
        }
    }

    /// cgroup.kill (Linux 5.14+) ends every process in the cgroup, including ones the
    /// agent never saw (forks of forks).
    static func killAll(in path: String) {
        FileManagerLite.write("1", to: path + "/cgroup.kill", create: false)
    }

    static func value(_ file: String, in path: String) -> UInt64? {
        FileManagerLite.read(path + "/" + file).flatMap { UInt64($0.trimmed) }
    }

    static func keyed(_ file: String, _ key: String, in path: String) -> UInt64? {
        guard let text = FileManagerLite.read(path + "/" + file) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == key { return UInt64(parts[1]) }
        }
        return nil
    }

    static func stats(of path: String) -> AgentStatsContainerResponse {
        var response = AgentStatsContainerResponse()
        response.cpu.usageUsec = keyed("cpu.stat", "usage_usec", in: path) ?? 0
        response.cpu.userUsec = keyed("cpu.stat", "user_usec", in: path) ?? 0
        response.cpu.systemUsec = keyed("cpu.stat", "system_usec", in: path) ?? 0
        response.memory.usageBytes = value("memory.current", in: path) ?? 0
        response.memory.limitBytes = value("memory.max", in: path) ?? 0  // "max" reads as 0: no limit
        response.pids.current = value("pids.current", in: path) ?? 0
        response.pids.limit = value("pids.max", in: path) ?? 0
        return response
    }

    static func oomKills(in path: String) -> UInt64 {
        keyed("memory.events", "oom_kill", in: path) ?? 0
    }
}

extension String {
    /// Without surrounding white space and newlines (no Foundation in this file's path).
    var trimmed: String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace || first.isNewline { view.removeFirst() }
        while let last = view.last, last.isWhitespace || last.isNewline { view.removeLast() }
        return String(view)
    }
}
