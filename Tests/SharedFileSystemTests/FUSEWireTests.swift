import Foundation
import SharedFileSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The FUSE structures byte for byte, as include/uapi/linux/fuse.h lays them out: what the
/// Linux driver sends and what it reads back.
@Suite struct FUSEWireTests {
    @Test func inHeaderEncodesAndDecodesLittleEndianIn40Bytes() throws {
        let header = FUSEInHeader(length: 0x1122_3344, opcode: 1, unique: 0x0102_0304_0506_0708, nodeID: 0xAABB, uid: 1000, gid: 100, pid: 7)
        let bytes = header.encoded
        #expect(bytes.count == FUSE.inHeaderSize)
        #expect(Array(bytes[0..<4]) == [0x44, 0x33, 0x22, 0x11])
        #expect(Array(bytes[4..<8]) == [1, 0, 0, 0])
        #expect(Array(bytes[8..<16]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(bytes[16..<24]) == [0xBB, 0xAA, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[24..<36]) == [0xE8, 3, 0, 0, 100, 0, 0, 0, 7, 0, 0, 0])
        #expect(Array(bytes[36..<40]) == [0, 0, 0, 0])
        var reader = FUSEReader(bytes)
        #expect(try FUSEInHeader(&reader) == header)
        var short = FUSEReader(Array(bytes.prefix(39)))
        #expect(throws: FUSEError.truncated(needed: 4, available: 3)) { try FUSEInHeader(&short) }
    }

    @Test func outHeaderCarriesANegatedErrno() throws {
        let header = FUSEOutHeader(length: 16, error: -ENOENT, unique: 9)
        #expect(header.encoded == [16, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF, 9, 0, 0, 0, 0, 0, 0, 0])
        #expect(try FUSEOutHeader(header.encoded) == header)
    }

    @Test func stringsNeedTheirNulAndReadsStopAtTheEnd() throws {
        var reader = FUSEReader(Array("name\u{0}rest".utf8))
        #expect(try reader.cString() == Array("name".utf8))
        #expect(throws: FUSEError.self) { try reader.cString() }
        var numbers = FUSEReader([1, 0, 0, 0, 2])
        #expect(try numbers.u32() == 1)
        #expect(throws: FUSEError.self) { try numbers.u16() }
        #expect(throws: FUSEError.self) { try numbers.raw(2) }
    }

    /// fuse_entry_out (128 bytes) and fuse_attr within it, for a file of known attributes.
    @Test func entryOutLaysTheAttributesOutAsTheDriverReadsThem() throws {
        let client = try FUSETestClient(options: SharedDirectoryOptions(cache: .always))
        #expect(FileManager.default.createFile(atPath: client.host("f"), contents: Data(count: 5000)))
        #expect(chmod(client.host("f"), 0o640) == 0 && chown(client.host("f"), 12, 34) == 0)
        var status = stat()
        #expect(stat(client.host("f"), &status) == 0)
        let entry = client.lookup("f")
        #expect(entry.body.count == FUSE.entryOutSize)
        #expect(entry.u64(at: 8) == 0, "generation")
        #expect(entry.u64(at: 16) == 86_400 && entry.u64(at: 24) == 86_400, "cache=always: a day")
        #expect(entry.u64(at: 40) == UInt64(status.st_ino))
        #expect(entry.u64(at: 48) == 5000)
        #expect(entry.u64(at: 56) == UInt64(status.st_blocks))
        #expect(entry.u64(at: 72) == UInt64(status.st_mtim.tv_sec) && entry.u32(at: 92) == UInt32(status.st_mtim.tv_nsec))
        #expect(entry.u32(at: 100) == 0o100640 && entry.u32(at: 104) == 1)
        #expect(entry.u32(at: 108) == 12 && entry.u32(at: 112) == 34)
        #expect(entry.u32(at: 120) == UInt32(status.st_blksize))
    }

    /// fuse_dirent records: ino, off, namelen, type, the name, padded to 8 bytes; each
    /// record's off resumes the listing after it.
    @Test func readdirPacksRecordsTo8ByteBoundaries() throws {
        let client = try FUSETestClient()
        #expect(FileManager.default.createFile(atPath: client.host("abc"), contents: nil))
        try FileManager.default.createDirectory(atPath: client.host("sub"), withIntermediateDirectories: false)
        let opened = client.call(.opendir, node: FUSE.rootNodeID, Arguments().u32(0).u32(0))
        let handle = opened.u64(at: 0)
        let listing = client.call(.readdir, node: FUSE.rootNodeID,
                                  Arguments().u64(handle).u64(0).u32(4096).u32(0).u64(0).u32(0).u32(0))
        #expect(listing.error == 0 && listing.body.count % 8 == 0)
        var records: [String: (type: UInt32, next: UInt64)] = [:]
        var position = 0
        while position < listing.body.count {
            let length = Int(listing.u32(at: position + 16))
            let name = String(decoding: listing.body[(position + 24)..<(position + 24 + length)], as: UTF8.self)
            records[name] = (listing.u32(at: position + 20), listing.u64(at: position + 8))
            let padded = (24 + length + 7) / 8 * 8
            #expect(listing.body[(position + 24 + length)..<(position + padded)].allSatisfy { $0 == 0 }, "padding is zeros")
            position += padded
        }
        #expect(Set(records.keys) == [".", "..", "abc", "sub"])
        #expect(records["abc"]?.type == UInt32(DT_REG) && records["sub"]?.type == UInt32(DT_DIR))
        // A reply too small for one record is empty, not an error, and not a partial record.
        let tiny = client.call(.readdir, node: FUSE.rootNodeID, Arguments().u64(handle).u64(0).u32(20).u32(0).u64(0).u32(0).u32(0))
        #expect(tiny.error == 0 && tiny.body.isEmpty)
        // Resuming at a record's offset lists only what follows it.
        let resumeAt = try #require(records["abc"]?.next)
        let rest = client.call(.readdir, node: FUSE.rootNodeID,
                               Arguments().u64(handle).u64(resumeAt).u32(4096).u32(0).u64(0).u32(0).u32(0))
        #expect(!String(decoding: rest.body, as: UTF8.self).contains("abc"))
    }
}
