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

/// The host's mount table (/proc/self/mountinfo), for cleanup.
public enum HostMounts {
    /// Mount points at or below `directory`.
    public static func mountPoints(under directory: String) -> [String] {
        guard let text = HostFile.readText("/proc/self/mountinfo") else { return [] }
        return text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let point = decode(String(fields[4]))
            return point == directory || point.hasPrefix(directory + "/") ? point : nil
        }
    }

    /// Lazily unmounts every mount below `directory`, innermost first.
    public static func unmountAll(under directory: String) {
        for point in mountPoints(under: directory).reversed() {
            _ = umount2(point, Int32(MNT_DETACH))
        }
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func decode(_ field: String) -> String {
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var index = 0
        while index < raw.count {
            if raw[index] == UInt8(ascii: "\\"), index + 3 < raw.count,
               let value = UInt8(String(decoding: raw[index + 1...index + 3], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(raw[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
