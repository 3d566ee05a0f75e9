#if canImport(Glibc)
import Glibc
#endif

/// An errno the guest gets back (as its negation in the reply header).
public struct HostErrno: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }
    /// errno as the last failed call left it.
    static var current: HostErrno { HostErrno(errno) }
    public var description: String { String(cString: strerror(code)) }
}

/// A host descriptor closed when the last user lets go of it: a request working on a file
/// keeps it open even if a RELEASE or FORGET for the same handle races it, so its number
/// can never be reused under it for another file (kasa-vmm's disks and sockets included).
final class HostDescriptor: @unchecked Sendable {
    // Immutable after init; close(2) runs once, in deinit.
    let raw: Int32
    init(_ raw: Int32) { self.raw = raw }
    deinit { close(raw) }
}

/// The nodes the guest knows: node ID -> an `CLINUX_O_PATH` descriptor of the host file, counted
/// by the driver's lookups (a node goes when FORGET brings its count to zero). One host
/// file (device and inode number) is one node however many names reach it, so hard links
/// look like hard links to the guest. Nodes are only ever made from a descriptor opened
/// beneath a node the table already holds, so a node ID the guest sends cannot name a file
/// that was not reached through the export.
final class InodeTable {
    struct Node {
        let descriptor: HostDescriptor
        let device: UInt64
        let inode: UInt64
        /// S_IFMT bits: the kind of file never changes for an inode.
        let kind: UInt32
        var lookups: UInt64
    }

    private var nodes: [UInt64: Node] = [:]
    private var byIdentity: [HostIdentity: UInt64] = [:]
    private var nextNodeID: UInt64 = FUSE.rootNodeID + 1
    /// Nodes beyond the root the table may hold: each is an open descriptor in kasa-vmm.
    let limit: Int

    struct HostIdentity: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    /// The root: the export's own descriptor, never forgotten.
    init(rootDescriptor: Int32, rootStat: stat, limit: Int) {
        self.limit = limit
        let root = Node(descriptor: HostDescriptor(rootDescriptor), device: UInt64(rootStat.st_dev), inode: UInt64(rootStat.st_ino),
                        kind: rootStat.st_mode & S_IFMT, lookups: 1)
        nodes[FUSE.rootNodeID] = root
        byIdentity[HostIdentity(device: root.device, inode: root.inode)] = FUSE.rootNodeID
    }

    var count: Int { nodes.count - 1 }

    func node(_ nodeID: UInt64) throws(HostErrno) -> Node {
        guard let node = nodes[nodeID] else { throw HostErrno(ESTALE) }
        return node
    }

    /// Takes ownership of `descriptor` (an CLINUX_O_PATH descriptor of the file `status` describes):
    /// adds a node, or counts one more lookup of the node that already stands for that file
    /// and closes the duplicate descriptor. Full table: ENFILE (the descriptor is closed).
    func insert(descriptor: Int32, status: stat) throws(HostErrno) -> UInt64 {
        let identity = HostIdentity(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
        let owned = HostDescriptor(descriptor)
        if let existing = byIdentity[identity] {
            nodes[existing]!.lookups &+= 1
            return existing
        }
        guard count < limit else { throw HostErrno(ENFILE) }
        let nodeID = nextNodeID
        nextNodeID += 1
        nodes[nodeID] = Node(descriptor: owned, device: identity.device, inode: identity.inode,
                             kind: status.st_mode & S_IFMT, lookups: 1)
        byIdentity[identity] = nodeID
        return nodeID
    }

    /// FORGET: the driver dropped `count` lookups of the node. Unknown nodes and the root
    /// are ignored (a FORGET has no reply to carry an error).
    func forget(_ nodeID: UInt64, count: UInt64) {
        guard nodeID != FUSE.rootNodeID, var node = nodes[nodeID] else { return }
        node.lookups = node.lookups > count ? node.lookups - count : 0
        if node.lookups > 0 {
            nodes[nodeID] = node
            return
        }
        nodes[nodeID] = nil
        byIdentity[HostIdentity(device: node.device, inode: node.inode)] = nil
    }

    /// Closes every node but the root (DESTROY, a device reset).
    func forgetAll() {
        nodes = nodes.filter { $0.key == FUSE.rootNodeID }
        byIdentity = byIdentity.filter { $0.value == FUSE.rootNodeID }
    }
}

/// Open files and directories the guest holds (OPEN, OPENDIR, CREATE) by file handle.
final class HandleTable {
    struct Handle {
        let descriptor: HostDescriptor
        let isDirectory: Bool
    }

    private var handles: [UInt64: Handle] = [:]
    private var nextHandle: UInt64 = 1
    let limit: Int

    init(limit: Int) { self.limit = limit }

    var count: Int { handles.count }

    /// Holds `owned` for the guest; a full table answers EMFILE.
    func insert(_ owned: HostDescriptor, isDirectory: Bool) throws(HostErrno) -> UInt64 {
        guard handles.count < limit else { throw HostErrno(EMFILE) }
        let handle = nextHandle
        nextHandle += 1
        handles[handle] = Handle(descriptor: owned, isDirectory: isDirectory)
        return handle
    }

    func handle(_ handle: UInt64, directory: Bool) throws(HostErrno) -> Handle {
        guard let found = handles[handle], found.isDirectory == directory else { throw HostErrno(EBADF) }
        return found
    }

    /// RELEASE, RELEASEDIR: the descriptor closes once no request uses it; unknown: EBADF.
    func remove(_ handle: UInt64, directory: Bool) throws(HostErrno) {
        guard let found = handles[handle], found.isDirectory == directory else { throw HostErrno(EBADF) }
        _ = found
        handles[handle] = nil
    }

    func removeAll() { handles = [:] }
}
