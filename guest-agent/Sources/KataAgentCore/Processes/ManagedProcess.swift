import AgentProtocol
import CAgentLinux
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// One process the agent started (a container's init or an exec), with its streams.
public final class ManagedProcess: @unchecked Sendable {
    public let containerID: String
    public let execID: String
    public let launched: any LaunchedProcess
    public let stdout: OutputBuffer
    public let stderr: OutputBuffer?
    public let terminal: Bool
    private let monitor = Monitor()
    // Guarded by `monitor`: the host-facing end of stdin (pipe write end or pty master).
    private var stdinDescriptor: Int32?
    private let ptyMaster: Int32?

    public var pid: Int32 { launched.pid }

    init(containerID: String, execID: String, launched: any LaunchedProcess, stdin: Int32,
         stdout: OutputBuffer, stderr: OutputBuffer?, ptyMaster: Int32?) {
        self.containerID = containerID
        self.execID = execID
        self.launched = launched
        self.stdinDescriptor = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.terminal = ptyMaster != nil
        self.ptyMaster = ptyMaster
        ChildReaper.shared.watch(launched.pid)
    }

    deinit {
        if let stdinDescriptor { close(stdinDescriptor) }
    }

    public func writeStdin(_ bytes: [UInt8]) throws -> Int {
        try monitor.withLock {
            guard let descriptor = stdinDescriptor else { throw AgentError(.failedPrecondition, "stdin of \(execID) is closed") }
            guard DescriptorIO.writeAll(descriptor, bytes) else { throw AgentError(.unavailable, "process \(execID) no longer reads stdin") }
            return bytes.count
        }
    }

    public func closeStdin() {
        monitor.withLock {
            guard let descriptor = stdinDescriptor else { return }
            if terminal {
                // A pty has no half-close: send end-of-file (^D) the way a terminal user would.
                _ = DescriptorIO.writeAll(descriptor, [0x04])
            } else {
                close(descriptor)
                stdinDescriptor = nil
            }
        }
    }

    public func resize(rows: UInt16, columns: UInt16) throws {
        guard let ptyMaster else { throw AgentError(.failedPrecondition, "process \(execID) has no terminal") }
        guard kasa_set_window_size(ptyMaster, rows, columns) == 0 else {
            throw AgentError(.internal, "resizing the terminal: \(String(cString: strerror(errno)))")
        }
    }

    public func signal(_ number: Int32) throws {
        guard kill(pid, number) == 0 else {
            if errno == ESRCH { return }  // already gone: nothing to do
            throw AgentError(.internal, "kill(\(pid), \(number)): \(String(cString: strerror(errno)))")
        }
    }

    public var exitStatus: Int32? { ChildReaper.shared.exitStatus(of: pid) }

    public func waitForExit(timeout: Double? = nil) -> Int32? {
        ChildReaper.shared.waitForExit(of: pid, timeout: timeout)
    }
}

/// An RPC failure with the gRPC code the host sees.
public struct AgentError: Error, CustomStringConvertible, Sendable {
    public let code: TTRPCStatusCode
    public let message: String

    public init(_ code: TTRPCStatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
