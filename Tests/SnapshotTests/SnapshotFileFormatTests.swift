import Snapshot
import Testing

/// The state file's container and the memory file's header: a damaged or foreign file is a
/// clear error, never a crash or a silently wrong restore.
@Suite struct SnapshotFileFormatTests {
    let format: UInt32 = 7
    let payload = Array("the VM's state".utf8)

    @Test func crc32MatchesTheStandardCheckValue() {
        // The check value of CRC-32/ISO-HDLC for "123456789".
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test func stateRoundTrips() throws {
        let file = SnapshotFiles.encodeState(payload, format: format)
        #expect(try SnapshotFiles.decodeState(file, path: "s", format: format) == payload)
    }

    @Test func everyFlippedByteIsCaught() {
        let file = SnapshotFiles.encodeState(payload, format: format)
        for index in file.indices {
            var damaged = file
            damaged[index] ^= 0x10
            #expect(throws: SnapshotError.self, "byte \(index) flipped") {
                try SnapshotFiles.decodeState(damaged, path: "s", format: format)
            }
        }
    }

    @Test func truncatedAndForeignFilesAreNamed() {
        let file = SnapshotFiles.encodeState(payload, format: format)
        #expect(throws: SnapshotError.truncated("the payload")) {
            try SnapshotFiles.decodeState(Array(file.dropLast(5)), path: "s", format: format)
        }
        #expect(throws: SnapshotError.invalid("bytes after the checksum")) {
            try SnapshotFiles.decodeState(file + [0], path: "s", format: format)
        }
        #expect(throws: SnapshotError.notASnapshot("s")) {
            try SnapshotFiles.decodeState(Array("#!/bin/sh\necho not a snapshot\n".utf8), path: "s", format: format)
        }
        #expect(throws: SnapshotError.unsupportedFormat(found: format, supported: format + 1)) {
            try SnapshotFiles.decodeState(file, path: "s", format: format + 1)
        }
    }

    @Test func memoryHeaderBelongsToOneSnapshot() throws {
        let id = [UInt8](repeating: 0xAB, count: 16)
        let header = SnapshotFiles.memoryHeader(snapshotID: id, memoryBytes: 1 << 20, format: format)
        #expect(header.count == Int(SnapshotFiles.memoryOffset))
        let fullSize = SnapshotFiles.memoryOffset + (1 << 20)
        try SnapshotFiles.checkMemoryHeader(header, fileSize: fullSize, snapshotID: id, memoryBytes: 1 << 20, format: format)
        #expect(throws: SnapshotError.memoryFileMismatch("it was written by another snapshot")) {
            try SnapshotFiles.checkMemoryHeader(header, fileSize: fullSize, snapshotID: [UInt8](repeating: 1, count: 16),
                                                memoryBytes: 1 << 20, format: format)
        }
        #expect(throws: SnapshotError.self) {
            try SnapshotFiles.checkMemoryHeader(header, fileSize: fullSize - 4096, snapshotID: id, memoryBytes: 1 << 20, format: format)
        }
        #expect(throws: SnapshotError.self) {
            try SnapshotFiles.checkMemoryHeader(header, fileSize: fullSize, snapshotID: id, memoryBytes: 2 << 20, format: format)
        }
    }

    @Test func decoderRefusesLengthsBeyondTheData() {
        var encoder = SnapshotEncoder()
        encoder.append(UInt64.max)  // a byte string claiming 2^64-1 bytes
        var decoder = SnapshotDecoder(encoder.bytes)
        #expect(throws: SnapshotError.self) { try decoder.readBytes("a blob") }
        var counts = SnapshotDecoder([0xFF, 0xFF, 0x00, 0x00])
        #expect(throws: SnapshotError.self) { try counts.readCount("items", limit: 1 << 20, minimumItemSize: 8) }
        var booleans = SnapshotDecoder([2])
        #expect(throws: SnapshotError.invalid("a flag is not a boolean")) { try booleans.readBool("a flag") }
    }

    @Test func encoderAndDecoderAgree() throws {
        var encoder = SnapshotEncoder()
        encoder.append(UInt8(0x12))
        encoder.append(UInt16(0x3456))
        encoder.append(UInt32(0x789A_BCDE))
        encoder.append(UInt64(0x0102_0304_0506_0708))
        encoder.append(true)
        encoder.append("kasa")
        encoder.append(optional: nil)
        encoder.append(optional: "vm")
        var decoder = SnapshotDecoder(encoder.bytes)
        #expect(try decoder.read(UInt8.self, "") == 0x12)
        #expect(try decoder.read(UInt16.self, "") == 0x3456)
        #expect(try decoder.read(UInt32.self, "") == 0x789A_BCDE)
        #expect(try decoder.read(UInt64.self, "") == 0x0102_0304_0506_0708)
        #expect(try decoder.readBool(""))
        #expect(try decoder.readString("") == "kasa")
        #expect(try decoder.readOptionalString("") == nil)
        #expect(try decoder.readOptionalString("") == "vm")
        #expect(decoder.isAtEnd)
    }
}
