import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Turns a `ConsoleOutput` choice into the byte sink the UART writes to.
enum ConsoleSink {
    static func make(_ output: ConsoleOutput) throws -> @Sendable ([UInt8]) -> Void {
        switch output {
        case .standardOutput:
            return { bytes in writeAll(STDOUT_FILENO, bytes) }
        case .discard:
            return { _ in }
        case .handler(let handler):
            return handler
        case .file(let path):
            let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if descriptor < 0 {
                throw VMMError.consoleFileUnwritable(path: path, reason: String(cString: strerror(errno)))
            }
            // The descriptor lives as long as the VMM process: the console is written until exit.
            return { bytes in writeAll(descriptor, bytes) }
        }
    }

    /// A closed console must not stop the guest: a failed write is dropped.
    static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) {
        DescriptorIO.write(descriptor, bytes, socket: false)
    }
}
