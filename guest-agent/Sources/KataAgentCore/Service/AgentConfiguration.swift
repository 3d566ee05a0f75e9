/// How the agent runs: as the guest's PID 1, or as a host process under test.
public struct AgentConfiguration: Sendable {
    /// In the guest the agent owns the machine: it may set the hostname, write
    /// /etc/resolv.conf and mount storages. As a host process it must never do so.
    public var ownsTheMachine: Bool
    /// Where containers' rootfs mounts and state go.
    public var stateDirectory: String
    /// The cgroup v2 directory container cgroups are created under; nil disables cgroups.
    public var cgroupRoot: String?
    public var version: String
    /// Where the network RPCs act: nil = the agent's own network namespace, which only
    /// the guest's PID 1 may change; a host-process agent under test is given the path of
    /// a namespace the test made (`--netns PATH`), never the host's.
    public var networkNamespace: String?

    public init(ownsTheMachine: Bool, stateDirectory: String = "/run/kasa-agent",
                cgroupRoot: String? = nil, version: String = AgentVersion.current, networkNamespace: String? = nil) {
        self.ownsTheMachine = ownsTheMachine
        self.stateDirectory = stateDirectory
        self.cgroupRoot = cgroupRoot
        self.version = version
        self.networkNamespace = networkNamespace
    }
}

public enum AgentVersion {
    public static let current = "0.1.0"
}
