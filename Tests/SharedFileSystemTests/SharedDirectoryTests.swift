import Foundation
import SharedFileSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The FUSE server against a real temporary directory: what a POSIX workload in the guest
/// sends, answered with the host's files.
@Suite struct SharedDirectoryTests {
    @Test func initNegotiatesOurMinorVersionAndRefusesAnotherMajor() throws {
        let client = try FUSETestClient(initialize: false)
        #expect(client.lookup("x").error == -EIO, "requests before INIT")
        let refused = client.call(.`init`, node: 0, Arguments().u32(8).u32(0).u32(0).u32(0))
        #expect(refused.error == -EPROTO)
        let accepted = client.call(.`init`, node: 0, Arguments().u32(7).u32(37).u32(65_536).u32(FUSE.InitFlag.doReaddirplus)
            .raw([UInt8](repeating: 0, count: 48)))
        #expect(accepted.error == 0 && accepted.body.count == FUSE.initOutSize)
        #expect(accepted.u32(at: 0) == 7 && accepted.u32(at: 4) == FUSE.minorVersion)
        #expect(accepted.u32(at: 8) == 65_536, "max_readahead echoed")
        #expect(accepted.u32(at: 12) == FUSE.InitFlag.doReaddirplus, "only flags the driver offered")
        #expect(accepted.u32(at: 20) == UInt32(SharedDirectory.maximumWrite))
        // An older driver keeps its own minor.
        let older = client.call(.`init`, node: 0, Arguments().u32(7).u32(27).u32(0).u32(0))
        #expect(older.u32(at: 4) == 27)
    }

    @Test func createWriteReadAndGetattrRoundTrip() throws {
        let client = try FUSETestClient()
        let (entry, handle) = client.create("notes.txt", mode: 0o100640, uid: 1000, gid: 1000)
        #expect(entry.error == 0)
        #expect(entry.entryMode == 0o100640, "the mode asked, not kasa-vmm's umask")
        #expect(entry.entryUID == 1000, "owned by the requesting guest user")
        let text = Array("hello, shared world\n".utf8)
        let written = client.write(entry.nodeID, handle: handle, at: 0, text)
        #expect(written.error == 0 && written.u32(at: 0) == UInt32(text.count))
        #expect(try Data(contentsOf: URL(filePath: client.host("notes.txt"))) == Data(text))
        let read = client.read(entry.nodeID, handle: handle, at: 7, size: 100)
        #expect(read.error == 0 && read.data == Array(text[7...]))
        let attributes = client.call(.getattr, node: entry.nodeID, Arguments().u32(0).u32(0).u64(0))
        #expect(attributes.error == 0 && attributes.attrSize == UInt64(text.count) && attributes.attrGID == 1000)
        #expect(client.call(.release, node: entry.nodeID, Arguments().u64(handle).u32(0).u32(0).u64(0)).error == 0)
        #expect(client.server.counts.handles == 0)
        #expect(client.read(entry.nodeID, handle: handle, at: 0, size: 1).error == -EBADF, "a released handle")
    }

    @Test func aHostChangeIsSeenAtOnceWithoutCaching() throws {
        let client = try FUSETestClient(options: SharedDirectoryOptions(cache: .never))
        try Data("one".utf8).write(to: URL(filePath: client.host("live")))
        let entry = client.lookup("live")
        #expect(entry.u64(at: 16) == 0, "attr_valid 0 with cache=never")
        let (opened, handle) = client.open(entry.nodeID)
        #expect(opened.u32(at: 8) & FUSE.OpenReplyFlag.directIO != 0)
        try Data("changed on the host".utf8).write(to: URL(filePath: client.host("live")))
        #expect(client.read(entry.nodeID, handle: handle, at: 0, size: 64).data == Array("changed on the host".utf8))
    }

