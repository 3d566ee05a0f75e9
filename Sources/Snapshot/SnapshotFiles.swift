import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// A snapshot is a directory of two files:
/// - `state`: "KASASNAP", the format version (u32), the payload's length (u64), the payload
///   (`SnapshotEncoder`), and a CRC-32 of everything before it;
/// - `memory`: a 4 KiB header ("KASAMEM", the format version, the snapshot ID shared with the
///   state file, guest RAM's size), then guest RAM from offset 4096, sparse (holes where the
///   guest's pages are zero), so it can be mapped copy-on-write as it is.
/// Both are written under temporary names and renamed into place, memory first: a directory
/// with a `state` file holds a complete snapshot, and a clone that still maps an older
/// `memory` keeps its own (renamed-over) file, never one changed under it.
public enum SnapshotFiles {
    public static let stateName = "state"
    public static let memoryName = "memory"
    public static let memoryOffset: UInt64 = 4096
    static let stateMagic = Array("KASASNAP".utf8)
    static let memoryMagic = Array("KASAMEM\0".utf8)

    public static func encodeState(_ payload: [UInt8], format: UInt32) -> [UInt8] {
        var bytes = stateMagic
        var header = SnapshotEncoder()
        header.append(format)
        header.append(UInt64(payload.count))
        bytes += header.bytes + payload
        var trailer = SnapshotEncoder()
        trailer.append(CRC32.checksum(bytes))
        return bytes + trailer.bytes
    }

    /// The payload of a state file, after checking its magic, format and checksum.
    public static func decodeState(_ bytes: [UInt8], path: String, format: UInt32) throws -> [UInt8] {
        guard bytes.count >= 8, Array(bytes.prefix(8)) == stateMagic else { throw SnapshotError.notASnapshot(path) }
        var input = SnapshotDecoder(Array(bytes.dropFirst(8)))
        let found = try input.read(UInt32.self, "the format version")
        guard found == format else { throw SnapshotError.unsupportedFormat(found: found, supported: format) }
        let length = try input.read(UInt64.self, "the payload length")
        guard bytes.count >= 24, UInt64(bytes.count - 24) == length else {
            throw bytes.count < 24 || UInt64(bytes.count - 24) < length ? SnapshotError.truncated("the payload") : SnapshotError.invalid("bytes after the checksum")
        }
        var trailer = SnapshotDecoder(Array(bytes.suffix(4)))
        let stored = try trailer.read(UInt32.self, "the checksum")
        guard CRC32.checksum(bytes.dropLast(4)) == stored else { throw SnapshotError.checksumMismatch }
        return Array(bytes[20..<(bytes.count - 4)])
    }

    public static func memoryHeader(snapshotID: [UInt8], memoryBytes: UInt64, format: UInt32) -> [UInt8] {
        var out = SnapshotEncoder()
        out.append(format)
        out.append(bytes: snapshotID)
        out.append(memoryBytes)
        var page = memoryMagic + out.bytes
        page += [UInt8](repeating: 0, count: Int(memoryOffset) - page.count)
        return page
    }

    /// Checks that a memory file's header and size belong to the state file.
    public static func checkMemoryHeader(_ header: [UInt8], fileSize: UInt64, snapshotID: [UInt8], memoryBytes: UInt64,
                                         format: UInt32) throws {
        guard header.count == Int(memoryOffset), Array(header.prefix(8)) == memoryMagic else {
            throw SnapshotError.memoryFileMismatch("it is not a kasa-vmm memory file")
        }
        var input = SnapshotDecoder(Array(header.dropFirst(8)))
        let found = try input.read(UInt32.self, "the memory file's format")
        guard found == format else { throw SnapshotError.memoryFileMismatch("format \(found), not \(format)") }
        guard try input.readBytes("the memory file's snapshot ID", limit: 64) == snapshotID else {
            throw SnapshotError.memoryFileMismatch("it was written by another snapshot")
        }
        let size = try input.read(UInt64.self, "the memory file's RAM size")
        guard size == memoryBytes else { throw SnapshotError.memoryFileMismatch("it holds \(size) bytes of RAM, the state \(memoryBytes)") }
        guard fileSize == memoryOffset + memoryBytes else {
            throw SnapshotError.memoryFileMismatch("it is \(fileSize) bytes long, not \(memoryOffset + memoryBytes)")
        }
    }

    /// Writes a snapshot into `directory` (created with mode 0700 if missing): the memory
    /// file's header, then `writeMemory` with the open file (RAM goes at `memoryOffset`),
    /// then the state file.
    public static func write(directory: String, state: [UInt8], memoryHeader: [UInt8],
                             writeMemory: (Int32) throws -> Void) throws {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw SnapshotError.io("cannot create \(directory): \(errorText())") }
        let memoryPath = directory + "/" + memoryName, statePath = directory + "/" + stateName
        let memoryTemporary = memoryPath + ".partial", stateTemporary = statePath + ".partial"
        do {
            let memory = try create(memoryTemporary)
            defer { close(memory) }
            try writeAll(memory, memoryHeader, path: memoryTemporary)
            try writeMemory(memory)
            let stateFile = try create(stateTemporary)
            defer { close(stateFile) }
            try writeAll(stateFile, state, path: stateTemporary)
            guard rename(memoryTemporary, memoryPath) == 0, rename(stateTemporary, statePath) == 0 else {
                throw SnapshotError.io("cannot move the snapshot into \(directory): \(errorText())")
            }
        } catch {
            unlink(memoryTemporary)
            unlink(stateTemporary)
            throw error
        }
    }

    /// The state file's bytes (at most 64 MiB).
    public static func readState(directory: String) throws -> [UInt8] {
        let path = directory + "/" + stateName
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw errno == ENOENT ? SnapshotError.notASnapshot(directory) : SnapshotError.io("cannot open \(path): \(errorText())")
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw SnapshotError.io("cannot read \(path): \(errorText())") }
            if count == 0 { return bytes }
            bytes += buffer[0..<count]
            guard bytes.count <= 64 << 20 else { throw SnapshotError.invalid("\(path) is larger than 64 MiB") }
        }
    }

    /// Opens the memory file read-only after checking it belongs to the state; the caller
    /// maps it (from `memoryOffset`) and closes it.
    public static func openMemory(directory: String, snapshotID: [UInt8], memoryBytes: UInt64, format: UInt32) throws -> Int32 {
        let path = directory + "/" + memoryName
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SnapshotError.io("cannot open the snapshot's memory file \(path): \(errorText())") }
        do {
            var header = [UInt8](repeating: 0, count: Int(memoryOffset))
            let count = header.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
            guard count == Int(memoryOffset) else { throw SnapshotError.memoryFileMismatch("\(path) is too short") }
            var status = stat()
            guard fstat(descriptor, &status) == 0 else { throw SnapshotError.io("cannot stat \(path): \(errorText())") }
            try checkMemoryHeader(header, fileSize: UInt64(status.st_size), snapshotID: snapshotID, memoryBytes: memoryBytes, format: format)
            return descriptor
        } catch {
            close(descriptor)
            throw error
        }
    }

    private static func create(_ path: String) throws -> Int32 {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SnapshotError.io("cannot create \(path): \(errorText())") }
        return descriptor
    }

    /// The whole of `bytes` from the start of a file just created.
    private static func writeAll(_ descriptor: Int32, _ bytes: [UInt8], path: String) throws {
        let code = DescriptorIO.write(descriptor, bytes, socket: false)
        guard code == 0 else { throw SnapshotError.io("cannot write \(path): \(String(cString: strerror(code)))") }
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}
