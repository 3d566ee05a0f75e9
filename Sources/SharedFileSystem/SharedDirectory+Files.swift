import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Open files: OPEN and OPENDIR, READ, WRITE, FSYNC, FLUSH, RELEASE, FALLOCATE, LSEEK, and
/// SETATTR (which may name one).
extension SharedDirectory {
    /// The host open(2) flags for the guest's: access mode, append, truncate and the sync
    /// flags; O_CREAT, O_EXCL, CLINUX_O_PATH, O_TMPFILE, O_NOATIME, O_DIRECT and the rest are not
    /// the guest's to choose here. A read-only export refuses writing (EROFS).
    static func hostOpenFlags(_ guestFlags: UInt32, readOnlyExport: Bool) throws(HostErrno) -> Int32 {
        let flags = Int32(bitPattern: guestFlags)
        let access = flags & O_ACCMODE
        guard access != O_ACCMODE else { throw HostErrno(EINVAL) }
        if readOnlyExport, access != O_RDONLY || flags & O_TRUNC != 0 { throw HostErrno(EROFS) }
        return flags & (O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC)
    }

    func openReplyFlags(directory: Bool) -> UInt32 {
        switch options.cache {
        case .never: return directory ? 0 : FUSE.OpenReplyFlag.directIO
        case .auto: return 0
        case .always: return directory ? FUSE.OpenReplyFlag.cacheDirectory : FUSE.OpenReplyFlag.keepCache
        }
    }

    /// Reopens a node for I/O through /proc/self/fd. Only regular files and directories:
    /// opening a FIFO would block a worker, and a symbolic link is never followed.
    func reopen(_ target: InodeTable.Node, flags: Int32) throws(HostErrno) -> HostDescriptor {
        switch target.kind {
        case S_IFREG: guard flags & O_DIRECTORY == 0 else { throw HostErrno(ENOTDIR) }
        case S_IFDIR: guard flags & O_ACCMODE == O_RDONLY else { throw HostErrno(EISDIR) }
        case S_IFLNK: throw HostErrno(ELOOP)
        default: throw HostErrno(ENXIO)
        }
        let descriptor = try HostCalls.withCString(HostCalls.procName(target.descriptor.raw)) { (pointer) throws(HostErrno) -> Int32 in
            let result = openat(procDescriptors.raw, pointer, flags | O_CLOEXEC)
            try HostCalls.check(result)
            return result
        }
        return HostDescriptor(descriptor)
    }

    func open(_ reader: inout FUSEReader, _ context: RequestContext, directory: Bool) throws -> [UInt8] {
        let guestFlags = try reader.u32()
        try reader.skip(4)
        let target = try node(context.nodeID)
        let flags = directory ? O_RDONLY | O_DIRECTORY : try SharedDirectory.hostOpenFlags(guestFlags, readOnlyExport: options.readOnly)
        if directory, target.kind != S_IFDIR { throw HostErrno(ENOTDIR) }
        if !directory, target.kind == S_IFDIR { throw HostErrno(EISDIR) }
        let opened = try reopen(target, flags: flags)
        let handle = try state.withLock { (state) throws(HostErrno) -> UInt64 in
            try state.handles.insert(opened, isDirectory: directory)
        }
        var writer = FUSEWriter(capacity: FUSE.openOutSize)
        writer.u64(handle)
        writer.u32(openReplyFlags(directory: directory))
        writer.u32(0)
        return writer.bytes
    }

    func handle(_ handle: UInt64, directory: Bool) throws(HostErrno) -> HostDescriptor {
        try state.withLock { (state) throws(HostErrno) -> HostDescriptor in
            try state.handles.handle(handle, directory: directory).descriptor
        }
    }

