import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Turns a `ConsoleOutput` choice into the byte sink the UART writes to.
enum ConsoleSink {
    /// The most a console file keeps: a guest that writes without end must not fill the
    /// host's disk. Past it the file starts over (the latest output is what explains a
    /// failure, and the runtime shows the file's tail).
    static let defaultFileLimit = 8 << 20

    static func make(_ output: ConsoleOutput, fileLimit: Int = defaultFileLimit) throws -> @Sendable ([UInt8]) -> Void {
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
            let file = CappedConsoleFile(descriptor: descriptor, limit: fileLimit)
            return { bytes in file.write(bytes) }
        }
    }

    /// A closed console must not stop the guest: a failed write is dropped.
    static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) {
        DescriptorIO.write(descriptor, bytes, socket: false)
    }
}

/// A console log file with a size limit. When a write would pass it, the file is emptied
/// and starts with a line saying so; the rest of the guest's output follows. Only regular
/// files are capped (a console on a pipe or terminal passes through).
final class CappedConsoleFile: @unchecked Sendable {
    private let descriptor: Int32
    private let limit: Int
    private let isRegularFile: Bool
    private let lock = Lock()
    private var written = 0  // guarded by lock

    init(descriptor: Int32, limit: Int) {
        self.descriptor = descriptor
        self.limit = limit
        var info = stat()
        isRegularFile = fstat(descriptor, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
    }

    func write(_ bytes: [UInt8]) {
        lock.withLock {
            if isRegularFile && written + bytes.count > limit {
                let notice = Array("kasa-vmm: the console log reached \(limit) bytes; earlier output was dropped\n".utf8)
                _ = ftruncate(descriptor, 0)
                _ = lseek(descriptor, 0, SEEK_SET)
                ConsoleSink.writeAll(descriptor, notice)
                written = notice.count
            }
            ConsoleSink.writeAll(descriptor, bytes)
            written += bytes.count
        }
    }
}
