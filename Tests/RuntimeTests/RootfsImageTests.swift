@testable import Runtime
import Foundation
import KasaJSON
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ContentHashTests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func knownDigests(text: String, digest: String) {
        var hasher = ContentHash()
        hasher.update(text)
        #expect(hasher.hexDigest() == digest)
    }

    @Test func chunkingDoesNotChangeTheDigest() {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var whole = ContentHash()
        whole.update(bytes)
        var pieces = ContentHash()
        var index = 0
        for size in [1, 63, 64, 65, 127, 1000, 3] {
            pieces.update(bytes[index..<index + size])
            index += size
        }
        pieces.update(bytes[index...])
        #expect(whole.hexDigest() == pieces.hexDigest())
        // A million 'a's (FIPS 180-2 test vector).
        var million = ContentHash()
        let block = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { million.update(block) }
        #expect(million.hexDigest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}

@Suite struct RootfsImageTests {
    @Test func theDigestFollowsContentNotTimestamps() throws {
        let root = try RuntimeTestSupport.busyboxRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let first = try DirectoryDigest.summarize(root)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1000)], ofItemAtPath: root + "/etc/kasa-test")
        #expect(try DirectoryDigest.summarize(root) == first)
        try "other\n".write(toFile: root + "/etc/kasa-test", atomically: false, encoding: .utf8)
        #expect(try DirectoryDigest.summarize(root).digest != first.digest)
        try "data\n".write(toFile: root + "/etc/kasa-test", atomically: false, encoding: .utf8)
        #expect(try DirectoryDigest.summarize(root).digest == first.digest)
        chmod(root + "/etc/kasa-test", 0o600)
        #expect(try DirectoryDigest.summarize(root).digest != first.digest)
    }

    @Test func anImageIsBuiltOnceAndHoldsTheFiles() throws {
        let root = try RuntimeTestSupport.busyboxRootfs()
        let cacheDirectory = try RuntimeTestSupport.temporaryDirectory("kasa-image-cache")
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: cacheDirectory)
        }
        let cache = RootfsImageCache(directory: cacheDirectory)
        let built = try cache.image(for: root)
        #expect(!built.reused)
        let again = try cache.image(for: root)
        #expect(again == RootfsImageCache.Image(path: built.path, reused: true, contentRead: false),
                "found by the tree's metadata, no file read")
        #expect((try FileManager.default.attributesOfItem(atPath: built.path)[.posixPermissions] as? Int) == 0o600)
        // A file written since: the metadata no longer matches, the content is read, and a
        // new image stands for the new content.
        try "changed\n".write(toFile: root + "/etc/kasa-test", atomically: false, encoding: .utf8)
        let changed = try cache.image(for: root)
        #expect(!changed.reused && changed.contentRead && changed.path != built.path)
        #expect(try cache.image(for: root) == RootfsImageCache.Image(path: changed.path, reused: true, contentRead: false))
        // Written back to the same bytes: the content key finds the first image again.
        try "data\n".write(toFile: root + "/etc/kasa-test", atomically: false, encoding: .utf8)
        #expect(try cache.image(for: root) == RootfsImageCache.Image(path: built.path, reused: true, contentRead: true))
        // Through a symbolic link (a bundle's rootfs often is one): the same tree, the same image.
        let link = cacheDirectory + "-link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: root)
        defer { try? FileManager.default.removeItem(atPath: link) }
        #expect(try cache.image(for: link) == RootfsImageCache.Image(path: built.path, reused: true, contentRead: false))
        #expect(try FileManager.default.contentsOfDirectory(atPath: cacheDirectory).sorted()
                == [URL(filePath: built.path).lastPathComponent, URL(filePath: changed.path).lastPathComponent, "index"].sorted())
        // The image's own view of a file (debugfs reads ext4 without mounting it).
        let debugfs = try #require(RootfsImageCache.findTool("debugfs"))
        let listing = try ChildProcess.run(debugfs, ["-R", "cat /etc/kasa-test", built.path])
        #expect(listing.output.contains("data\n"), "\(listing.output)")
        let busybox = try ChildProcess.run(debugfs, ["-R", "stat /bin/busybox", built.path])
        #expect(busybox.output.contains("Type: regular"), "\(busybox.output)")
    }

    /// The cache's disk full (a 2 MiB tmpfs for a rootfs of 4 MiB that cannot be sparse):
    /// a clear error naming the cause, and nothing of the failed build left in the cache.
    @Test func aFullCacheDiskIsAClearErrorAndLeavesNoPartialImage() throws {
        let root = try RuntimeTestSupport.temporaryDirectory("kasa-full-rootfs")
        let cacheDirectory = try RuntimeTestSupport.temporaryDirectory("kasa-full-cache")
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: cacheDirectory)
        }
        var noise = [UInt8](repeating: 0, count: 4 << 20)
        for index in noise.indices { noise[index] = UInt8.random(in: 1...255) }
        try Data(noise).write(to: URL(filePath: root + "/data"))
        try #require(mount("tmpfs", cacheDirectory, "tmpfs", 0, "size=2m,mode=0700") == 0,
                     "mounting a small tmpfs for the cache: errno \(errno)")
        defer { umount2(cacheDirectory, Int32(MNT_DETACH)) }
        let cache = RootfsImageCache(directory: cacheDirectory)
        do {
            let image = try cache.image(for: root)
            Issue.record("a 4 MiB rootfs fit a 2 MiB disk: \(image)")
        } catch {
            #expect("\(error)".contains("mke2fs could not build an image from \(root)"), "\(error)")
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: cacheDirectory)
        #expect(left.allSatisfy { $0 == "index" }, "left in the full cache: \(left)")
        let index = (try? FileManager.default.contentsOfDirectory(atPath: cacheDirectory + "/index")) ?? []
        #expect(index.isEmpty, "an index entry for an image that was never stored: \(index)")
    }

    @Test func notADirectoryIsBadInput() throws {
        let cache = RootfsImageCache(directory: "/nonexistent-cache")
        #expect(throws: RuntimeError.invalidInput("rootfs /nonexistent/rootfs does not exist")) { try cache.image(for: "/nonexistent/rootfs") }
        #expect(throws: RuntimeError.invalidInput("rootfs /etc/hostname is not a directory")) { try cache.image(for: "/etc/hostname") }
    }
}

