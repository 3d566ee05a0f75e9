import CLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How long the guest may keep names and attributes without asking again: Kata's
/// `virtio_fs_cache` modes.
public enum SharedFileSystemCache: String, Sendable, CaseIterable {
    /// Nothing cached: every stat and open asks the host, file data bypasses the guest's
    /// page cache (DIRECT_IO). Changes on either side are seen at once.
    case never
    /// Names and attributes for a second; file data cached until the file changes.
    case auto
    /// Everything cached for a day: fastest, for exports nothing else writes.
    case always

    var timeoutSeconds: UInt64 {
        switch self {
        case .never: return 0
        case .auto: return 1
        case .always: return 86_400
        }
    }
}

public struct SharedDirectoryOptions: Sendable {
    public var readOnly: Bool
    public var cache: SharedFileSystemCache
    /// Nodes the guest may hold at once (each is an CLINUX_O_PATH descriptor in kasa-vmm).
    public var maximumNodes: Int
    /// Open files and directories the guest may hold at once.
    public var maximumHandles: Int

    public init(readOnly: Bool = false, cache: SharedFileSystemCache = .auto, maximumNodes: Int = 65_536, maximumHandles: Int = 4_096) {
        self.readOnly = readOnly
        self.cache = cache
        self.maximumNodes = maximumNodes
        self.maximumHandles = maximumHandles
    }
}

/// Where a READ's data goes and a WRITE's data comes from: the guest's own buffers in the
/// device (vectored I/O straight between file and guest memory), plain bytes in tests.
public protocol FUSEPayloadIO {
    /// Bytes the request carries after its arguments (a WRITE's data).
    var payloadLength: Int { get }
    /// Writes the first `count` payload bytes to `descriptor` at `offset`; bytes written.
    func writePayload(count: Int, to descriptor: Int32, at offset: Int64) throws(HostErrno) -> Int
    /// Reads up to `count` bytes from `descriptor` at `offset` into the reply, right after
    /// its header; bytes read (fewer at the end of the file).
    func readReplyData(count: Int, from descriptor: Int32, at offset: Int64) throws(HostErrno) -> Int
}

/// A reply: the header's error, the bytes after the header, and how many bytes
/// `readReplyData` already placed there (a READ's data), counted in the header's length.
public struct FUSEReply: Equatable, Sendable {
    public var unique: UInt64
    public var error: Int32
    public var body: [UInt8]
    public var dataLength: Int

    public init(unique: UInt64, error: Int32, body: [UInt8] = [], dataLength: Int = 0) {
        self.unique = unique
        self.error = error
        self.body = body
        self.dataLength = dataLength
    }

    public var header: FUSEOutHeader {
        FUSEOutHeader(length: UInt32(FUSE.outHeaderSize + body.count + dataLength), error: error, unique: unique)
    }
}

/// A FUSE file system server exporting one host directory to one guest: what kasa-vmm's
/// virtio-fs device runs. Safe to call from several threads at once; the tables are under
/// one lock, file I/O runs outside it.
public final class SharedDirectory: Sendable {
    let options: SharedDirectoryOptions
    /// /proc/self/fd, to reopen our own CLINUX_O_PATH descriptors for I/O (HostCalls.procName).
    let procDescriptors: HostDescriptor
    let state: Mutex<State>

    struct State: ~Copyable {
        var inodes: InodeTable
        var handles: HandleTable
        /// INIT answered (and no DESTROY since): other requests before it are EIO.
        var initialized = false
    }

