import AgentProtocol
import FoundationEssentials
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// The sandbox's state: its containers and their processes. All mutations hold `monitor`;
/// blocking work (waiting for exits, reading output) happens outside it.
final class Sandbox: @unchecked Sendable {
    let configuration: AgentConfiguration
    let launcher: any ProcessLauncher
    let log: @Sendable (String) -> Void
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var containers: [String: ContainerRecord] = [:]
    private var reportedOOMKills: [String: UInt64] = [:]
    /// Wakes GetOOMEvent when a container's memory.events changes.
    private let memoryEvents = MemoryEventWatch()
    /// CreateSandbox's id: the pod sandbox container, whose IPC and UTS namespaces the
    /// pod's other containers join.
    private var sandboxID: String?

    /// Host files the runtime copied in for bind mounts, one directory per container.
    let sharedFiles: SharedFiles

    init(configuration: AgentConfiguration, launcher: any ProcessLauncher, log: @escaping @Sendable (String) -> Void) {
        self.configuration = configuration
        self.sharedFiles = SharedFiles(directory: configuration.stateDirectory + "/shared")
        self.launcher = launcher
        self.log = log
        ChildReaper.shared.start()
    }

    // MARK: Sandbox

    func create(_ request: AgentCreateSandboxRequest) throws {
        monitor.withLock { sandboxID = request.sandboxID.isEmpty ? nil : request.sandboxID }
        guard configuration.ownsTheMachine else { return }  // a host process must not touch the host's identity
        if !request.hostname.isEmpty {
            guard sethostname(request.hostname, request.hostname.utf8.count) == 0 else {
                throw AgentError(.internal, "sethostname: \(String(cString: strerror(errno)))")
            }
        }
        if !request.dns.isEmpty {
            let text = request.dns.joined(separator: "\n") + "\n"
            guard FileManagerLite.write(text, to: "/etc/resolv.conf") else {
                throw AgentError(.internal, "cannot write /etc/resolv.conf")
            }
        }
        for storage in request.storages {
            try Mounter.mount(storage.source, at: storage.target, type: storage.type, options: storage.options)
        }
    }

    func destroy() {
        let ids = monitor.withLock { Array(containers.keys) }
        for id in ids { try? removeContainer(id, timeout: 5) }
    }

    func guestDetails() -> AgentGuestDetailsResponse {
        var response = AgentGuestDetailsResponse()
        if let text = FileManagerLite.read("/sys/devices/system/memory/block_size_bytes"),
           let size = UInt64(text.trimmed, radix: 16) {
            response.memBlockSizeBytes = size
        }
        var details = AgentDetails()
        details.version = configuration.version
        details.initDaemon = getpid() == 1
        details.storageHandlers = ["bind", "ext4", "erofs", "overlay", "tmpfs"]
        response.agentDetails = details
        response.sharedFilesDirectory = sharedFiles.directory
        return response
    }

    // MARK: Containers

    func createContainer(_ request: AgentCreateContainerRequest) throws {
        let id = request.containerID
        try ContainerNames.validate(id)
        let execID = request.execID.isEmpty ? id : request.execID
        let exists = monitor.withLock { containers[id] != nil }
        guard !exists else { throw AgentError(.alreadyExists, "container \(id) already exists") }

        let rootfs: PreparedRootfs
        do {
            rootfs = try RootfsPreparer.prepare(containerID: id, mounts: request.rootfs, stateDirectory: configuration.stateDirectory)
        } catch {
            // The host's copies for this container go too: a retry sends them afresh.
            sharedFiles.removeCopies(of: id)
            throw error
        }
        do {
            let oci = try OCITranslation.parse(Array(request.ociSpecJson))
            var spec = try OCITranslation.launchSpec(oci, rootfs: rootfs.path)
            if request.readonlyRootfs { spec.readonlyRootfs = true }
            spec.sharedNamespaces = try podNamespaces(for: id, named: oci.linux?.namespaces ?? [])
            let deviceRules = try DeviceFilter.rules(from: oci.linux?.resources?.devices)
            spec.cgroupPath = try CgroupManager.create(for: id, root: configuration.cgroupRoot,
                                                       resources: OCITranslation.resources(oci.linux?.resources))
            // Before any process of the container is in the cgroup.
            let deviceProgram = try spec.cgroupPath.flatMap { (cgroup) throws(AgentError) in
                try DeviceFilter.attach(deviceRules, toCgroup: cgroup)
            }
            let process: ManagedProcess
            do {
                process = try ProcessSpawner.spawn(containerID: id, execID: execID, spec: spec, launcher: launcher)
            } catch {
                if let deviceProgram { close(deviceProgram) }
                throw error
            }
            let record = ContainerRecord(id: id, initExecID: execID, initProcess: process, cgroupPath: spec.cgroupPath,
                                         mountedPaths: rootfs.mountedPaths, launchSpec: spec)
            record.deviceProgram = deviceProgram
            if let cgroup = spec.cgroupPath { memoryEvents.watch(cgroup + "/memory.events", for: id) }
            monitor.withLock { containers[id] = record }
        } catch {
            rootfs.undo()
            CgroupManager.remove(for: id, root: configuration.cgroupRoot)
            sharedFiles.removeCopies(of: id)
            throw error
        }
    }

