/// The FUSE wire protocol as the Linux virtiofs driver speaks it (include/uapi/linux/fuse.h,
/// protocol 7.x): opcodes, flags and the fixed sizes of the structures this server reads
/// and writes. Every integer is little-endian on x86-64, the only guest architecture.
public enum FUSEOpcode: UInt32, Sendable {
    case lookup = 1, forget = 2, getattr = 3, setattr = 4, readlink = 5, symlink = 6
    case mknod = 8, mkdir = 9, unlink = 10, rmdir = 11, rename = 12, link = 13
    case open = 14, read = 15, write = 16, statfs = 17, release = 18, fsync = 20
    case setxattr = 21, getxattr = 22, listxattr = 23, removexattr = 24, flush = 25, `init` = 26
    case opendir = 27, readdir = 28, releasedir = 29, fsyncdir = 30
    case getlk = 31, setlk = 32, setlkw = 33, access = 34, create = 35, interrupt = 36
    case bmap = 37, destroy = 38, ioctl = 39, poll = 40, notifyReply = 41, batchForget = 42
    case fallocate = 43, readdirplus = 44, rename2 = 45, lseek = 46, copyFileRange = 47
    case setupMapping = 48, removeMapping = 49, syncfs = 50, tmpfile = 51
}

public enum FUSE {
    /// The protocol's major version; a driver with another major is refused.
    public static let majorVersion: UInt32 = 7
    /// The minor version this server implements: the driver uses min(its own, ours). 7.31
    /// has every request the POSIX list needs (READDIRPLUS 7.21, RENAME2 7.23,
    /// LSEEK 7.24) with today's structure sizes (umask in creates since 7.12).
    public static let minorVersion: UInt32 = 31
    /// The root directory's node ID (FUSE_ROOT_ID).
    public static let rootNodeID: UInt64 = 1

    public static let inHeaderSize = 40
    public static let outHeaderSize = 16
    public static let attrSize = 88
    public static let entryOutSize = 40 + attrSize
    public static let attrOutSize = 16 + attrSize
    public static let openOutSize = 16
    public static let initOutSize = 64
    public static let statfsOutSize = 80
    public static let direntHeaderSize = 24

    /// INIT flags (fuse_init_in/out.flags) this server uses.
    public enum InitFlag {
        public static let asyncRead: UInt32 = 1 << 0
        public static let atomicOTrunc: UInt32 = 1 << 3
        public static let bigWrites: UInt32 = 1 << 5
        public static let autoInvalidateData: UInt32 = 1 << 12
        public static let doReaddirplus: UInt32 = 1 << 13
        public static let readdirplusAuto: UInt32 = 1 << 14
        public static let parallelDirops: UInt32 = 1 << 18
        public static let cacheSymlinks: UInt32 = 1 << 23
    }

    /// fuse_setattr_in.valid bits.
    public enum SetattrValid {
        public static let mode: UInt32 = 1 << 0, uid: UInt32 = 1 << 1, gid: UInt32 = 1 << 2, size: UInt32 = 1 << 3
        public static let atime: UInt32 = 1 << 4, mtime: UInt32 = 1 << 5, fileHandle: UInt32 = 1 << 6
        public static let atimeNow: UInt32 = 1 << 7, mtimeNow: UInt32 = 1 << 8, lockOwner: UInt32 = 1 << 9
        public static let ctime: UInt32 = 1 << 10, killSUIDGID: UInt32 = 1 << 11
    }

    /// fuse_open_out.open_flags bits.
    public enum OpenReplyFlag {
        public static let directIO: UInt32 = 1 << 0, keepCache: UInt32 = 1 << 1, cacheDirectory: UInt32 = 1 << 3
    }

    /// fuse_getattr_in.getattr_flags: the request names an open file handle.
    public static let getattrFileHandle: UInt32 = 1 << 0
    /// fuse_fsync_in.fsync_flags: data only (fdatasync).
    public static let fsyncDataOnly: UInt32 = 1 << 0
}

