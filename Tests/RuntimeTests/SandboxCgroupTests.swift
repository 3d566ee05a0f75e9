import Foundation
import Testing
@testable import Runtime

/// `sandbox_cgroup_only`: where the host's cgroup v2 hierarchy is, and a sandbox's cgroup
/// made, joined by a child before it runs, and removed once the child is gone.
@Suite struct SandboxCgroupTests {
    static let unified = """
        25 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
        26 1 0:23 / /proc rw - proc proc rw
        """
    static let hybrid = """
        30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
        31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
        40 30 0:35 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
        """

    @Test func theUnifiedHierarchyIsFoundOnUnifiedAndHybridHostsAndNotInvented() {
        #expect(SandboxCgroup.unifiedHierarchy(mountinfo: Self.unified) == "/sys/fs/cgroup")
        #expect(SandboxCgroup.unifiedHierarchy(mountinfo: Self.hybrid) == "/sys/fs/cgroup/unified")
        #expect(SandboxCgroup.unifiedHierarchy(mountinfo: "31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory") == nil)
        #expect(SandboxCgroup.unifiedHierarchy(mountinfo: "") == nil)
    }

    @Test func twoRuntimesWithTheSameSandboxIDGetDifferentCgroups() {
        let first = SandboxCgroup.name(sandboxID: "pod1", stateDirectory: "/run/kasa/sandboxes/pod1")
        let second = SandboxCgroup.name(sandboxID: "pod1", stateDirectory: "/tmp/other/pod1")
        #expect(first != second)
        #expect(first.hasPrefix("pod1-") && second.hasPrefix("pod1-"))
        #expect(first == SandboxCgroup.name(sandboxID: "pod1", stateDirectory: "/run/kasa/sandboxes/pod1"), "the same sandbox finds its cgroup again")
    }

    /// On this host (cgroup v2 mounted, run as root): the child is in the cgroup from its
    /// first instruction, and the cgroup goes once the child has.
    @Test func aChildJoinsItsCgroupBeforeItRunsAndTheCgroupIsRemovedAfterIt() throws {
        let hierarchy = try #require(SandboxCgroup.unifiedHierarchy(), "this host mounts no cgroup v2 hierarchy")
        let state = "/tmp/kasa-cgroup-test-\(getpid())"
        let cgroup = try SandboxCgroup.make(sandboxID: "cgroup-test", stateDirectory: state, hierarchy: hierarchy)
        defer { cgroup.remove() }
        #expect(cgroup.path.hasPrefix(hierarchy + "/kasa/cgroup-test-"))
        #expect(cgroup.processes == [])
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-cgroup-\(getpid()).out").path
        defer { unlink(output) }
        // The child's first command reads its own cgroup: it was there before the exec.
        let child = try ChildProcess("/bin/sh", ["-c", "cat /proc/self/cgroup; exec sleep 30"], stdout: .file(output),
                                     placement: .init(cgroup: cgroup.path))
        let relative = String(cgroup.path.dropFirst(hierarchy.count))
        var joined = false
        for _ in 0..<200 where !joined {
            joined = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("0::" + relative + "\n")
            if !joined { usleep(10_000) }
        }
        #expect(joined, "the child's cgroup: \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
        // cat has written its line but may not have exited yet (a full suite saw it there).
        var processes = cgroup.processes
        for _ in 0..<200 where processes != [child.pid] {
            usleep(10_000)
            processes = cgroup.processes
        }
        #expect(processes == [child.pid])
        #expect(!cgroup.remove(waitingUpTo: 0), "a cgroup with a process in it cannot go")
        child.signal(SIGKILL)
        child.wait()
        #expect(cgroup.remove(), "the empty cgroup is removed")
        #expect(!FileManager.default.fileExists(atPath: cgroup.path))
        #expect(cgroup.remove(), "removing it again is not an error")
    }

    @Test func aCgroupThatCannotBeMadeIsAClearError() {
        #expect(throws: RuntimeError.self) {
            try SandboxCgroup.make(sandboxID: "x", stateDirectory: "/s", hierarchy: "/no/such/hierarchy")
        }
    }
}
