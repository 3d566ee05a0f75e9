import AgentProtocol
import Foundation
import KasaJSON
@testable import Runtime
import Testing

/// Bind mounts of host paths, copied into the sandbox (the VM shares no file system
/// with the host): what is copied, where the mount then points, and what is refused.
@Suite struct HostBindMountsTests {
    static func spec(_ mounts: String) throws -> JSONObject {
        try #require(try JSONValue(parsing: #"{"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}, \#(mounts)]}"#).objectValue)
    }

    @Test func filesDirectoriesAndSymlinksAreCopiedAndTheMountsPointAtTheCopies() throws {
        let host = try RuntimeTestSupport.temporaryDirectory("kasa-binds")
        defer { try? FileManager.default.removeItem(atPath: host) }
        try FileManager.default.createDirectory(atPath: host + "/config/nested", withIntermediateDirectories: true)
        try "a=1\n".write(toFile: host + "/config/app.conf", atomically: false, encoding: .utf8)
        try Data(repeating: 7, count: (5 << 19) + 3).write(to: URL(filePath: host + "/config/nested/blob"))  // 2.5 MiB + 3
        try FileManager.default.createSymbolicLink(atPath: host + "/config/current", withDestinationPath: "app.conf")
        try "10.0.0.7 db\n".write(toFile: host + "/hosts", atomically: false, encoding: .utf8)
        chmod(host + "/hosts", 0o640)

        let spec = try Self.spec("""
            {"destination": "/etc/app", "type": "bind", "source": "\(host)/config", "options": ["rbind", "ro"]},
            {"destination": "/etc/hosts", "source": "\(host)/hosts", "options": ["bind"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}
            """)
        let plan = try HostBindMounts.plan(spec, containerID: "c9").located(in: "/run/shared", spec)
        let mounts = plan.ociSpec["mounts"]?.arrayValue ?? []
        #expect(mounts.map { $0["source"]?.stringValue } == ["proc", "/run/shared/c9/1-config", "/run/shared/c9/2-hosts", "tmpfs"])
        #expect(mounts[1]["destination"]?.stringValue == "/etc/app" && mounts[1]["options"]?[0]?.stringValue == "rbind")

        let paths = plan.requests.map(\.path)
        let base = "/run/shared/c9/1-config"
        #expect(paths == [base, base + "/app.conf", base + "/current", base + "/nested",
                          base + "/nested/blob", base + "/nested/blob", base + "/nested/blob", "/run/shared/c9/2-hosts"])
        let blob = plan.requests.filter { $0.path.hasSuffix("/blob") }
        #expect(blob.map(\.offset) == [0, 1 << 20, 2 << 20])
        #expect(blob.allSatisfy { $0.fileSize == (5 << 19) + 3 } && blob.map(\.data.count).reduce(0, +) == (5 << 19) + 3)
        #expect(plan.requests[0].fileMode & UInt32(S_IFMT) == UInt32(S_IFDIR))
        #expect(plan.requests[2].fileMode & UInt32(S_IFMT) == UInt32(S_IFLNK) && plan.requests[2].data == Data("app.conf".utf8))
        let hosts = try #require(plan.requests.last)
        #expect(hosts.fileMode == UInt32(S_IFREG | 0o640) && hosts.data == Data("10.0.0.7 db\n".utf8))
    }

    /// The source is followed as mount(2) would (a resolv.conf that links elsewhere); a
    /// pod's /dev/shm binds all point at one shared guest directory.
    @Test func aSymlinkedSourceIsItsTargetAndShmIsSharedByThePod() throws {
        let host = try RuntimeTestSupport.temporaryDirectory("kasa-binds")
        defer { try? FileManager.default.removeItem(atPath: host) }
        try "nameserver 10.0.0.53\n".write(toFile: host + "/real-resolv.conf", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: host + "/resolv.conf", withDestinationPath: host + "/real-resolv.conf")
        try FileManager.default.createDirectory(atPath: host + "/shm", withIntermediateDirectories: true)
        let spec = try Self.spec("""
            {"destination": "/etc/resolv.conf", "type": "bind", "source": "\(host)/resolv.conf", "options": ["rbind", "ro"]},
            {"destination": "/dev/shm", "type": "bind", "source": "\(host)/shm", "options": ["rbind", "rw"]}
            """)
        for container in ["app1", "app2"] {
            let plan = try HostBindMounts.plan(spec, containerID: container).located(in: "/g", spec)
            let resolv = try #require(plan.requests.first)
            #expect(resolv.fileMode & UInt32(S_IFMT) == UInt32(S_IFREG) && resolv.data == Data("nameserver 10.0.0.53\n".utf8))
            #expect(plan.requests.map(\.path) == ["/g/\(container)/1-resolv.conf", "/g/.pod-shm"])
            #expect(plan.requests[1].fileMode == UInt32(S_IFDIR) | 0o1777)
            #expect(plan.ociSpec["mounts"]?[2]?["source"]?.stringValue == "/g/.pod-shm")
        }
    }

    @Test func whatCannotBeCopiedIsRefusedNamingTheMount() throws {
        let host = try RuntimeTestSupport.temporaryDirectory("kasa-binds")
        defer { try? FileManager.default.removeItem(atPath: host) }
        try Data(repeating: 1, count: 4096).write(to: URL(filePath: host + "/big"))
        try FileManager.default.createDirectory(atPath: host + "/many", withIntermediateDirectories: true)
        for name in ["a", "b", "c"] { try "x".write(toFile: host + "/many/" + name, atomically: false, encoding: .utf8) }
        let cases: [(String, String)] = [
            (#"{"destination": "/x", "type": "bind", "source": "\#(host)/missing"}"#, "No such file"),
            (#"{"destination": "/x", "type": "bind", "source": "/dev/null"}"#, "not a regular file, directory or symlink"),
            (#"{"destination": "/x", "type": "bind", "source": "relative/path"}"#, "absolute source"),
            (#"{"destination": "/x", "type": "bind", "source": "\#(host)/big"}"#, "more than 1000 bytes to copy into the VM"),
            (#"{"destination": "/x", "type": "bind", "source": "\#(host)/many"}"#, "more than 3 files to copy into the VM"),
        ]
        for (mount, reason) in cases {
            let error = #expect(throws: RuntimeError.self) {
                _ = try HostBindMounts.plan(try Self.spec(mount), containerID: "c", limitBytes: 1000, limitEntries: 3)
            }
            #expect(error?.description.contains(reason) == true, "\(mount): \(String(describing: error))")
            if !mount.contains("relative") { #expect(error?.description.contains("on /x") == true, "\(String(describing: error))") }
        }
        #expect(try HostBindMounts.plan(try Self.spec(#"{"destination": "/t", "type": "tmpfs", "source": "tmpfs"}"#), containerID: "c").isEmpty)
    }
}

extension ContainerRunTests {
    /// A bundle's bind mounts of host files reach the container as copies: it reads them,
    /// and what it writes to a writable one stays in the sandbox.
    @Test func hostFilesBoundIntoTheContainerAreCopiedIn() throws {
        let fixture = try Fixture()
        let bundle = try fixture.makeBundle()
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        try FileManager.default.createDirectory(atPath: bundle + "/secrets", withIntermediateDirectories: true)
        try "s3cret\n".write(toFile: bundle + "/secrets/token", atomically: false, encoding: .utf8)
        try "10.0.0.7 db\n".write(toFile: bundle + "/hosts", atomically: false, encoding: .utf8)
        try """
            {"ociVersion": "1.1.0",
             "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
                         "args": ["/bin/sh", "-c", "cat /var/run/secrets/token /etc/hosts; echo changed > /etc/hosts"], "env": ["PATH=/bin"]},
             "root": {"path": "rootfs"},
             "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                        {"destination": "/var/run/secrets", "type": "bind", "source": "\(bundle)/secrets", "options": ["rbind", "ro"]},
                        {"destination": "/etc/hosts", "type": "bind", "source": "\(bundle)/hosts", "options": ["rbind", "rw"]}]}
            """.write(toFile: bundle + "/config.json", atomically: true, encoding: .utf8)
        let (run, backend) = try fixture.makeBundleRun(bundle, idPrefix: "binds")
        let stdio = CapturedStdio()
        #expect(try run.run(stdio: stdio.stdio) == 0)
        let (stdout, stderr) = stdio.finish()
        #expect(stdout == "s3cret\n10.0.0.7 db\n", "\(stderr)")
        #expect(try String(contentsOfFile: bundle + "/hosts", encoding: .utf8) == "10.0.0.7 db\n", "the container wrote to the host's file")
        fixture.expectNothingLeft(backend)
    }
}