    /// READ: the data goes straight into the reply; returns its length.
    func read(_ reader: inout FUSEReader, _ context: RequestContext, io: some FUSEPayloadIO) throws -> Int {
        let handle = try reader.u64()
        let offset = try reader.u64()
        let size = Int(try reader.u32())
        let file = try self.handle(handle, directory: false)
        guard offset <= UInt64(Int64.max) else { throw HostErrno(EINVAL) }
        let count = min(size, context.replyCapacity, SharedDirectory.maximumWrite)
        guard count > 0 else { return 0 }
        return try io.readReplyData(count: count, from: file.raw, at: Int64(offset))
    }

    /// WRITE: the data comes straight from the request's buffers. A size beyond what the
    /// request carries is EINVAL.
    func write(_ reader: inout FUSEReader, _ context: RequestContext, io: some FUSEPayloadIO) throws -> [UInt8] {
        let handle = try reader.u64()
        let offset = try reader.u64()
        let size = Int(try reader.u32())
        try reader.skip(20)  // write_flags, lock_owner, flags, padding
        try requireWritable()
        let file = try self.handle(handle, directory: false)
        guard size <= io.payloadLength, size <= SharedDirectory.maximumWrite,
              offset <= UInt64(Int64.max) - UInt64(size) else { throw HostErrno(EINVAL) }
        let written = size == 0 ? 0 : try io.writePayload(count: size, to: file.raw, at: Int64(offset))
        var writer = FUSEWriter(capacity: 8)
        writer.u32(UInt32(written))
        writer.u32(0)
        return writer.bytes
    }

    func release(_ reader: inout FUSEReader, directory: Bool) throws -> [UInt8] {
        let handle = try reader.u64()
        try state.withLock { (state) throws(HostErrno) in try state.handles.remove(handle, directory: directory) }
        return []
    }

    func fsync(_ reader: inout FUSEReader, directory: Bool) throws -> [UInt8] {
        let handle = try reader.u64()
        let flags = try reader.u32()
        let file = try self.handle(handle, directory: directory)
        try HostCalls.check(flags & FUSE.fsyncDataOnly != 0 ? fdatasync(file.raw) : Glibc.fsync(file.raw))
        return []
    }

    /// FLUSH (each close(2) in the guest): nothing is buffered here, and locks are the
    /// guest's own; the handle must exist.
    func flush(_ reader: inout FUSEReader) throws -> [UInt8] {
        _ = try handle(try reader.u64(), directory: false)
        return []
    }

    /// FALLOCATE with the modes a POSIX workload uses: allocate (keeping the size or not),
    /// punch a hole, zero a range.
    func fallocate(_ reader: inout FUSEReader) throws -> [UInt8] {
        let handle = try reader.u64()
        let offset = try reader.u64()
        let length = try reader.u64()
        let mode = Int32(bitPattern: try reader.u32())
        try requireWritable()
        let keepSize: Int32 = 0x01, punchHole: Int32 = 0x02, zeroRange: Int32 = 0x10
        guard mode & ~(keepSize | punchHole | zeroRange) == 0 else { throw HostErrno(EOPNOTSUPP) }
        guard offset <= UInt64(Int64.max), length <= UInt64(Int64.max) else { throw HostErrno(EINVAL) }
        let file = try self.handle(handle, directory: false)
        try HostCalls.check(clinux_fallocate(file.raw, mode, Int64(offset), Int64(length)))
        return []
    }

    /// LSEEK: SEEK_DATA and SEEK_HOLE (the driver answers SET, CUR and END itself).
    func lseek(_ reader: inout FUSEReader) throws -> [UInt8] {
        let handle = try reader.u64()
        let offset = try reader.u64()
        let whence = Int32(bitPattern: try reader.u32())
        let seekData: Int32 = 3, seekHole: Int32 = 4
        guard whence == SEEK_SET || whence == SEEK_CUR || whence == SEEK_END || whence == seekData || whence == seekHole,
              offset <= UInt64(Int64.max) else { throw HostErrno(EINVAL) }
        let file = try self.handle(handle, directory: false)
        let result = Glibc.lseek(file.raw, off_t(offset), whence)
        guard result >= 0 else { throw HostErrno.current }
        var writer = FUSEWriter(capacity: 8)
        writer.u64(UInt64(result))
        return writer.bytes
    }

