/// The child's ends of a process's standard streams.
public enum ProcessStdio: Sendable {
    case pipes(stdin: Int32, stdout: Int32, stderr: Int32)
    /// A pty slave as stdin, stdout and stderr (OCI `process.terminal`).
    case terminal(slave: Int32)
}

/// A process that has been set up; for a container's first process it waits for `start`.
public protocol LaunchedProcess: Sendable {
    /// The pid as the agent sees it (what it waits for and signals).
    var pid: Int32 { get }
    /// Lets the process exec its program; throws if the exec failed (missing or
    /// non-executable program).
    func start() throws
}

/// How the agent starts processes. `ContainerProcessLauncher` does it with namespaces,
/// mounts and cgroups; tests of the service logic may use a plain one.
public protocol ProcessLauncher: Sendable {
    func launch(_ spec: ContainerLaunchSpec, stdio: ProcessStdio) throws -> any LaunchedProcess
}
