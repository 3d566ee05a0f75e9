import AgentProtocol

/// Where a sandbox's agent runs and how the host reaches it: a microVM (kasa-vmm, the
/// product) or kata-agent as a host process on a Unix socket (the runtime's fast tests).
/// Everything above this — containers, streams, exit codes, teardown — is the same code.
public protocol SandboxBackend: AnyObject, Sendable {
    /// Starts the VM or process. `rootfs` is the container's root directory; the backend
    /// decides how it reaches the agent (a block image, a bind) and returns the mount the
    /// agent is asked to make.
    func launch(rootfs: String) throws(RuntimeError) -> AgentMount

    /// One connection to the agent, retried until `deadline` (MonotonicClock seconds);
    /// fails early when the backend has died.
    func connect(deadline: Double) throws(RuntimeError) -> AgentClient

    /// Why the backend is gone ("kasa-vmm exited with status 1 ..."), nil while it runs.
    var failure: String? { get }

    /// What the backend logged, for an error message ("" when there is nothing to show):
    /// the VM's console and kasa-vmm's messages, or the host agent's log.
    var failureDetail: String { get }

    /// Runs `handler` once if the backend dies on its own.
    func onUnexpectedExit(_ handler: @escaping @Sendable (String) -> Void)

    /// True when stopping the backend discards all guest state (a VM): the containers
    /// need no removal first.
    var stopDiscardsGuestState: Bool { get }

    /// Stops it and removes everything it created on the host. Safe to call twice.
    func tearDown()

    /// The pod network the backend's VM is joined to (its NICs), if any: the agent is
    /// told to set it up before any container is created.
    var network: PodNetwork? { get }

    /// The sandbox's shared directory when it has one (`shared_fs = "virtio-fs"`): bind
    /// mounts are shared through it instead of copied, and CreateSandbox mounts it.
    var virtioFS: VirtioFSExport? { get }
}

extension SandboxBackend {
    public var network: PodNetwork? { nil }
    public var virtioFS: VirtioFSExport? { nil }
}