    @Test func directoriesRenamesLinksAndRemoval() throws {
        let client = try FUSETestClient()
        let first = client.mkdir("a", mode: 0o750)
        let second = client.mkdir("b")
        #expect(first.error == 0 && first.entryMode == 0o40750)
        let (file, handle) = client.create("f", in: first.nodeID)
        client.call(.release, node: file.nodeID, Arguments().u64(handle).u32(0).u32(0).u64(0))
        // Across directories, then a hard link: one node, two names.
        #expect(client.call(.rename, node: first.nodeID, Arguments().u64(second.nodeID).name("f").name("g")).error == 0)
        #expect(FileManager.default.fileExists(atPath: client.host("b/g")))
        let link = client.call(.link, node: first.nodeID, Arguments().u64(file.nodeID).name("again"))
        #expect(link.error == 0 && link.nodeID == file.nodeID && link.entryNlink == 2)
        // RENAME2 with RENAME_NOREPLACE onto an existing name.
        let noReplace = client.call(.rename2, node: first.nodeID, Arguments().u64(second.nodeID).u32(1).u32(0).name("again").name("g"))
        #expect(noReplace.error == -EEXIST)
        #expect(client.call(.rmdir, node: FUSE.rootNodeID, Arguments().name("b")).error == -ENOTEMPTY)
        #expect(client.call(.unlink, node: second.nodeID, Arguments().name("g")).error == 0)
        #expect(client.call(.unlink, node: first.nodeID, Arguments().name("again")).error == 0)
        #expect(client.call(.rmdir, node: FUSE.rootNodeID, Arguments().name("a")).error == 0)
        #expect(client.call(.rmdir, node: FUSE.rootNodeID, Arguments().name("b")).error == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: client.root).isEmpty)
    }

    @Test func symlinksAreStoredAndReadButNeverFollowed() throws {
        let client = try FUSETestClient()
        let link = client.call(.symlink, node: FUSE.rootNodeID, Arguments().name("to-etc").name("/etc"))
        #expect(link.error == 0 && link.entryMode & UInt32(S_IFMT) == UInt32(S_IFLNK))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: client.host("to-etc")) == "/etc")
        let target = client.call(.readlink, node: link.nodeID)
        #expect(target.error == 0 && target.body == Array("/etc".utf8))
        #expect(client.lookup("passwd", in: link.nodeID).error == -ENOTDIR, "a link node is not a directory")
        #expect(client.open(link.nodeID).0.error == -ELOOP)
        #expect(client.create("x", in: link.nodeID).0.error == -ENOTDIR)
    }

    @Test func setattrChangesModeOwnerSizeAndTimes() throws {
        let client = try FUSETestClient()
        let (entry, handle) = client.create("file")
        _ = client.write(entry.nodeID, handle: handle, at: 0, [UInt8](repeating: 7, count: 100))
        // valid: mode | uid | gid | size | mtime
        let arguments = Arguments().u32(1 | 2 | 4 | 8 | 32).u32(0).u64(0).u64(10).u64(0).u64(0).u64(1_000_000).u64(0)
            .u32(0).u32(0).u32(0).u32(0o100600).u32(0).u32(1234).u32(5678).u32(0)
        let answer = client.call(.setattr, node: entry.nodeID, arguments)
        #expect(answer.error == 0)
        #expect(answer.attrMode == 0o100600 && answer.attrUID == 1234 && answer.attrGID == 5678)
        #expect(answer.attrSize == 10 && answer.attrMtime == 1_000_000)
        var status = stat()
        #expect(stat(client.host("file"), &status) == 0 && status.st_size == 10 && status.st_uid == 1234)
    }

    @Test func readdirAndReaddirplusListEverythingAcrossReplies() throws {
        let client = try FUSETestClient()
        let names = (0..<300).map { "entry-\($0)" }
        for name in names { FileManager.default.createFile(atPath: client.host(name), contents: nil) }
        let plain = client.list(FUSE.rootNodeID, size: 1024)
        #expect(plain.error == 0)
        #expect(Set(plain.names) == Set(names + [".", ".."]) && plain.names.count == names.count + 2)
        let plus = client.list(FUSE.rootNodeID, plus: true, size: 4096)
        #expect(plus.error == 0 && plus.names.count == names.count + 2)
        // Each listed file became a node (looked up once); "." and ".." carry node ID 0.
        #expect(plus.nodes.filter { $0 == 0 }.count == 2)
        #expect(client.server.counts.nodes == names.count)
        // The driver forgets them all: the table empties.
        var batch = Arguments().u32(UInt32(names.count)).u32(0)
        for node in plus.nodes where node != 0 { batch = batch.u64(node).u64(1) }
        #expect(client.call(.batchForget, node: 0, batch).error == 1, "no reply to a BATCH_FORGET")
        #expect(client.server.counts.nodes == 0)
    }