    /// A pod's container whose spec names IPC/UTS/network namespaces by path (CRI points
    /// them at the host's pause process, meaningless in the guest) joins those of the
    /// pod's sandbox container instead. The network namespace is the VM's for every
    /// container already. Other containers get their own.
    private func podNamespaces(for id: String, named namespaces: [OCISpec.Namespace]) throws -> ContainerLaunchSpec.SharedNamespaces? {
        let named = namespaces.filter { !($0.path ?? "").isEmpty }.map(\.type)
        let kinds = ["ipc", "uts"].filter(named.contains)
        guard !kinds.isEmpty else { return nil }
        guard let sandbox = monitor.withLock({ () -> ContainerRecord? in
            guard let sandboxID, sandboxID != id else { return nil }
            return containers[sandboxID]
        }) else { return nil }
        guard sandbox.initProcess.exitStatus == nil else {
            throw AgentError(.failedPrecondition, "the pod sandbox container \(sandbox.id) has exited: its namespaces are gone")
        }
        return ContainerLaunchSpec.SharedNamespaces(pid: sandbox.initProcess.pid, kinds: kinds)
    }

    func startContainer(_ id: String) throws {
        let record = try container(id)
        let alreadyStarted = monitor.withLock { () -> Bool in
            defer { record.started = true }
            return record.started
        }
        guard !alreadyStarted else { throw AgentError(.failedPrecondition, "container \(id) is already started") }
        do {
            try record.initProcess.launched.start()
        } catch {
            throw AgentError(.failedPrecondition, "starting container \(id): \(error)")
        }
    }

    func exec(_ request: AgentExecProcessRequest) throws {
        let record = try container(request.containerID)
        guard !request.execID.isEmpty else { throw AgentError(.invalidArgument, "exec_id is empty") }
        try monitor.withLock {
            guard record.process(request.execID) == nil else { throw AgentError(.alreadyExists, "exec \(request.execID) already exists") }
        }
        guard record.initProcess.exitStatus == nil else {
            throw AgentError(.failedPrecondition, "container \(request.containerID) is not running")
        }
        var spec = try OCITranslation.execSpec(processJSON: Array(request.processJson), container: record.launchSpec,
                                               initPid: record.initProcess.pid)
        spec.terminal = request.terminal || spec.terminal
        let process = try ProcessSpawner.spawn(containerID: record.id, execID: request.execID, spec: spec, launcher: launcher)
        monitor.withLock { record.execs[request.execID] = process }
        do {
            try process.launched.start()
        } catch {
            monitor.withLock { _ = record.execs.removeValue(forKey: request.execID) }
            throw AgentError(.failedPrecondition, "exec in \(request.containerID): \(error)")
        }
    }

    func removeContainer(_ id: String, timeout: Double) throws {
        let record = try container(id)
        // Everything in the container goes: SIGKILL every process, then wait for them.
        for process in record.allProcesses where process.exitStatus == nil {
            try? process.signal(SIGKILL)
        }
        if let cgroup = record.cgroupPath { CgroupManager.killAll(in: cgroup) }
        for process in record.allProcesses {
            _ = process.waitForExit(timeout: timeout > 0 ? timeout : 10)
        }
        RootfsPreparer.undo(record.mountedPaths)
        memoryEvents.unwatch(id)
        CgroupManager.remove(for: id, root: configuration.cgroupRoot)
        sharedFiles.removeCopies(of: id)
        monitor.withLock {
            _ = containers.removeValue(forKey: id)
            _ = reportedOOMKills.removeValue(forKey: id)
            if let program = record.deviceProgram { close(program) }
            record.deviceProgram = nil
        }
        for process in record.allProcesses { ChildReaper.shared.forget(process.pid) }
    }

    /// Started containers whose first process has not exited.
    var runningContainerCount: Int {
        monitor.withLock { containers.values.filter { $0.started && $0.initProcess.exitStatus == nil }.count }
    }

    /// Sends `signal` to every container's first process; how many were running.
    func signalEveryContainer(_ signal: Int32) -> Int {
        // Not yet started: the process is the launcher's, waiting for StartContainer.
        let records = monitor.withLock { containers.values.filter(\.started) }
        var count = 0
        for record in records where record.initProcess.exitStatus == nil {
            if (try? record.initProcess.signal(signal)) != nil { count += 1 }
        }
        return count
    }

    func process(_ containerID: String, _ execID: String) throws -> ManagedProcess {
        let record = try container(containerID)
        guard let process = monitor.withLock({ record.process(execID) }) else {
            throw AgentError(.notFound, "no process \(execID) in container \(containerID)")
        }
        return process
    }

