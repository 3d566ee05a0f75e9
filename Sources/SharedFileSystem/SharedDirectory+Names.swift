import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Requests that make, link, rename and remove names. Every name passes
/// `HostCalls.checkedName`, every call is relative to a directory node's descriptor.
extension SharedDirectory {
    /// Gives a file the guest just made the mode it asked for (kasa-vmm's umask is not the
    /// guest's) and the requesting guest user as owner; the group is the directory's where
    /// it is set-group-ID, as Linux does. Symbolic links keep their mode.
    func settle(_ descriptor: Int32, mode: UInt32, kind: UInt32, parent: InodeTable.Node, context: RequestContext) throws(HostErrno) {
        let parentStatus = try HostCalls.status(parent.descriptor.raw)
        let inheritsGroup = parentStatus.st_mode & S_ISGID != 0
        if kind != S_IFLNK {
            var permissions = mode & 0o7777
            if kind == S_IFDIR, inheritsGroup { permissions |= S_ISGID }
            try HostCalls.withCString(HostCalls.procName(descriptor)) { (pointer) throws(HostErrno) in
                try HostCalls.check(fchmodat(procDescriptors.raw, pointer, permissions, 0))
            }
        }
        let group = inheritsGroup ? gid_t.max : context.header.gid
        try HostCalls.check(fchownat(descriptor, "", context.header.uid, group, CLINUX_AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
    }

    /// After mkdirat, mknodat or symlinkat: the new name as a node, settled, as an entry.
    private func made(_ name: [UInt8], in parent: InodeTable.Node, mode: UInt32, context: RequestContext) throws(HostErrno) -> [UInt8] {
        let descriptor = try HostCalls.openBeneath(parent.descriptor.raw, name, flags: CLINUX_O_PATH | O_NOFOLLOW)
        let (nodeID, status) = try adopt(descriptor)
        do throws(HostErrno) {
            let owned = try node(nodeID)
            try settle(owned.descriptor.raw, mode: mode, kind: owned.kind, parent: parent, context: context)
            return entryOut(nodeID: nodeID, status: try HostCalls.status(owned.descriptor.raw))
        } catch {
            // The driver never learns of this node: drop the lookup it would have owned.
            _ = status
            state.withLock { $0.inodes.forget(nodeID, count: 1) }
            throw error
        }
    }

    func mkdir(_ reader: inout FUSEReader, _ context: RequestContext) throws -> [UInt8] {
        let mode = try reader.u32()
        try reader.skip(4)  // umask: the driver applied it (FUSE_DONT_MASK not offered)
        let name = try HostCalls.checkedName(try reader.cString())
        try requireWritable()
        let parent = try directoryNode(context.nodeID)
        try HostCalls.withCString(name) { (pointer) throws(HostErrno) in
            try HostCalls.check(mkdirat(parent.descriptor.raw, pointer, 0o700))
        }
        return try made(name, in: parent, mode: mode, context: context)
    }

    /// Regular files, FIFOs and sockets only: a device node made in the export would be a
    /// real device on the host, opened by whatever host process walks the directory.
    func mknod(_ reader: inout FUSEReader, _ context: RequestContext) throws -> [UInt8] {
        let mode = try reader.u32()
        try reader.skip(12)  // rdev, umask, padding
        let name = try HostCalls.checkedName(try reader.cString())
        try requireWritable()
        let kind = mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFIFO || kind == S_IFSOCK else { throw HostErrno(EPERM) }
        let parent = try directoryNode(context.nodeID)
        try HostCalls.withCString(name) { (pointer) throws(HostErrno) in
            try HostCalls.check(mknodat(parent.descriptor.raw, pointer, kind | 0o600, 0))
        }
        return try made(name, in: parent, mode: mode, context: context)
    }

    /// The target is stored as the guest wrote it: the server itself never follows a link.
    func symlink(_ reader: inout FUSEReader, _ context: RequestContext) throws -> [UInt8] {
        let name = try HostCalls.checkedName(try reader.cString())
        let target = try reader.cString()
        try requireWritable()
        guard !target.isEmpty else { throw HostErrno(ENOENT) }
        guard target.count < Int(PATH_MAX) else { throw HostErrno(ENAMETOOLONG) }
        let parent = try directoryNode(context.nodeID)
        try HostCalls.withCString(target) { (targetPointer) throws(HostErrno) in
            try HostCalls.withCString(name) { (namePointer) throws(HostErrno) in
                try HostCalls.check(symlinkat(targetPointer, parent.descriptor.raw, namePointer))
            }
        }
        return try made(name, in: parent, mode: 0o777, context: context)
    }

    /// A new name for a node the guest holds, so nothing outside the export can be linked in.
    func link(_ reader: inout FUSEReader, _ context: RequestContext) throws -> [UInt8] {
        let oldNodeID = try reader.u64()
        let name = try HostCalls.checkedName(try reader.cString())
        try requireWritable()
        let source = try node(oldNodeID)
        guard source.kind != S_IFDIR else { throw HostErrno(EPERM) }
        let parent = try directoryNode(context.nodeID)
        try HostCalls.withCString(name) { (pointer) throws(HostErrno) in
            try HostCalls.check(linkat(source.descriptor.raw, "", parent.descriptor.raw, pointer, CLINUX_AT_EMPTY_PATH))
        }
        return try lookupReply(parent: context.nodeID, name: name)
    }

    func remove(_ reader: inout FUSEReader, _ context: RequestContext, directory: Bool) throws -> [UInt8] {
        let name = try HostCalls.checkedName(try reader.cString())
        try requireWritable()
        let parent = try directoryNode(context.nodeID)
        try HostCalls.withCString(name) { (pointer) throws(HostErrno) in
            try HostCalls.check(unlinkat(parent.descriptor.raw, pointer, directory ? AT_REMOVEDIR : 0))
        }
        return []
    }

    /// RENAME and RENAME2 (flags: RENAME_NOREPLACE, RENAME_EXCHANGE; no whiteouts).
    func rename(_ reader: inout FUSEReader, _ context: RequestContext, hasFlags: Bool) throws -> [UInt8] {
        let newParentID = try reader.u64()
        var flags: UInt32 = 0
        if hasFlags {
            flags = try reader.u32()
            try reader.skip(4)
        }
        let oldName = try HostCalls.checkedName(try reader.cString())
        let newName = try HostCalls.checkedName(try reader.cString())
        try requireWritable()
        let renameNoReplace: UInt32 = 1, renameExchange: UInt32 = 2
        guard flags & ~(renameNoReplace | renameExchange) == 0 else { throw HostErrno(EINVAL) }
        let oldParent = try directoryNode(context.nodeID)
        let newParent = try directoryNode(newParentID)
        try HostCalls.withCString(oldName) { (oldPointer) throws(HostErrno) in
            try HostCalls.withCString(newName) { (newPointer) throws(HostErrno) in
                try HostCalls.check(clinux_renameat2(oldParent.descriptor.raw, oldPointer, newParent.descriptor.raw, newPointer, flags))
            }
        }
        return []
    }

    /// CREATE: makes (or, without O_EXCL, opens) a regular file, a node and an open handle.
    func create(_ reader: inout FUSEReader, _ context: RequestContext) throws -> [UInt8] {
        let flags = try reader.u32()
        let mode = try reader.u32()
        try reader.skip(8)  // umask (applied by the driver), open_flags
        let name = try HostCalls.checkedName(try reader.cString())
        try requireWritable()
        let parent = try directoryNode(context.nodeID)
        let access = try SharedDirectory.hostOpenFlags(flags, readOnlyExport: options.readOnly)
        let (descriptor, created) = try openOrCreate(name, in: parent, access: access, exclusive: Int32(bitPattern: flags) & O_EXCL != 0)
        let open = HostDescriptor(descriptor)
        let status = try HostCalls.status(open.raw)
        guard status.st_mode & S_IFMT == S_IFREG else { throw HostErrno(EISDIR) }
        // The node: an CLINUX_O_PATH descriptor of the very file opened (no second walk by name).
        let pathDescriptor = try HostCalls.withCString(HostCalls.procName(open.raw)) { (pointer) throws(HostErrno) -> Int32 in
            let result = openat(procDescriptors.raw, pointer, CLINUX_O_PATH | O_CLOEXEC)
            try HostCalls.check(result)
            return result
        }
        let (nodeID, _) = try adopt(pathDescriptor)
        do {
            if created { try settle(open.raw, mode: mode, kind: S_IFREG, parent: parent, context: context) }
            let handle = try state.withLock { (state) throws(HostErrno) -> UInt64 in
                try state.handles.insert(open, isDirectory: false)
            }
            let settled = try HostCalls.status(open.raw)
            var writer = FUSEWriter(capacity: FUSE.entryOutSize + FUSE.openOutSize)
            writer.append(entryOut(nodeID: nodeID, status: settled))
            writer.u64(handle)
            writer.u32(openReplyFlags(directory: false))
            writer.u32(0)
            return writer.bytes
        } catch {
            state.withLock { $0.inodes.forget(nodeID, count: 1) }
            throw error
        }
    }

    /// Creates `name` (exclusively), or opens the file already there unless the guest asked
    /// for O_EXCL: the descriptor and whether it was made now.
    private func openOrCreate(_ name: [UInt8], in parent: InodeTable.Node, access: Int32, exclusive: Bool) throws(HostErrno) -> (Int32, Bool) {
        do {
            let made = try HostCalls.openBeneath(parent.descriptor.raw, name, flags: access | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
            return (made, true)
        } catch {
            guard error.code == EEXIST, !exclusive else { throw error }
        }
        return (try HostCalls.openBeneath(parent.descriptor.raw, name, flags: access | O_NOFOLLOW), false)
    }
}
