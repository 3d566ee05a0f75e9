import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// READDIR, READDIRPLUS and the extended-attribute requests.
extension SharedDirectory {
    /// One READDIR(PLUS) reply: the directory's entries from the guest's offset (a cookie
    /// the host file system gave as d_off), as many as fit in the size asked. READDIRPLUS
    /// also looks each entry up (the driver counts those lookups), only once its record
    /// is known to fit, so no lookup is ever sent that the driver does not receive.
    func readdir(_ reader: inout FUSEReader, _ context: RequestContext, plus: Bool) throws -> [UInt8] {
        let handle = try reader.u64()
        let offset = try reader.u64()
        let size = Int(try reader.u32())
        let directory = try self.handle(handle, directory: true)
        let limit = min(size, context.replyCapacity, SharedDirectory.maximumWrite)
        // The handle's position is shared by every READDIR on it; the driver serialises a
        // directory's reads, and a guest that does not only confuses its own listing.
        guard Glibc.lseek(directory.raw, off_t(Int64(bitPattern: offset)), SEEK_SET) >= 0 else { throw HostErrno.current }
        var writer = FUSEWriter(capacity: min(limit, 8192))
        var buffer = [UInt8](repeating: 0, count: 32 * 1024)
        listing: while true {
            let filled = buffer.withUnsafeMutableBytes { clinux_getdents64(directory.raw, $0.baseAddress, UInt($0.count)) }
            guard filled >= 0 else { throw HostErrno.current }
            if filled == 0 { break }
            var position = 0
            while position < filled {
                let entry = try SharedDirectory.hostDirent(buffer, at: position, end: filled)
                position += entry.recordLength
                let record = (plus ? FUSE.entryOutSize : 0) + (FUSE.direntHeaderSize + entry.name.count + 7) / 8 * 8
                guard writer.bytes.count + record <= limit else { break listing }
                if plus {
                    if entry.name == [UInt8(ascii: ".")] || entry.name == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                        // Node ID 0: the driver links no dentry for these.
                        writer.zeros(FUSE.entryOutSize)
                    } else {
                        do {
                            let (nodeID, status) = try lookup(parent: context.nodeID, name: entry.name)
                            writer.append(entryOut(nodeID: nodeID, status: status))
                        } catch let failure where failure.code == ENOENT {
                            continue  // removed since it was listed
                        } catch {
                            if writer.bytes.isEmpty { throw error }
                            break listing
                        }
                    }
                }
                writer.u64(entry.inode)
                writer.u64(entry.nextOffset)
                writer.u32(UInt32(entry.name.count))
                writer.u32(UInt32(entry.type))
                writer.append(entry.name)
                writer.alignTo8()
            }
        }
        return writer.bytes
    }

    struct HostDirent {
        let inode: UInt64
        let nextOffset: UInt64
        let recordLength: Int
        let type: UInt8
        let name: [UInt8]
    }

    /// One linux_dirent64 from getdents64's buffer: d_ino, d_off, d_reclen, d_type, name.
    static func hostDirent(_ buffer: [UInt8], at position: Int, end: Int) throws(HostErrno) -> HostDirent {
        let nameStart = 19
        guard end - position >= nameStart else { throw HostErrno(EIO) }
        var reader = FUSEReader(Array(buffer[position..<end]))
        do {
            let inode = try reader.u64()
            let next = try reader.u64()
            let length = Int(try reader.u16())
            guard length > nameStart, length <= end - position else { throw HostErrno(EIO) }
            let type = buffer[position + 18]
            let nameBytes = buffer[(position + nameStart)..<(position + length)]
            let name = Array(nameBytes.prefix { $0 != 0 })
            return HostDirent(inode: inode, nextOffset: next, recordLength: length, type: type, name: name)
        } catch let failure as HostErrno {
            throw failure
        } catch {
            throw HostErrno(EIO)
        }
    }

    // MARK: - Extended attributes

    /// xattr calls go to "/proc/self/fd/N" (our own descriptor), so they act on the node
    /// whatever its name is now; symbolic links have none here.
    private func xattrPath(_ target: InodeTable.Node) throws(HostErrno) -> [UInt8] {
        guard target.kind == S_IFREG || target.kind == S_IFDIR else { throw HostErrno(EOPNOTSUPP) }
        return Array("/proc/self/fd/\(target.descriptor.raw)".utf8)
    }

    /// Attribute names the guest may set or remove: the user namespace only. security.*
    /// (file capabilities) and trusted.* would change what the host grants its own
    /// processes that read the export.
    private func checkedSettableName(_ name: [UInt8]) throws(HostErrno) -> [UInt8] {
        guard !name.isEmpty, name.count <= 255 else { throw HostErrno(ERANGE) }
        guard name.starts(with: Array("user.".utf8)) else { throw HostErrno(EPERM) }
        return name
    }

    /// GETXATTR and LISTXATTR: size 0 asks for the length, otherwise the bytes (ERANGE if
    /// they do not fit, as the system calls say).
    func getxattr(_ reader: inout FUSEReader, _ context: RequestContext, list: Bool) throws -> [UInt8] {
        let size = Int(try reader.u32())
        try reader.skip(4)
        let name = list ? [] : try reader.cString()
        let target = try node(context.nodeID)
        let path = try xattrPath(target)
        let capacity = min(size, context.replyCapacity, 64 * 1024)
        var buffer = [UInt8](repeating: 0, count: max(capacity, 1))
        let count = try HostCalls.withCString(path) { (pathPointer) throws(HostErrno) -> Int in
            if list {
                return buffer.withUnsafeMutableBytes { bytes in
                    clinux_listxattr(pathPointer, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), UInt(capacity))
                }
            }
            return try HostCalls.withCString(name) { (namePointer) throws(HostErrno) -> Int in
                buffer.withUnsafeMutableBytes { clinux_getxattr(pathPointer, namePointer, $0.baseAddress, UInt(capacity)) }
            }
        }
        guard count >= 0 else { throw HostErrno.current }
        if size == 0 {
            var writer = FUSEWriter(capacity: 8)
            writer.u32(UInt32(count))
            writer.u32(0)
            return writer.bytes
        }
        // A guest asking for a value (size > 0) in a reply with no room for one makes the
        // capacity 0, and a host call given 0 reports the value's length instead of failing
        // (found by the fuzzer): a value longer than the room is ERANGE, as the kernel says.
        guard count <= capacity else { throw HostErrno(ERANGE) }
        return Array(buffer[0..<count])
    }

    func setxattr(_ reader: inout FUSEReader, _ context: RequestContext) throws -> [UInt8] {
        let size = Int(try reader.u32())
        let flags = Int32(bitPattern: try reader.u32())
        let name = try checkedSettableName(try reader.cString())
        let value = try reader.raw(size)
        try requireWritable()
        let path = try xattrPath(try node(context.nodeID))
        try HostCalls.withCString(path) { (pathPointer) throws(HostErrno) in
            try HostCalls.withCString(name) { (namePointer) throws(HostErrno) in
                try HostCalls.check(value.withUnsafeBytes { clinux_setxattr(pathPointer, namePointer, $0.baseAddress, UInt(size), flags) })
            }
        }
        return []
    }

    func removexattr(_ reader: inout FUSEReader, _ context: RequestContext) throws -> [UInt8] {
        let name = try checkedSettableName(try reader.cString())
        try requireWritable()
        let path = try xattrPath(try node(context.nodeID))
        try HostCalls.withCString(path) { (pathPointer) throws(HostErrno) in
            try HostCalls.withCString(name) { (namePointer) throws(HostErrno) in
                try HostCalls.check(clinux_removexattr(pathPointer, namePointer))
            }
        }
        return []
    }
}
