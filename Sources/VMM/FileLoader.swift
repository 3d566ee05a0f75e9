#if canImport(Glibc)
import Glibc
#endif

/// Reads a whole file for booting (kernel, initrd), with errors that name its role.
enum FileLoader {
    static func read(_ path: String, role: String) throws -> [UInt8] {
        var status = stat()
        if stat(path, &status) != 0 {
            if errno == ENOENT { throw VMMError.fileMissing(role: role, path: path) }
            throw VMMError.fileUnreadable(role: role, path: path, reason: String(cString: strerror(errno)))
        }
        if status.st_mode & S_IFMT == S_IFDIR {
            throw VMMError.fileUnreadable(role: role, path: path, reason: "it is a directory")
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        if descriptor < 0 {
            throw VMMError.fileUnreadable(role: role, path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(status.st_size))
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw VMMError.fileUnreadable(role: role, path: path, reason: String(cString: strerror(errno)))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        if bytes.isEmpty { throw VMMError.fileEmpty(role: role, path: path) }
        return bytes
    }
}