    /// One utimensat time from SETATTR: now, the time given, or left alone.
    static func timeChange(_ valid: UInt32, set: UInt32, now: UInt32, _ seconds: UInt64, _ nanoseconds: UInt32) -> (Int64, Int) {
        if valid & now != 0 { return (0, CLINUX_UTIME_NOW) }
        if valid & set != 0 { return (Int64(bitPattern: seconds), Int(min(nanoseconds, 999_999_999))) }
        return (0, CLINUX_UTIME_OMIT)
    }

    /// SETATTR: mode, owner, size, times, in that order, then the new attributes.
    func setattr(_ reader: inout FUSEReader, _ context: RequestContext) throws -> [UInt8] {
        let valid = try reader.u32()
        try reader.skip(4)
        let handle = try reader.u64()
        let size = try reader.u64()
        try reader.skip(8)  // lock_owner
        let atime = try reader.u64(), mtime = try reader.u64()
        try reader.skip(8)  // ctime: the host sets it
        let atimeNanoseconds = try reader.u32(), mtimeNanoseconds = try reader.u32()
        try reader.skip(4)
        let mode = try reader.u32()
        try reader.skip(4)
        let uid = try reader.u32(), gid = try reader.u32()
        typealias Valid = FUSE.SetattrValid
        let changes = Valid.mode | Valid.uid | Valid.gid | Valid.size | Valid.atime | Valid.mtime | Valid.atimeNow | Valid.mtimeNow
        let target = try node(context.nodeID)
        if valid & changes != 0 { try requireWritable() }
        let procName = HostCalls.procName(target.descriptor.raw)
        if valid & Valid.mode != 0 {
            guard target.kind != S_IFLNK else { throw HostErrno(EOPNOTSUPP) }
            try HostCalls.withCString(procName) { (pointer) throws(HostErrno) in
                try HostCalls.check(fchmodat(procDescriptors.raw, pointer, mode & 0o7777, 0))
            }
        }
        if valid & (Valid.uid | Valid.gid) != 0 {
            try HostCalls.check(fchownat(target.descriptor.raw, "", valid & Valid.uid != 0 ? uid : uid_t.max,
                                         valid & Valid.gid != 0 ? gid : gid_t.max, CLINUX_AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
        }
        if valid & Valid.size != 0 {
            guard target.kind == S_IFREG else { throw HostErrno(target.kind == S_IFDIR ? EISDIR : EINVAL) }
            guard size <= UInt64(Int64.max) else { throw HostErrno(EFBIG) }
            let file: HostDescriptor
            if valid & Valid.fileHandle != 0, let open = try? self.handle(handle, directory: false) {
                file = open
            } else {
                file = try reopen(target, flags: O_WRONLY)
            }
            try HostCalls.check(ftruncate(file.raw, off_t(size)))
        }
        if valid & (Valid.atime | Valid.mtime | Valid.atimeNow | Valid.mtimeNow) != 0 {
            let access = SharedDirectory.timeChange(valid, set: Valid.atime, now: Valid.atimeNow, atime, atimeNanoseconds)
            let modification = SharedDirectory.timeChange(valid, set: Valid.mtime, now: Valid.mtimeNow, mtime, mtimeNanoseconds)
            if target.kind == S_IFLNK {
                try HostCalls.check(clinux_utimensat(target.descriptor.raw, "", access.0, access.1, modification.0, modification.1,
                                                     CLINUX_AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
            } else {
                try HostCalls.withCString(procName) { (pointer) throws(HostErrno) in
                    try HostCalls.check(clinux_utimensat(procDescriptors.raw, pointer, access.0, access.1,
                                                         modification.0, modification.1, 0))
                }
            }
        }
        return attrOut(try HostCalls.status(target.descriptor.raw))
    }
}