/// fuse_in_header: what every request begins with.
public struct FUSEInHeader: Equatable, Sendable {
    public var length: UInt32
    public var opcode: UInt32
    public var unique: UInt64
    public var nodeID: UInt64
    public var uid: UInt32
    public var gid: UInt32
    public var pid: UInt32

    public init(length: UInt32, opcode: UInt32, unique: UInt64, nodeID: UInt64, uid: UInt32 = 0, gid: UInt32 = 0, pid: UInt32 = 0) {
        self.length = length
        self.opcode = opcode
        self.unique = unique
        self.nodeID = nodeID
        self.uid = uid
        self.gid = gid
        self.pid = pid
    }

    /// Decodes the first 40 bytes; the rest of the request is the caller's.
    public init(_ reader: inout FUSEReader) throws(FUSEError) {
        length = try reader.u32()
        opcode = try reader.u32()
        unique = try reader.u64()
        nodeID = try reader.u64()
        uid = try reader.u32()
        gid = try reader.u32()
        pid = try reader.u32()
        try reader.skip(4)  // total_extlen and padding: no request extensions are negotiated
    }

    public var encoded: [UInt8] {
        var writer = FUSEWriter()
        writer.u32(length); writer.u32(opcode); writer.u64(unique); writer.u64(nodeID)
        writer.u32(uid); writer.u32(gid); writer.u32(pid); writer.u32(0)
        return writer.bytes
    }
}

/// fuse_out_header, written before every reply's payload.
public struct FUSEOutHeader: Equatable, Sendable {
    public var length: UInt32
    /// 0 or a negated errno.
    public var error: Int32
    public var unique: UInt64

    public init(length: UInt32, error: Int32, unique: UInt64) {
        self.length = length
        self.error = error
        self.unique = unique
    }

    public init(_ bytes: [UInt8]) throws(FUSEError) {
        var reader = FUSEReader(bytes)
        length = try reader.u32()
        error = Int32(bitPattern: try reader.u32())
        unique = try reader.u64()
    }

    public var encoded: [UInt8] {
        var writer = FUSEWriter()
        writer.u32(length); writer.u32(UInt32(bitPattern: error)); writer.u64(unique)
        return writer.bytes
    }
}

/// Why a request could not even be decoded; the device answers it with EINVAL or drops it.
public enum FUSEError: Error, Equatable, Sendable {
    case truncated(needed: Int, available: Int)
    case badName
}

/// Little-endian fields read in order from a request, every read bounds-checked.
public struct FUSEReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }

    mutating func take(_ count: Int) throws(FUSEError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else { throw .truncated(needed: count, available: remaining) }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    public mutating func skip(_ count: Int) throws(FUSEError) { _ = try take(count) }

    public mutating func u16() throws(FUSEError) -> UInt16 {
        let part = try take(2)
        return part.reversed().reduce(0) { $0 << 8 | UInt16($1) }
    }

    public mutating func u32() throws(FUSEError) -> UInt32 {
        let part = try take(4)
        return part.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    public mutating func u64() throws(FUSEError) -> UInt64 {
        let part = try take(8)
        return part.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// A NUL-terminated string (a name, a link target, an xattr name); the NUL is consumed.
    public mutating func cString() throws(FUSEError) -> [UInt8] {
        guard let end = bytes[offset...].firstIndex(of: 0) else { throw .truncated(needed: remaining + 1, available: remaining) }
        let value = Array(bytes[offset..<end])
        offset = end + 1
        return value
    }

    /// The next `count` bytes as they are (an xattr value).
    public mutating func raw(_ count: Int) throws(FUSEError) -> [UInt8] { Array(try take(count)) }
}

/// Little-endian fields appended in order to a reply.
public struct FUSEWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    public mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    public mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    public mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    public mutating func zeros(_ count: Int) { bytes += repeatElement(0, count: count) }
    public mutating func append(_ other: some Sequence<UInt8>) { bytes += other }
    /// Pads with zeros to the next multiple of eight (dirent records).
    public mutating func alignTo8() { zeros((8 - bytes.count % 8) % 8) }
}
