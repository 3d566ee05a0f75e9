import Foundation
import SharedFileSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A hostile guest trying every way out of the exported directory: each must be refused,
/// and nothing outside the export may be read, made or changed.
@Suite struct PathSafetyTests {
    /// A directory next to the export with a file the guest must never reach.
    final class Outside {
        let path: String
        init() throws {
            path = try FUSETestClient.temporaryDirectory()
            try Data("host secret".utf8).write(to: URL(filePath: path + "/secret"))
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
        var untouched: Bool {
            (try? FileManager.default.contentsOfDirectory(atPath: path)) == ["secret"]
                && (try? String(contentsOfFile: path + "/secret", encoding: .utf8)) == "host secret"
        }
    }

    @Test(arguments: ["..", ".", "", "a/b", "../secret", "/etc/passwd", String(repeating: "n", count: 256)])
    func namesThatAreNotOneEntryAreRefused(name: String) throws {
        let client = try FUSETestClient()
        #expect(client.lookup(name).error == (name.count > 255 ? -ENAMETOOLONG : -EINVAL))
        #expect(client.create(name).0.error != 0)
        #expect(client.mkdir(name).error != 0)
        #expect(client.call(.symlink, node: FUSE.rootNodeID, Arguments().name(name).name("x")).error != 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: client.root).isEmpty)
    }

    @Test func aSymlinkOutOfTheExportIsNeverFollowed() throws {
        let outside = try Outside()
        let client = try FUSETestClient()
        try FileManager.default.createSymbolicLink(atPath: client.host("escape"), withDestinationPath: outside.path)
        try FileManager.default.createSymbolicLink(atPath: client.host("secret-link"), withDestinationPath: outside.path + "/secret")
        let directoryLink = client.lookup("escape")
        #expect(directoryLink.error == 0 && directoryLink.entryMode & UInt32(S_IFMT) == UInt32(S_IFLNK), "the link itself, not its target")
        #expect(client.lookup("secret", in: directoryLink.nodeID).error == -ENOTDIR)
        #expect(client.create("planted", in: directoryLink.nodeID).0.error == -ENOTDIR)
        #expect(client.list(directoryLink.nodeID).error == -ENOTDIR)
        let fileLink = client.lookup("secret-link")
        #expect(client.open(fileLink.nodeID).0.error == -ELOOP)
        #expect(client.open(fileLink.nodeID, flags: UInt32(O_WRONLY | O_TRUNC)).0.error == -ELOOP)
        // CREATE over an existing link name must not create or truncate its target.
        #expect(client.create("secret-link", flags: UInt32(O_RDWR | O_TRUNC)).0.error != 0)
        // chmod through a link node changes nothing (links have no mode of their own).
        let chmod = Arguments().u32(1).u32(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u32(0).u32(0).u32(0).u32(0o777).u32(0).u32(0).u32(0).u32(0)
        #expect(client.call(.setattr, node: fileLink.nodeID, chmod).error != 0)
        #expect(client.call(.getxattr, node: fileLink.nodeID, Arguments().u32(64).u32(0).name("user.x")).error == -EOPNOTSUPP)
        #expect(outside.untouched)
        var status = stat()
        #expect(stat(outside.path + "/secret", &status) == 0 && status.st_mode & 0o777 != 0o777)
    }

    @Test func magicLinksToProcDescriptorsAreNotFollowed() throws {
        let outside = try Outside()
        let client = try FUSETestClient()
        let descriptor = open(outside.path + "/secret", O_RDONLY)
        #expect(descriptor >= 0)
        defer { close(descriptor) }
        try FileManager.default.createSymbolicLink(atPath: client.host("fd"), withDestinationPath: "/proc/self/fd/\(descriptor)")
        try FileManager.default.createSymbolicLink(atPath: client.host("proc"), withDestinationPath: "/proc/self")
        let link = client.lookup("fd")
        #expect(link.entryMode & UInt32(S_IFMT) == UInt32(S_IFLNK))
        #expect(client.open(link.nodeID).0.error == -ELOOP)
        #expect(client.lookup("fd", in: client.lookup("proc").nodeID).error == -ENOTDIR)
        #expect(outside.untouched)
    }

    @Test func aDirectorySwappedForALinkBetweenTwoRequestsStaysTheOneLookedUp() throws {
        let outside = try Outside()
        let client = try FUSETestClient()
        let directory = client.mkdir("d")
        // The host (or another guest request) moves the directory away and puts a link to
        // the outside in its place; the guest still holds the old node.
        #expect(rename(client.host("d"), client.host("d-moved")) == 0)
        try FileManager.default.createSymbolicLink(atPath: client.host("d"), withDestinationPath: outside.path)
        let (made, _) = client.create("planted", in: directory.nodeID)
        #expect(made.error == 0)
        #expect(FileManager.default.fileExists(atPath: client.host("d-moved/planted")), "made in the directory the node stands for")
        #expect(client.lookup("secret", in: directory.nodeID).error == -ENOENT)
        // A fresh lookup of "d" finds the link, which is not a directory.
        #expect(client.lookup("secret", in: client.lookup("d").nodeID).error == -ENOTDIR)
        #expect(outside.untouched)
    }

    @Test func hardLinksRenamesAndNodesNeedNodesFromTheExport() throws {
        let outside = try Outside()
        let client = try FUSETestClient()
        // Node IDs the server never gave out name nothing.
        for node: UInt64 in [0, 2, 999, UInt64.max] {
            #expect(client.call(.link, node: FUSE.rootNodeID, Arguments().u64(node).name("stolen")).error == -ESTALE)
            #expect(client.call(.getattr, node: node, Arguments().u32(0).u32(0).u64(0)).error == -ESTALE)
            #expect(client.call(.rename, node: FUSE.rootNodeID, Arguments().u64(node).name("a").name("b")).error != 0)
        }
        #expect(FileManager.default.createFile(atPath: client.host("a"), contents: nil))
        #expect(client.call(.rename, node: FUSE.rootNodeID, Arguments().u64(FUSE.rootNodeID).name("a").name("../a")).error == -EINVAL)
        #expect(client.call(.rename, node: FUSE.rootNodeID, Arguments().u64(FUSE.rootNodeID).name("a").name("x/../../a")).error == -EINVAL)
        // RENAME_WHITEOUT (4) makes a device node: refused.
        #expect(client.call(.rename2, node: FUSE.rootNodeID, Arguments().u64(FUSE.rootNodeID).u32(4).u32(0).name("a").name("b")).error == -EINVAL)
        // A directory cannot be hard-linked.
        let directory = client.mkdir("dir")
        #expect(client.call(.link, node: FUSE.rootNodeID, Arguments().u64(directory.nodeID).name("dir2")).error == -EPERM)
        #expect(try Set(FileManager.default.contentsOfDirectory(atPath: client.root)) == ["a", "dir"])
        #expect(outside.untouched)
    }
}
