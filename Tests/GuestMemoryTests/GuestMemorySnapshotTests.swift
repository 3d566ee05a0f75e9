import Glibc
import GuestMemory
import Testing

/// Guest RAM written to a snapshot's memory file and mapped back copy-on-write.
@Suite struct GuestMemorySnapshotTests {
    let ranges: [(start: GuestAddress, size: UInt64)] = [(GuestAddress(0), 1 << 20), (GuestAddress(0x1000_0000), 1 << 20)]
    let offset: UInt64 = 4096

    func temporaryFile() throws -> (Int32, String) {
        var template = Array("/tmp/kasa-memory-XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(descriptor >= 0)
        return (descriptor, String(cString: template))
    }

    @Test func writtenPagesComeBackAndZeroPagesStayHoles() throws {
        let memory = try GuestMemory(ranges: ranges)
        try memory.write(bytes: Array(repeating: 0xA5, count: 4096), at: GuestAddress(0x3000))
        try memory.write(UInt64(0x1122_3344_5566_7788), at: GuestAddress(0x1000_0000 + 0x8_0008))
        // Written, then zeroed again: data for the kernel, but nothing to store.
        try memory.write(bytes: Array(repeating: 0x01, count: 4096), at: GuestAddress(0x5000))
        try memory.fill(0, at: GuestAddress(0x5000), count: 4096)
        let (file, path) = try temporaryFile()
        defer { close(file); unlink(path) }

        let written = try memory.writeSnapshot(to: file, offset: offset)
        #expect(written == 2 * 4096, "only the two non-zero pages are stored")
        var status = stat()
        #expect(fstat(file, &status) == 0)
        #expect(UInt64(status.st_size) == offset + (2 << 20))
        #expect(status.st_blocks * 512 <= 64 * 1024, "the zero pages are holes (allocated: \(status.st_blocks * 512) bytes)")

        let restored = try GuestMemory(ranges: ranges, restoringFrom: file, offset: offset)
        #expect(try restored.readBytes(at: GuestAddress(0x3000), count: 4096) == Array(repeating: 0xA5, count: 4096))
        #expect(try restored.read(UInt64.self, at: GuestAddress(0x1000_0000 + 0x8_0008)) == 0x1122_3344_5566_7788)
        #expect(try restored.readBytes(at: GuestAddress(0x5000), count: 4096) == Array(repeating: 0, count: 4096))
    }

    @Test func aCloneWritingItsMemoryLeavesTheFileAlone() throws {
        let memory = try GuestMemory(ranges: ranges)
        try memory.write(bytes: Array(repeating: 0x5A, count: 8192), at: GuestAddress(0x10000))
        let (file, path) = try temporaryFile()
        defer { close(file); unlink(path) }
        try memory.writeSnapshot(to: file, offset: offset)

        let clone = try GuestMemory(ranges: ranges, restoringFrom: file, offset: offset)
        let sibling = try GuestMemory(ranges: ranges, restoringFrom: file, offset: offset)
        try clone.write(bytes: Array(repeating: 0xEE, count: 8192), at: GuestAddress(0x10000))
        try clone.write(UInt32(7), at: GuestAddress(0x2000))
        #expect(try sibling.readBytes(at: GuestAddress(0x10000), count: 8192) == Array(repeating: 0x5A, count: 8192))
        #expect(try sibling.read(UInt32.self, at: GuestAddress(0x2000)) == 0)
        var stored = [UInt8](repeating: 0, count: 8192)
        #expect(stored.withUnsafeMutableBytes { pread(file, $0.baseAddress, 8192, off_t(offset + 0x10000)) } == 8192)
        #expect(stored == Array(repeating: 0x5A, count: 8192), "the memory file changed under a clone's write")
    }
}
