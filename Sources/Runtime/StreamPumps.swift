import AgentProtocol
import FoundationEssentials  // Data: the type of swift-protobuf's bytes fields
#if canImport(Glibc)
import Glibc
#endif

/// Threads that copy a process's streams between host descriptors and the agent
/// (ReadStdout/ReadStderr until EOF; WriteStdin until EOF, then CloseStdin). Used by
/// `kata-runtime run` and by the containerd shim.
public enum StreamPumps {
    /// Effectively no limit: a stream call lasts as long as the process writes.
    static let longCall = 365.0 * 24 * 3600

    /// Copies stdout or stderr of `containerID`/`execID` to `descriptor` until EOF, then
    /// calls `finished` (on the pump's thread).
    public static func output(_ method: AgentServiceMethod, agent: AgentClient, containerID: String, execID: String,
                              to descriptor: Int32, finished: @escaping @Sendable () -> Void) {
        DetachedThread.start {
            var request = AgentReadStreamRequest()
            request.containerID = containerID
            request.execID = execID
            request.len = 65536
            var writable = true
            while let chunk = try? agent.call(method, request, returning: AgentReadStreamResponse.self, timeout: longCall).data,
                  !chunk.isEmpty {
                // A closed host end (EPIPE) stops the copy, not the draining: the
                // workload must never block on a full pipe.
                if writable { writable = DescriptorIO.writeAll(descriptor, Array(chunk)) }
            }
            finished()
        }
    }

    /// Copies `descriptor` to the process's stdin until EOF (then CloseStdin) or until
    /// `cancel` fires; nil = no input at all (stdin is closed at once).
    public static func input(agent: AgentClient, containerID: String, execID: String, from descriptor: Int32?,
                             cancel: StdinCancellation, finished: @escaping @Sendable () -> Void = {}) {
        DetachedThread.start {
            defer { finished() }
            var close = AgentCloseStdinRequest()
            close.containerID = containerID
            close.execID = execID
            if let descriptor {
                var write = AgentWriteStreamRequest()
                write.containerID = containerID
                write.execID = execID
                while let bytes = cancel.read(descriptor), !bytes.isEmpty {
                    var offset = 0
                    while offset < bytes.count {
                        write.data = Data(bytes[offset...])
                        guard let written = try? agent.call(.writeStdin, write, returning: AgentWriteStreamResponse.self,
                                                            timeout: longCall).len, written > 0 else { return }
                        offset += Int(written)
                    }
                }
                if cancel.isCancelled { return }
            }
            _ = try? agent.call(.closeStdin, close, timeout: 60)
        }
    }
}