@Suite struct WorkloadSpecTests {
    @Test func aBundleKeepsItsSpecAndTakesACommandOverride() throws {
        let bundle = try RuntimeTestSupport.temporaryDirectory("kasa-bundle")
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        try #"{"ociVersion": "1.1.0", "process": {"args": ["/bin/true"], "cwd": "/", "env": ["A=1"]}, "root": {"path": "rootfs"}, "hostname": "h"}"#
            .write(toFile: bundle + "/config.json", atomically: true, encoding: .utf8)
        let spec = try WorkloadSpec.forBundle(bundle, command: ["/bin/sh", "-c", "exit 4"], terminal: true)
        #expect(spec.rootfs == bundle + "/rootfs")
        #expect(spec.terminal)
        #expect(spec.ociSpec["process"]?["args"] == .array([.string("/bin/sh"), .string("-c"), .string("exit 4")]))
        #expect(spec.ociSpec["process"]?["env"] == .array([.string("A=1")]))
        #expect(spec.ociSpec["hostname"] == .string("h"))
        let unchanged = try WorkloadSpec.forBundle(bundle, command: [], terminal: false)
        #expect(unchanged.ociSpec["process"]?["args"] == .array([.string("/bin/true")]))
    }

    @Test(arguments: [
        (nil as String?, "cannot read config.json"),
        ("{not json", "config.json is not valid JSON"),
        (#"{"process": {"args": ["/bin/true"]}}"#, "config.json has no root.path"),
        (#"{"root": {"path": "rootfs"}, "process": {"args": []}}"#, "process.args must be a non-empty list"),
    ])
    func badBundlesAreBadInput(config: String?, message: String) throws {
        let bundle = try RuntimeTestSupport.temporaryDirectory("kasa-bundle")
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        if let config { try config.write(toFile: bundle + "/config.json", atomically: true, encoding: .utf8) }
        let error = #expect(throws: RuntimeError.self) { try WorkloadSpec.forBundle(bundle, command: [], terminal: false) }
        #expect(error?.description.contains(message) == true, "\(String(describing: error))")
        #expect(error?.exitStatus == 2)
    }

    @Test func aRootfsSpecIsValidJSONForTheAgent() throws {
        let spec = try WorkloadSpec.forRootfs("/r", command: ["echo", "a \"quoted\"\narg"], terminal: false, hostname: "box")
        let text = JSONValue.object(spec.ociSpec).jsonText
        let reparsed = try JSONValue(parsing: text)
        #expect(reparsed["process"]?["args"]?[1] == .string("a \"quoted\"\narg"))
        #expect(reparsed["hostname"] == .string("box"))
        #expect(throws: RuntimeError.invalidInput("no command to run: give one after --")) {
            try WorkloadSpec.forRootfs("/r", command: [], terminal: false, hostname: "x")
        }
    }
}