    /// Exports `path` (a directory, given by the host). Throws the errno of a failed open.
    public init(path: String, options: SharedDirectoryOptions = SharedDirectoryOptions()) throws(HostErrno) {
        self.options = options
        let root = Glibc.open(path, CLINUX_O_PATH | O_DIRECTORY | O_CLOEXEC)
        try HostCalls.check(root)
        let proc = Glibc.open("/proc/self/fd", CLINUX_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard proc >= 0 else {
            let failure = HostErrno.current
            close(root)
            throw failure
        }
        procDescriptors = HostDescriptor(proc)
        let rootStatus: stat
        do throws(HostErrno) { rootStatus = try HostCalls.status(root) } catch {
            close(root)
            throw error
        }
        state = Mutex(State(inodes: InodeTable(rootDescriptor: root, rootStat: rootStatus, limit: options.maximumNodes),
                            handles: HandleTable(limit: options.maximumHandles)))
    }

    /// Nodes and open handles the guest holds now (tests, limits).
    public var counts: (nodes: Int, handles: Int) { state.withLock { ($0.inodes.count, $0.handles.count) } }

    /// No FUSE session: the guest has not mounted the export (no INIT since the last reset
    /// or DESTROY) and holds no node or handle. Nothing of the host is in the guest's hands,
    /// so a snapshot may be taken and a clone may serve another directory.
    public var isIdle: Bool {
        state.withLock { !$0.initialized && $0.inodes.count == 0 && $0.handles.count == 0 }
    }

    /// Drops every node and handle (the device was reset): the next request must be INIT.
    public func reset() {
        state.withLock {
            $0.inodes.forgetAll()
            $0.handles.removeAll()
            $0.initialized = false
        }
    }

    /// Serves one request: `request` is its header and arguments (a WRITE's data comes
    /// through `io`); `replyCapacity` bytes fit after the reply header. nil: no reply is
    /// due (FORGET, BATCH_FORGET, INTERRUPT) or the header itself is incomplete.
    public func serve(_ request: [UInt8], replyCapacity: Int, io: some FUSEPayloadIO) -> FUSEReply? {
        var reader = FUSEReader(request)
        guard let header = try? FUSEInHeader(&reader) else { return nil }
        func reply(_ error: Int32, _ body: [UInt8] = [], data: Int = 0) -> FUSEReply {
            FUSEReply(unique: header.unique, error: error, body: body, dataLength: data)
        }
        guard let opcode = FUSEOpcode(rawValue: header.opcode) else { return reply(-ENOSYS) }
        switch opcode {
        case .forget:
            if let count = try? reader.u64() { state.withLock { $0.inodes.forget(header.nodeID, count: count) } }
            return nil
        case .batchForget:
            batchForget(&reader)
            return nil
        case .interrupt:
            // Requests run to completion; an interrupt has nothing to stop and no reply.
            return nil
        default:
            break
        }
        do {
            if opcode == .`init` { return reply(0, try initialize(&reader)) }
            guard state.withLock({ $0.initialized }) else { return reply(-EIO) }
            let context = RequestContext(header: header, replyCapacity: max(0, replyCapacity))
            if opcode == .read {
                return reply(0, data: try read(&reader, context, io: io))
            }
            return reply(0, try dispatch(opcode, &reader, context, io: io))
        } catch let failure as HostErrno {
            return reply(-failure.code)
        } catch {
            // An argument shorter than its structure, a string without its NUL.
            return reply(-EINVAL)
        }
    }

    struct RequestContext {
        let header: FUSEInHeader
        let replyCapacity: Int
        var nodeID: UInt64 { header.nodeID }
    }

    private func dispatch(_ opcode: FUSEOpcode, _ reader: inout FUSEReader, _ context: RequestContext,
                          io: some FUSEPayloadIO) throws -> [UInt8] {
        switch opcode {
        case .lookup: return try lookupReply(parent: context.nodeID, name: try reader.cString())
        case .getattr: return try getattr(&reader, context)
        case .setattr: return try setattr(&reader, context)
        case .readlink: return try readlink(context)
        case .symlink: return try symlink(&reader, context)
        case .mknod: return try mknod(&reader, context)
        case .mkdir: return try mkdir(&reader, context)
        case .unlink: return try remove(&reader, context, directory: false)
        case .rmdir: return try remove(&reader, context, directory: true)
        case .rename: return try rename(&reader, context, hasFlags: false)
        case .rename2: return try rename(&reader, context, hasFlags: true)
        case .link: return try link(&reader, context)
        case .open: return try open(&reader, context, directory: false)
        case .opendir: return try open(&reader, context, directory: true)
        case .write: return try write(&reader, context, io: io)
        case .statfs: return try statfs(context)
        case .release: return try release(&reader, directory: false)
        case .releasedir: return try release(&reader, directory: true)
        case .fsync: return try fsync(&reader, directory: false)
        case .fsyncdir: return try fsync(&reader, directory: true)
        case .flush: return try flush(&reader)
        case .readdir: return try readdir(&reader, context, plus: false)
        case .readdirplus: return try readdir(&reader, context, plus: true)
        case .access: return try access(&reader, context)
        case .create: return try create(&reader, context)
        case .fallocate: return try fallocate(&reader)
        case .lseek: return try lseek(&reader)
        case .getxattr: return try getxattr(&reader, context, list: false)
        case .listxattr: return try getxattr(&reader, context, list: true)
        case .setxattr: return try setxattr(&reader, context)
        case .removexattr: return try removexattr(&reader, context)
        case .destroy:
            state.withLock {
                $0.inodes.forgetAll()
                $0.handles.removeAll()
                $0.initialized = false
            }
            return []
        default:
            // Locks are the guest kernel's own (POSIX_LOCKS not offered); no ioctl, poll,
            // DAX mapping, copy_file_range or tmpfile: the driver falls back or reports.
            throw HostErrno(ENOSYS)
        }
    }

    /// INIT: agree on the protocol. A driver of another major version is refused (EPROTO).
    private func initialize(_ reader: inout FUSEReader) throws -> [UInt8] {
        let major = try reader.u32()
        let minor = try reader.u32()
        let readahead = try reader.u32()
        let flags = try reader.u32()
        guard major == FUSE.majorVersion else { throw HostErrno(EPROTO) }
        var wanted = FUSE.InitFlag.asyncRead | FUSE.InitFlag.atomicOTrunc | FUSE.InitFlag.bigWrites
            | FUSE.InitFlag.doReaddirplus | FUSE.InitFlag.readdirplusAuto | FUSE.InitFlag.parallelDirops
        if options.cache != .never { wanted |= FUSE.InitFlag.autoInvalidateData | FUSE.InitFlag.cacheSymlinks }
        var writer = FUSEWriter(capacity: FUSE.initOutSize)
        writer.u32(FUSE.majorVersion)
        writer.u32(min(minor, FUSE.minorVersion))
        writer.u32(readahead)
        writer.u32(flags & wanted)
        writer.u16(16)  // max_background
        writer.u16(12)  // congestion_threshold
        writer.u32(UInt32(SharedDirectory.maximumWrite))
        writer.u32(1)  // time_gran: nanoseconds
        writer.zeros(FUSE.initOutSize - writer.bytes.count)  // max_pages (not negotiated), map_alignment, flags2, unused
        state.withLock { $0.initialized = true }
        return writer.bytes
    }

    /// The largest WRITE the driver may send (and the largest READ answered): 32 pages,
    /// Linux's default when FUSE_MAX_PAGES is not negotiated.
    public static let maximumWrite = 128 * 1024

    private func batchForget(_ reader: inout FUSEReader) {
        guard let count = try? reader.u32(), (try? reader.skip(4)) != nil else { return }
        // The count is the guest's: the loop stops at the request's end whatever it says.
        var pairs: [(UInt64, UInt64)] = []
        for _ in 0..<min(Int(count), reader.remaining / 16) {
            guard let node = try? reader.u64(), let lookups = try? reader.u64() else { break }
            pairs.append((node, lookups))
        }
        state.withLock { state in
            for (node, lookups) in pairs { state.inodes.forget(node, count: lookups) }
        }
    }

    // MARK: - Nodes and attributes

    func node(_ nodeID: UInt64) throws(HostErrno) -> InodeTable.Node {
        try state.withLock { (state) throws(HostErrno) -> InodeTable.Node in try state.inodes.node(nodeID) }
    }

    func directoryNode(_ nodeID: UInt64) throws(HostErrno) -> InodeTable.Node {
        let found = try node(nodeID)
        guard found.kind == S_IFDIR else { throw HostErrno(ENOTDIR) }
        return found
    }

    /// Looks `name` up beneath `parent` and counts the lookup: the node ID and its status.
    func lookup(parent: UInt64, name: [UInt8]) throws(HostErrno) -> (UInt64, stat) {
        let directory = try directoryNode(parent)
        let descriptor = try HostCalls.openBeneath(directory.descriptor.raw, try HostCalls.checkedName(name),
                                                   flags: CLINUX_O_PATH | O_NOFOLLOW)
        return try adopt(descriptor)
    }

    /// Makes a node of an CLINUX_O_PATH descriptor (taking it over).
    func adopt(_ descriptor: Int32) throws(HostErrno) -> (UInt64, stat) {
        let status: stat
        do throws(HostErrno) { status = try HostCalls.status(descriptor) } catch {
            close(descriptor)
            throw error
        }
        let nodeID = try state.withLock { (state) throws(HostErrno) -> UInt64 in
            try state.inodes.insert(descriptor: descriptor, status: status)
        }
        return (nodeID, status)
    }

    func lookupReply(parent: UInt64, name: [UInt8]) throws(HostErrno) -> [UInt8] {
        let (nodeID, status) = try lookup(parent: parent, name: name)
        return entryOut(nodeID: nodeID, status: status)
    }

    func entryOut(nodeID: UInt64, status: stat) -> [UInt8] {
        var writer = FUSEWriter(capacity: FUSE.entryOutSize)
        writer.u64(nodeID)
        writer.u64(0)  // generation: node IDs are never reused
        writer.u64(options.cache.timeoutSeconds)  // entry_valid
        writer.u64(options.cache.timeoutSeconds)  // attr_valid
        writer.u32(0); writer.u32(0)
        SharedDirectory.appendAttributes(status, to: &writer)
        return writer.bytes
    }

    func attrOut(_ status: stat) -> [UInt8] {
        var writer = FUSEWriter(capacity: FUSE.attrOutSize)
        writer.u64(options.cache.timeoutSeconds)
        writer.u32(0); writer.u32(0)
        SharedDirectory.appendAttributes(status, to: &writer)
        return writer.bytes
    }

    /// fuse_attr from a host stat.
    static func appendAttributes(_ status: stat, to writer: inout FUSEWriter) {
        writer.u64(UInt64(status.st_ino))
        writer.u64(UInt64(bitPattern: Int64(status.st_size)))
        writer.u64(UInt64(bitPattern: Int64(status.st_blocks)))
        writer.u64(UInt64(bitPattern: Int64(status.st_atim.tv_sec)))
        writer.u64(UInt64(bitPattern: Int64(status.st_mtim.tv_sec)))
        writer.u64(UInt64(bitPattern: Int64(status.st_ctim.tv_sec)))
        writer.u32(UInt32(truncatingIfNeeded: status.st_atim.tv_nsec))
        writer.u32(UInt32(truncatingIfNeeded: status.st_mtim.tv_nsec))
        writer.u32(UInt32(truncatingIfNeeded: status.st_ctim.tv_nsec))
        writer.u32(status.st_mode)
        writer.u32(UInt32(truncatingIfNeeded: status.st_nlink))
        writer.u32(status.st_uid)
        writer.u32(status.st_gid)
        writer.u32(UInt32(truncatingIfNeeded: status.st_rdev))
        writer.u32(UInt32(truncatingIfNeeded: status.st_blksize))
        writer.u32(0)  // flags
    }

    private func getattr(_ reader: inout FUSEReader, _ context: RequestContext) throws -> [UInt8] {
        let flags = try reader.u32()
        try reader.skip(4)
        let handle = try reader.u64()
        if flags & FUSE.getattrFileHandle != 0,
           let open = try? state.withLock({ (state) throws(HostErrno) in try state.handles.handle(handle, directory: false) }) {
            var status = stat()
            try HostCalls.check(fstat(open.descriptor.raw, &status))
            return attrOut(status)
        }
        return attrOut(try HostCalls.status(try node(context.nodeID).descriptor.raw))
    }

    private func readlink(_ context: RequestContext) throws -> [UInt8] {
        let link = try node(context.nodeID)
        guard link.kind == S_IFLNK else { throw HostErrno(EINVAL) }
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = buffer.withUnsafeMutableBufferPointer { pointer in
            pointer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: pointer.count) {
                readlinkat(link.descriptor.raw, "", $0, pointer.count)
            }
        }
        guard count >= 0 else { throw HostErrno.current }
        return Array(buffer[0..<count])
    }