    @Test func lookupsAreCountedAndForgotten() throws {
        let client = try FUSETestClient()
        FileManager.default.createFile(atPath: client.host("f"), contents: nil)
        let first = client.lookup("f")
        let second = client.lookup("f")
        #expect(first.nodeID == second.nodeID && client.server.counts.nodes == 1)
        client.call(.forget, node: first.nodeID, Arguments().u64(1))
        #expect(client.server.counts.nodes == 1, "one lookup left")
        client.call(.forget, node: first.nodeID, Arguments().u64(1))
        #expect(client.server.counts.nodes == 0)
        #expect(client.call(.getattr, node: first.nodeID, Arguments().u32(0).u32(0).u64(0)).error == -ESTALE)
        // Forgetting the root or an unknown node changes nothing.
        client.call(.forget, node: FUSE.rootNodeID, Arguments().u64(100))
        client.call(.forget, node: 999, Arguments().u64(1))
        #expect(client.lookup("f").error == 0)
    }

    @Test func readOnlyExportRefusesEveryChange() throws {
        let client = try FUSETestClient(options: SharedDirectoryOptions(readOnly: true))
        FileManager.default.createFile(atPath: client.host("f"), contents: Data("data".utf8))
        let entry = client.lookup("f")
        #expect(client.create("new").0.error == -EROFS)
        #expect(client.mkdir("d").error == -EROFS)
        #expect(client.open(entry.nodeID, flags: UInt32(O_WRONLY)).0.error == -EROFS)
        #expect(client.open(entry.nodeID, flags: UInt32(O_RDONLY | O_TRUNC)).0.error == -EROFS)
        #expect(client.call(.unlink, node: FUSE.rootNodeID, Arguments().name("f")).error == -EROFS)
        #expect(client.call(.symlink, node: FUSE.rootNodeID, Arguments().name("l").name("f")).error == -EROFS)
        let (opened, handle) = client.open(entry.nodeID)
        #expect(opened.error == 0 && client.read(entry.nodeID, handle: handle, at: 0, size: 10).data == Array("data".utf8))
        #expect(client.write(entry.nodeID, handle: handle, at: 0, [1]).error == -EROFS)
        #expect(try String(contentsOfFile: client.host("f"), encoding: .utf8) == "data")
    }

    @Test func deviceNodesAreNeverMadeOnTheHost() throws {
        let client = try FUSETestClient()
        // A block device 8:0 (sda): creating it in the export would hand the host's disk out.
        let block = client.call(.mknod, node: FUSE.rootNodeID, Arguments().u32(UInt32(S_IFBLK) | 0o666).u32(0x800).u32(0).u32(0).name("sda"))
        #expect(block.error == -EPERM)
        let character = client.call(.mknod, node: FUSE.rootNodeID, Arguments().u32(UInt32(S_IFCHR) | 0o666).u32(0x103).u32(0).u32(0).name("null"))
        #expect(character.error == -EPERM)
        let fifo = client.call(.mknod, node: FUSE.rootNodeID, Arguments().u32(UInt32(S_IFIFO) | 0o644).u32(0).u32(0).u32(0).name("pipe"))
        #expect(fifo.error == 0 && fifo.entryMode == UInt32(S_IFIFO) | 0o644)
        #expect(client.open(fifo.nodeID).0.error == -ENXIO, "a FIFO is never opened on the host")
        #expect(try FileManager.default.contentsOfDirectory(atPath: client.root) == ["pipe"])
    }

    @Test func onlyUserExtendedAttributesCanBeSet() throws {
        let client = try FUSETestClient()
        let (entry, _) = client.create("f")
        let value: [UInt8] = Array("blue".utf8)
        let set = client.call(.setxattr, node: entry.nodeID, Arguments().u32(UInt32(value.count)).u32(0).name("user.colour").raw(value))
        // The temporary directory is on ext4 (or tmpfs 6.6+), which keeps user xattrs.
        try #require(set.error == 0)
        let size = client.call(.getxattr, node: entry.nodeID, Arguments().u32(0).u32(0).name("user.colour"))
        #expect(size.error == 0 && size.u32(at: 0) == 4)
        let got = client.call(.getxattr, node: entry.nodeID, Arguments().u32(64).u32(0).name("user.colour"))
        #expect(got.body == value)
        #expect(client.call(.getxattr, node: entry.nodeID, Arguments().u32(2).u32(0).name("user.colour")).error == -ERANGE)
        let list = client.call(.listxattr, node: entry.nodeID, Arguments().u32(256).u32(0))
        #expect(list.error == 0 && list.body.split(separator: 0).contains { Array($0) == Array("user.colour".utf8) })
        let capability = client.call(.setxattr, node: entry.nodeID, Arguments().u32(4).u32(0).name("security.capability").raw([1, 2, 3, 4]))
        #expect(capability.error == -EPERM)
        #expect(client.call(.removexattr, node: entry.nodeID, Arguments().name("trusted.x")).error == -EPERM)
        #expect(client.call(.removexattr, node: entry.nodeID, Arguments().name("user.colour")).error == 0)
    }

