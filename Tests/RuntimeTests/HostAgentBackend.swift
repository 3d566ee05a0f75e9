import AgentProtocol
@testable import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// kata-agent as a host process on a Unix socket (root, like the agent's own tests): the
/// runtime's container, stream and teardown logic tested in seconds, without a VM. The
/// rootfs directory is handed over as a read-only bind, so the agent lays the same tmpfs
/// overlay over it as over the VM's image.
final class HostAgentBackend: SandboxBackend, @unchecked Sendable {
    public let agentExecutable: String
    public let directory: String
    public var socketPath: String { directory + "/agent.sock" }

    private let lifecycle = BackendLifecycle()

    /// `directory` is created and, at tearDown, removed.
    public init(agentExecutable: String, directory: String) {
        self.agentExecutable = agentExecutable
        self.directory = directory
    }

    public func launch(rootfs: String) throws(RuntimeError) -> AgentMount {
        guard HostFile.isDirectory(rootfs) else {
            throw RuntimeError.invalidInput(HostFile.exists(rootfs) ? "rootfs \(rootfs) is not a directory" : "rootfs \(rootfs) does not exist")
        }
        try HostFile.makeDirectories(directory, mode: 0o700)
        let child = try ChildProcess(agentExecutable, ["--listen", "unix:" + socketPath, "--state-dir", directory + "/state"],
                                     stdin: .null, stdout: .file(directory + "/agent.log"), stderr: .file(directory + "/agent.log"))
        guard lifecycle.adopt(child, name: "kata-agent") else {
            child.terminate(grace: 3)
            throw RuntimeError.sandbox("stopped while starting")
        }
        var mount = AgentMount()
        mount.source = HostFile.absolute(rootfs)
        mount.type = "bind"
        mount.options = ["bind", "ro"]
        return mount
    }

    public func connect(deadline: Double) throws(RuntimeError) -> AgentClient {
        var lastProblem = "no attempt"
        while MonotonicClock.now < deadline {
            if let failure { throw RuntimeError.sandbox("the agent stopped before it answered: \(failure)") }
            switch UnixStream.connect(socketPath) {
            case .success(let descriptor): return AgentClient(connection: TTRPCClient(descriptor: descriptor))
            case .failure(let error): lastProblem = "\(error)"
            }
            usleep(10_000)
        }
        throw RuntimeError.sandbox("the agent did not listen on \(socketPath) in time (\(lastProblem))")
    }

    public var failure: String? { lifecycle.failure }

    public func onUnexpectedExit(_ handler: @escaping @Sendable (String) -> Void) {
        lifecycle.onUnexpectedExit(handler)
    }

    public var failureDetail: String {
        let tail = HostFile.tail(directory + "/agent.log", bytes: 2000)
        return tail.isEmpty ? "" : "\n--- kata-agent ---\n" + tail
    }

    public var stopDiscardsGuestState: Bool { false }

    public func tearDown() {
        let child = lifecycle.beginTearDown()
        child?.terminate(grace: 3)
        // A host agent's mounts live in the host's namespace: take down whatever a
        // failed removal left before deleting the directory, never through a mount.
        HostMounts.unmountAll(under: directory)
        HostFile.removeTree(directory)
    }
}
