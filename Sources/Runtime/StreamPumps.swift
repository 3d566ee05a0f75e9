import AgentProtocol
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Threads that copy a process's streams between host descriptors and the agent
/// (ReadStdout/ReadStderr until EOF; WriteStdin until EOF, then CloseStdin). Used by
/// `kata-runtime run` and by the containerd shim.
public enum StreamPumps {
    /// Copies `stream` of `container`/`exec` to `descriptor` until EOF, then calls
    /// `finished` (on the pump's thread).
    public static func output(_ stream: SandboxAgent.OutputStream, agent: SandboxAgent, container: String, exec: String,
                              to descriptor: Int32, finished: @escaping @Sendable () -> Void) {
        DetachedThread.start {
            var writable = true
            while let chunk = try? agent.read(stream, container: container, exec: exec), !chunk.isEmpty {
                // A closed host end (EPIPE) stops the copy, not the draining: the
                // workload must never block on a full pipe.
                if writable { writable = DescriptorIO.writeAll(descriptor, chunk) }
            }
            finished()
        }
    }

    /// Copies `descriptor` to the process's stdin until EOF (then CloseStdin) or until
    /// `cancel` fires; nil = no input at all (stdin is closed at once).
    public static func input(agent: SandboxAgent, container: String, exec: String, from descriptor: Int32?,
                             cancel: StdinCancellation, finished: @escaping @Sendable () -> Void = {}) {
        DetachedThread.start {
            defer { finished() }
            if let descriptor {
                while let bytes = cancel.read(descriptor), !bytes.isEmpty {
                    var offset = 0
                    while offset < bytes.count {
                        guard let written = try? agent.writeStdin(container: container, exec: exec, bytes[offset...]),
                              written > 0 else { return }
                        offset += written
                    }
                }
                if cancel.isCancelled { return }
            }
            _ = try? agent.closeStdin(container: container, exec: exec)
        }
    }
}
