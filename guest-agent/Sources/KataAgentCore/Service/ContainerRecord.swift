import AgentProtocol

/// A container as the agent tracks it: its first process (created, then started) and the
/// processes exec'd into it.
final class ContainerRecord: @unchecked Sendable {
    enum State: Equatable { case created, running, stopped }

    let id: String
    let initExecID: String
    let initProcess: ManagedProcess
    let cgroupPath: String?
    /// Mounts the agent made for this container (its rootfs), undone on removal.
    let mountedPaths: [String]
    /// What the first process was launched with; execs inherit rootfs, env defaults, cgroup.
    let launchSpec: ContainerLaunchSpec
    // Guarded by the sandbox's monitor.
    var started = false
    var execs: [String: ManagedProcess] = [:]
    /// The device filter attached to its cgroup (DeviceFilter), kept for UpdateContainer to
    /// replace; closed when the container is removed.
    var deviceProgram: Int32?

    init(id: String, initExecID: String, initProcess: ManagedProcess, cgroupPath: String?, mountedPaths: [String],
         launchSpec: ContainerLaunchSpec) {
        self.launchSpec = launchSpec
        self.id = id
        self.initExecID = initExecID
        self.initProcess = initProcess
        self.cgroupPath = cgroupPath
        self.mountedPaths = mountedPaths
    }

    func process(_ execID: String) -> ManagedProcess? {
        if execID.isEmpty || execID == initExecID || execID == id { return initProcess }
        return execs[execID]
    }

    var allProcesses: [ManagedProcess] { [initProcess] + Array(execs.values) }
}