    private func statfs(_ context: RequestContext) throws -> [UInt8] {
        var info = statvfs()
        try HostCalls.check(fstatvfs(try node(context.nodeID).descriptor.raw, &info))
        var writer = FUSEWriter(capacity: FUSE.statfsOutSize)
        writer.u64(UInt64(info.f_blocks)); writer.u64(UInt64(info.f_bfree)); writer.u64(UInt64(info.f_bavail))
        writer.u64(UInt64(info.f_files)); writer.u64(UInt64(info.f_ffree))
        writer.u32(UInt32(truncatingIfNeeded: info.f_bsize)); writer.u32(UInt32(truncatingIfNeeded: info.f_namemax))
        writer.u32(UInt32(truncatingIfNeeded: info.f_frsize))
        writer.zeros(FUSE.statfsOutSize - writer.bytes.count)
        return writer.bytes
    }

    private func access(_ reader: inout FUSEReader, _ context: RequestContext) throws -> [UInt8] {
        let mask = Int32(bitPattern: try reader.u32())
        let target = try node(context.nodeID)
        if options.readOnly, mask & W_OK != 0 { throw HostErrno(EROFS) }
        guard target.kind != S_IFLNK else { return [] }
        let name = HostCalls.procName(target.descriptor.raw)
        try HostCalls.withCString(name) { (pointer) throws(HostErrno) in
            try HostCalls.check(faccessat(procDescriptors.raw, pointer, mask, 0))
        }
        return []
    }

    /// EROFS for any change to a read-only export.
    func requireWritable() throws(HostErrno) {
        if options.readOnly { throw HostErrno(EROFS) }
    }
}
