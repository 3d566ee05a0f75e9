import AgentProtocol
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// A process's stdout or stderr as the host reads it: a reader thread drains the pipe (or
/// pty) into a bounded buffer; ReadStdout/ReadStderr take from it. When the buffer is full
/// the reader stops reading, so a slow host slows the process instead of losing output.
public final class OutputBuffer: @unchecked Sendable {
    public static let capacity = 1 << 20
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var bytes: [UInt8] = []
    private var ended = false

    public init() {}

    /// Starts draining `descriptor` (owned from now on; closed at end of stream).
    public func drain(_ descriptor: Int32) {
        DetachedThread.start { [self] in
            while true {
                let chunk = DescriptorIO.readSome(descriptor)
                if chunk.isEmpty { break }  // EOF, or EIO from a pty whose last user exited
                _ = monitor.wait(until: { bytes.count < OutputBuffer.capacity })
                monitor.update { bytes += chunk }
            }
            close(descriptor)
            monitor.update { ended = true }
        }
    }

    /// Up to `limit` bytes, waiting for some; [] once the stream has ended and been read.
    public func read(limit: Int, timeout: Double? = nil) -> [UInt8] {
        _ = monitor.wait(until: { !bytes.isEmpty || ended }, timeout: timeout)
        return monitor.update {
            let count = min(limit, bytes.count)
            let taken = Array(bytes.prefix(count))
            bytes.removeFirst(count)
            return taken
        }
    }

    public var hasEnded: Bool { monitor.withLock { ended && bytes.isEmpty } }
}
