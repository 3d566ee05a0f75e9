import Testing
@testable import KataAgentCore

/// config.json parsing and validation, and the launch specs it produces.
struct OCISpecTests {
    /// A config.json as containerd/runc generate it (trimmed), with fields we ignore.
    static let sample = """
    {
      "ociVersion": "1.1.0",
      "process": {
        "terminal": false,
        "user": { "uid": 1000, "gid": 1000, "additionalGids": [10, 20] },
        "args": ["sh", "-c", "echo hi"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/work",
        "capabilities": {
          "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
          "effective": ["CAP_CHOWN", "CAP_KILL"],
          "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
          "ambient": ["CAP_NET_BIND_SERVICE"]
        },
        "rlimits": [
          { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512 },
          { "type": "RLIMIT_CORE", "hard": 18446744073709551615, "soft": 18446744073709551615 }
        ],
        "noNewPrivileges": true,
        "apparmorProfile": "ignored",
        "oomScoreAdj": 0
      },
      "root": { "path": "rootfs", "readonly": true },
      "hostname": "box",
      "mounts": [
        { "destination": "/proc", "type": "proc", "source": "proc" },
        { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
        { "destination": "/etc/hosts", "source": "hosts", "options": ["rbind", "ro"] },
        { "destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "rw"] }
      ],
      "hooks": { "prestart": [] },
      "annotations": { "io.kubernetes.cri.container-type": "container" },
      "linux": {
        "namespaces": [ { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" },
                        { "type": "network", "path": "/var/run/netns/cni-1" } ],
        "resources": {
          "devices": [ { "allow": false, "access": "rwm" } ],
          "memory": { "limit": 536870912 },
          "cpu": { "shares": 1024, "quota": 50000, "period": 100000 },
          "pids": { "limit": 100 }
        },
        "cgroupsPath": "/kubepods/pod1/ctr1",
        "maskedPaths": ["/proc/kcore", "/sys/firmware"],
        "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        "seccomp": { "defaultAction": "SCMP_ACT_ERRNO" }
      }
    }
    """

    @Test func parsesTheSample() throws {
        let spec = try OCISpec.parse(Array(Self.sample.utf8))
        #expect(spec.ociVersion == "1.1.0")
        #expect(spec.process?.args == ["sh", "-c", "echo hi"])
        #expect(spec.process?.user == .init(uid: 1000, gid: 1000, additionalGids: [10, 20]))
        #expect(spec.process?.rlimits?.last == .init(type: "RLIMIT_CORE", hard: .max, soft: .max))
        #expect(spec.root == .init(path: "rootfs", readonly: true))
        #expect(spec.mounts?.count == 4)
        #expect(spec.mounts?[2].type == nil)
        #expect(spec.linux?.resources?.memory?.limit == 536_870_912)
        #expect(spec.linux?.resources?.cpu == .init(shares: 1024, quota: 50_000, period: 100_000))
        #expect(spec.linux?.resources?.pids?.limit == 100)
        #expect(spec.linux?.namespaces?.last == .init(type: "network", path: "/var/run/netns/cni-1"))
        #expect(spec.linux?.cgroupsPath == "/kubepods/pod1/ctr1")
    }