    /// A guest may ask for a value (size > 0) but give a reply buffer too small for it, or
    /// none at all: the host call then sees a capacity of 0 and reports the value's length,
    /// which once overran the reply buffer and trapped the VMM (found by the fs fuzzer).
    @Test func anExtendedAttributeLongerThanTheReplysRoomIsERANGE() throws {
        let client = try FUSETestClient()
        let (entry, _) = client.create("f")
        let value: [UInt8] = Array("blue".utf8)
        try #require(client.call(.setxattr, node: entry.nodeID, Arguments().u32(UInt32(value.count)).u32(0).name("user.colour").raw(value)).error == 0)
        for room in [0, 2] {
            let got = client.call(.getxattr, node: entry.nodeID, Arguments().u32(64).u32(0).name("user.colour"), capacity: room)
            #expect(got.error == -ERANGE, "GETXATTR with \(room) bytes of room")
            let list = client.call(.listxattr, node: entry.nodeID, Arguments().u32(256).u32(0), capacity: room)
            #expect(list.error == -ERANGE, "LISTXATTR with \(room) bytes of room")
        }
        let fits = client.call(.getxattr, node: entry.nodeID, Arguments().u32(64).u32(0).name("user.colour"), capacity: value.count)
        #expect(fits.error == 0 && fits.body == value, "a reply with just enough room still gets the value")
    }

    @Test func limitsOnNodesAndHandlesAreErrorsNotGrowth() throws {
        let client = try FUSETestClient(options: SharedDirectoryOptions(maximumNodes: 3, maximumHandles: 2))
        for index in 0..<4 { FileManager.default.createFile(atPath: client.host("f\(index)"), contents: nil) }
        let nodes = (0..<3).map { client.lookup("f\($0)") }
        #expect(nodes.allSatisfy { $0.error == 0 })
        #expect(client.lookup("f3").error == -ENFILE)
        #expect(client.lookup("f0").error == 0, "a node already held is still found")
        #expect(client.open(nodes[0].nodeID).0.error == 0 && client.open(nodes[1].nodeID).0.error == 0)
        #expect(client.open(nodes[2].nodeID).0.error == -EMFILE)
        #expect(client.server.counts == (3, 2))
    }

    @Test func unknownOpcodesAreENOSYSAndMalformedRequestsEINVAL() throws {
        let client = try FUSETestClient()
        #expect(client.call(.ioctl, node: FUSE.rootNodeID).error == -ENOSYS)
        #expect(client.call(.setlk, node: FUSE.rootNodeID).error == -ENOSYS)
        let header = FUSEInHeader(length: 40, opcode: 9999, unique: 77, nodeID: 1)
        #expect(client.server.serve(header.encoded, replyCapacity: 100, io: BytesIO(payload: []))?.error == -ENOSYS)
        // Arguments shorter than their structure, a name without its NUL.
        #expect(client.call(.read, node: FUSE.rootNodeID, Arguments().u64(1)).error == -EINVAL)
        #expect(client.call(.lookup, node: FUSE.rootNodeID, Arguments().raw(Array("abc".utf8))).error == -EINVAL)
        // A header cut short gets no reply at all (there is no unique to answer).
        #expect(client.server.serve(Array(header.encoded.prefix(39)), replyCapacity: 100, io: BytesIO(payload: [])) == nil)
        // A WRITE claiming more than it carries.
        let (entry, handle) = client.create("f")
        let lying = client.call(.write, node: entry.nodeID, Arguments().u64(handle).u64(0).u32(4096).u32(0).u64(0).u32(0).u32(0), payload: [1, 2])
        #expect(lying.error == -EINVAL)
    }
}