    private func container(_ id: String) throws -> ContainerRecord {
        guard let record = monitor.withLock({ containers[id] }) else { throw AgentError(.notFound, "no container \(id)") }
        return record
    }

    // MARK: Control

    func setPaused(_ paused: Bool, _ id: String) throws {
        let (record, cgroup) = try cgroup(of: id, "to freeze")
        guard record.initProcess.exitStatus == nil else {
            throw AgentError(.failedPrecondition, "container \(id) is not running")
        }
        try CgroupManager.setFrozen(paused, in: cgroup)
    }

    /// New limits, and new device rules when the request has any (none: the container's
    /// stay): its filter is replaced in one step, as runc's update does.
    func update(_ request: AgentUpdateContainerRequest) throws {
        let (record, cgroup) = try cgroup(of: request.containerID, "to update")
        // Everything read before anything changes: bad rules leave the limits as they were.
        let resources = try OCITranslation.resources(json: Array(request.resourcesJson))
        let rules = try DeviceFilter.rules(from: resources.devices)
        try CgroupManager.apply(OCITranslation.resources(resources), to: cgroup)
        guard !rules.isEmpty else { return }
        // Under the monitor: two updates at once must not both replace the same program,
        // and a container removed meanwhile (its program closed) gets none.
        try monitor.withLock {
            guard containers[request.containerID] === record else {
                throw AgentError(.notFound, "container \(request.containerID) was removed during the update")
            }
            let program = try DeviceFilter.attach(rules, toCgroup: cgroup, replacing: record.deviceProgram)
            if let old = record.deviceProgram { close(old) }
            record.deviceProgram = program
        }
    }

    /// The container's processes: its cgroup's, or (without cgroups) the ones the agent
    /// started that still run.
    func processes(_ id: String) throws -> [Int32] {
        let record = try container(id)
        if let cgroup = record.cgroupPath, let pids = CgroupManager.processes(in: cgroup), !pids.isEmpty { return pids }
        return runningProcesses(of: record).sorted()
    }

    /// `signal` to every process of the container: its cgroup's (forks of forks too) and
    /// the ones the agent started.
    func signalAll(_ id: String, _ signal: Int32) throws {
        let record = try container(id)
        guard monitor.withLock({ record.started }) else {
            throw AgentError(.failedPrecondition, "container \(id) is not started")
        }
        var pids = Set(runningProcesses(of: record))
        if let cgroup = record.cgroupPath { pids.formUnion(CgroupManager.processes(in: cgroup) ?? []) }
        for pid in pids where pid > 1 && pid != getpid() {  // never the agent (PID 1 in the guest)
            _ = kill(pid, signal)
        }
    }

    /// Pids of the processes the agent started in the container that have not exited.
    private func runningProcesses(of record: ContainerRecord) -> [Int32] {
        monitor.withLock { record.allProcesses }.filter { $0.exitStatus == nil && $0.pid > 0 }.map(\.pid)
    }

    /// The container and its cgroup; UNAVAILABLE, naming `purpose`, without one.
    private func cgroup(of id: String, _ purpose: String) throws -> (ContainerRecord, String) {
        let record = try container(id)
        guard let cgroup = record.cgroupPath else {
            throw AgentError(.unavailable, "container \(id) has no cgroup \(purpose) (no cgroup v2 here)")
        }
        return (record, cgroup)
    }

    // MARK: Stats and OOM

    func stats(_ id: String) throws -> AgentStatsContainerResponse {
        CgroupManager.stats(of: try cgroup(of: id, "to measure").1)
    }

    /// Waits for a container to report a new OOM kill (memory.events oom_kill grows):
    /// looks at every container's file, then sleeps until one of them changes.
    func nextOOMEvent(timeout: Double?) throws -> String {
        let deadline = timeout.map { monotonicSeconds() + $0 }
        while true {
            let seen = memoryEvents.changes
            let records = monitor.withLock { Array(containers.values) }
            for record in records {
                guard let cgroup = record.cgroupPath else { continue }
                let kills = CgroupManager.oomKills(in: cgroup)
                let isNew = monitor.withLock { () -> Bool in
                    let seen = reportedOOMKills[record.id] ?? 0
                    if kills > seen { reportedOOMKills[record.id] = kills; return true }
                    return false
                }
                if isNew { return record.id }
            }
            let left = deadline.map { $0 - monotonicSeconds() } ?? .infinity
            if left <= 0 { throw AgentError(.deadlineExceeded, "no OOM event") }
            memoryEvents.wait(after: seen, timeout: min(left, MemoryEventWatch.fallbackInterval))
        }
    }
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Container ids become directory names: keep them to a safe alphabet.
enum ContainerNames {
    static func validate(_ id: String) throws {
        let allowed = id.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
        guard !id.isEmpty, id.utf8.count <= 128, allowed, id != ".", id != ".." else {
            throw AgentError(.invalidArgument, "invalid container id '\(id)': use 1-128 letters, digits, '-', '_', '.'")
        }
    }
}
