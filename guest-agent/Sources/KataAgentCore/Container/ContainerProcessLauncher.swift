/// The agent's `ProcessLauncher`: container processes through `ContainerLauncher`, by
/// re-executing the agent binary itself (`/proc/self/exe` unless told otherwise).
public struct ContainerProcessLauncher: ProcessLauncher {
    public var agentExecutable: String
    public var timeout: Duration

    public init(agentExecutable: String = "/proc/self/exe", timeout: Duration = .seconds(30)) {
        self.agentExecutable = agentExecutable
        self.timeout = timeout
    }

    public func launch(_ spec: ContainerLaunchSpec, stdio: ProcessStdio) throws -> any LaunchedProcess {
        try ContainerLauncher.launch(spec: spec, agentExecutable: agentExecutable, stdio: stdio, timeout: timeout)
    }
}

extension ContainerLaunch: LaunchedProcess {}
