/// The agent's `ProcessLauncher`: container processes through `ContainerLauncher`, by
/// re-executing the agent binary itself (`/proc/self/exe` unless told otherwise).
public struct ContainerProcessLauncher: ProcessLauncher {
    public var agentExecutable: String
    public var timeout: Duration
    /// Where new containers' inits come from when one is ready (nil: always afresh).
    public var standby: ContainerInitStandby?

    public init(agentExecutable: String = "/proc/self/exe", timeout: Duration = .seconds(30),
                standby: ContainerInitStandby? = nil) {
        self.agentExecutable = agentExecutable
        self.timeout = timeout
        self.standby = standby
    }

    public func launch(_ spec: ContainerLaunchSpec, stdio: ProcessStdio) throws -> any LaunchedProcess {
        try ContainerLauncher.launch(spec: spec, agentExecutable: agentExecutable, stdio: stdio, timeout: timeout,
                                     standby: standby)
    }
}

extension ContainerLaunch: LaunchedProcess {}