    @Test func launchSpecFromTheBundle() throws {
        let spec = try OCISpec.parse(Array(Self.sample.utf8))
        let launch = try spec.launchSpec(bundle: "/run/bundles/ctr1/")
        #expect(launch.rootfs == "/run/bundles/ctr1/rootfs")
        #expect(launch.readonlyRootfs)
        #expect(launch.hostname == "box")
        #expect(launch.args == ["sh", "-c", "echo hi"])
        #expect(launch.env.count == 2)
        #expect(launch.cwd == "/work")
        #expect(launch.uid == 1000 && launch.gid == 1000 && launch.additionalGids == [10, 20])
        #expect(launch.noNewPrivileges)
        #expect(launch.rlimits == [.init(type: "RLIMIT_NOFILE", soft: 512, hard: 1024),
                                   .init(type: "RLIMIT_CORE", soft: .max, hard: .max)])
        #expect(launch.capabilitySets == .init(bounding: ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                                               effective: ["CAP_CHOWN", "CAP_KILL"],
                                               permitted: ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                                               inheritable: [], ambient: ["CAP_NET_BIND_SERVICE"]))
        #expect(launch.maskedPaths == ["/proc/kcore", "/sys/firmware"])
        #expect(launch.readonlyPaths == ["/proc/sys", "/proc/sysrq-trigger"])
        #expect(launch.mounts[1] == .init(destination: "/dev", type: "tmpfs", source: "tmpfs",
                                          options: ["nosuid", "strictatime", "mode=755", "size=65536k"]))
        // A bind without a type, with a bundle-relative source.
        #expect(launch.mounts[2] == .init(destination: "/etc/hosts", type: "bind", source: "/run/bundles/ctr1/hosts",
                                          options: ["rbind", "ro"]))
        #expect(launch.mounts[3].source == "/srv/data")
        #expect(launch.namespaces == .create)
        #expect(launch.cgroupPath == nil)
        #expect(!launch.terminal)
    }

    @Test func launchSpecWithAPreparedRootfs() throws {
        let spec = try OCISpec.parse(Array(Self.sample.utf8))
        let launch = try spec.launchSpec(rootfs: "/run/kasa/ctr1/rootfs", bundle: "/run/kasa/ctr1",
                                         namespaces: .create, cgroupPath: "/sys/fs/cgroup/kasa-ctr1")
        #expect(launch.rootfs == "/run/kasa/ctr1/rootfs")
        #expect(launch.cgroupPath == "/sys/fs/cgroup/kasa-ctr1")
        // Without a bundle, a relative bind source cannot be resolved.
        #expect(throws: OCISpecError("mounts[2].source: relative bind source \"hosts\" needs a bundle directory")) {
            _ = try spec.launchSpec(rootfs: "/run/kasa/ctr1/rootfs")
        }
        #expect(throws: OCISpecError("rootfs: must be an absolute path, got \"rootfs\"")) {
            _ = try spec.launchSpec(rootfs: "rootfs", bundle: "/b")
        }
    }

    @Test func execProcessJoinsTheContainer() throws {
        let container = try OCISpec.parse(Array(Self.sample.utf8))
            .launchSpec(bundle: "/b", cgroupPath: "/sys/fs/cgroup/kasa-ctr1")
        let process = try OCISpec.Process.parse(Array(#"{"args":["ps"],"cwd":"/","env":["A=1"],"terminal":true}"#.utf8))
        let exec = try process.launchSpec(joining: container, pid: 4242)
        #expect(exec.namespaces == .join(pid: 4242))
        #expect(exec.args == ["ps"] && exec.env == ["A=1"] && exec.terminal)
        #expect(exec.cgroupPath == "/sys/fs/cgroup/kasa-ctr1")
        #expect(exec.capabilities == nil && exec.capabilitySets == nil)
        #expect(exec.mounts.isEmpty && exec.hostname == nil)
    }

    /// A valid minimal config with `edit` applied to its JSON object text.
    static func config(process: String = #"{"args":["/bin/true"],"cwd":"/"}"#, extra: String = "") -> [UInt8] {
        Array(#"{"ociVersion":"1.0.2","process":\#(process),"root":{"path":"/r"}\#(extra)}"#.utf8)
    }

    @Test func minimalConfigIsValid() throws {
        let spec = try OCISpec.parse(Self.config())
        let launch = try spec.launchSpec(bundle: "/b")
        #expect(launch.rootfs == "/r")
        #expect(launch.uid == 0 && launch.capabilities == nil && launch.mounts.isEmpty)
    }

    @Test(arguments: [
        (#"{"ociVersion":"1.0.2","root":{"path":"r"}}"#, "process: required to start a container"),
        (#"{"process":{"args":["a"],"cwd":"/"}}"#, "ociVersion: required field missing"),
        (#"{"ociVersion":"1.0.2","process":{"args":[],"cwd":"/"}}"#, "process.args: must name the program to run"),
        (#"{"ociVersion":"1.0.2","process":{"cwd":"/"}}"#, "process.args: must name the program to run"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"]}}"#, "process.cwd: required"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"work"}}"#, "process.cwd: must be an absolute path, got \"work\""),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","env":["OK=1","BROKEN"]}}"#,
         "process.env[1]: \"BROKEN\" is not KEY=VALUE"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","rlimits":[{"type":"RLIMIT_FOO","hard":1,"soft":1}]}}"#,
         "process.rlimits[0].type: unknown rlimit \"RLIMIT_FOO\""),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","hard":1,"soft":2}]}}"#,
         "process.rlimits[0]: soft limit 2 exceeds hard limit 1"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","hard":1,"soft":1},{"type":"RLIMIT_NOFILE","hard":1,"soft":1}]}}"#,
         "process.rlimits[1].type: RLIMIT_NOFILE appears twice"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","soft":1}]}}"#,
         "process.rlimits[0].hard: required field missing"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","capabilities":{"effective":["CAP_KILL","CAP_FLY"]}}}"#,
         "process.capabilities.effective: unknown capability \"CAP_FLY\""),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","user":{"uid":"root","gid":0}}}"#,
         "process.user.uid: expected an unsigned 32-bit integer"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","user":{"uid":-1,"gid":0}}}"#,
         "process.user.uid: must be an integer from 0 to 4294967295, got -1"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","user":{"uid":0,"gid":4294967296}}}"#,
         "process.user.gid: must be an integer from 0 to 4294967295, got 4294967296"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","user":{"uid":0,"gid":0,"additionalGids":[1,-5]}}}"#,
         "process.user.additionalGids: -5 is not an integer from 0 to 4294967295"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","hard":-1,"soft":1}]}}"#,
         "process.rlimits[0].hard: must be an integer from 0 to 18446744073709551615, got -1"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"linux":{"resources":{"cpu":{"shares":-2}}}}"#,
         "linux.resources.cpu.shares: must be an integer from 0 to 18446744073709551615, got -2"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"mounts":[{"destination":"tmp","type":"tmpfs"}]}"#,
         "mounts[0].destination: must be an absolute path, got \"tmp\""),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"mounts":[{"destination":"/tmp"}]}"#,
         "mounts[0].type: required unless the options include bind or rbind"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"mounts":[{"destination":"/x","options":["bind"]}]}"#,
         "mounts[0].source: a bind mount needs a source"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"mounts":[{"type":"tmpfs"}]}"#,
         "mounts[0].destination: required field missing"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"linux":{"maskedPaths":["proc/kcore"]}}"#,
         "linux.maskedPaths[0]: must be an absolute path, got \"proc/kcore\""),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"linux":{"readonlyPaths":["/ok","sys"]}}"#,
         "linux.readonlyPaths[1]: must be an absolute path, got \"sys\""),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"linux":{"namespaces":[{"type":"pids"}]}}"#,
         "linux.namespaces[0].type: unknown namespace type \"pids\""),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]}}"#,
         "linux.namespaces[1].type: \"pid\" appears twice"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"root":{"readonly":true}}"#,
         "root.path: required field missing"),
        (#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"},"linux":{"resources":{"pids":{}}}}"#,
         "linux.resources.pids.limit: required field missing"),
        (#"{"ociVersion":"1.0.2","process":[]}"#, "process: expected an object"),
    ])
    func invalidConfigs(json: String, message: String) {
        #expect(throws: OCISpecError(message)) { _ = try OCISpec.parse(Array(json.utf8)) }
    }

    @Test func notJSONAtAll() {
        #expect {
            _ = try OCISpec.parse(Array("{ not json".utf8))
        } throws: { error in
            (error as? OCISpecError)?.description.hasPrefix("config.json: invalid JSON") == true
        }
        #expect(throws: OCISpecError.self) { _ = try OCISpec.parse([]) }
    }

    @Test func bundleRootIsRequiredForBundleLaunch() throws {
        let spec = try OCISpec.parse(Array(#"{"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/"}}"#.utf8))
        #expect(throws: OCISpecError("root: required to find the container's root filesystem")) {
            _ = try spec.launchSpec(bundle: "/b")
        }
        #expect(throws: OCISpecError("bundle: must be an absolute path, got \"b\"")) {
            _ = try OCISpec.parse(Self.config()).launchSpec(bundle: "b")
        }
        #expect(try OCISpec.parse(Self.config(extra: "")).launchSpec(bundle: "/b").rootfs == "/r")
    }

    @Test func relativeRootForms() {
        #expect(OCISpec.resolve("rootfs", against: "/b") == "/b/rootfs")
        #expect(OCISpec.resolve("./rootfs", against: "/b/") == "/b/rootfs")
        #expect(OCISpec.resolve(".", against: "/b") == "/b")
        #expect(OCISpec.resolve("/abs", against: "/b") == "/abs")
    }

    @Test func launchSpecRoundTripsThroughJSON() throws {
        // What crosses the exec boundary to container init.
        let launch = try OCISpec.parse(Array(Self.sample.utf8)).launchSpec(bundle: "/b", namespaces: .join(pid: 7))
        let data = try JSONEncoderForTests.encode(launch)
        #expect(try JSONEncoderForTests.decode(data) == launch)
        // Older JSON without capabilitySets still decodes.
        let old = #"{"rootfs":"/r","readonlyRootfs":false,"mounts":[],"args":["a"],"env":[],"cwd":"/","uid":0,"gid":0,"additionalGids":[],"noNewPrivileges":false,"rlimits":[],"maskedPaths":[],"readonlyPaths":[],"namespaces":{"create":{}},"terminal":false}"#
        let decoded = try JSONEncoderForTests.decode(Array(old.utf8))
        #expect(decoded.capabilitySets == nil && decoded.namespaces == .create)
    }
}

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

enum JSONEncoderForTests {
    static func encode(_ spec: ContainerLaunchSpec) throws -> [UInt8] { Array(try JSONEncoder().encode(spec)) }
    static func decode(_ bytes: [UInt8]) throws -> ContainerLaunchSpec {
        try JSONDecoder().decode(ContainerLaunchSpec.self, from: Data(bytes))
    }
}
