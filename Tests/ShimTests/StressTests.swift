import Foundation
import Runtime
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Many sandboxes through containerd, one after another and four at a time (from the VM
/// template, as shipped, which makes this affordable on kvm_pvm): every one must run its
/// workload, and afterwards nothing may be left — no shim, VMM or logger process, no
/// sandbox state, no mount under the test's directory — while each sandbox's shim and VMM
/// hold the same number of descriptors as the first one's (a leak per sandbox shows there).
///
/// In CRITests' serialized suite, though it drives `ctr`: scripts/test.sh runs the
/// containerd suites last, on their own, and their two serialized suites take two threads.
/// A third suite of its own ran three VM tests at once on two cores, and every one of them
/// slowed far beyond a third (32 minutes for a phase of about 31 minutes of tests alone,
/// 16 for two suites before about 6 minutes of tests were added); ContainerdTests and
/// CRITests with this test in the second take about as long as each other. (Its test
/// blocks a thread for minutes; beside the VM suites it once left Swift Testing's pool
/// with none, and time-limited quick tests failed: GuestProfilerTests, in a full run.)
extension CRITests {
    typealias C = ContainerdTests

    static let stressInTurn = 20
    static let stressRounds = 5, stressAtATime = 4

    @Test(.timeLimit(.minutes(30)))
    func twentySandboxesInTurnThenFourAtATimeLeaveNothingBehind() throws {
        let containerd = try C.Containerd()
        let rootfs = try C.busyboxRootfs()
        let context = { "containerd log:\n\(containerd.tail)" }

        // In turn: each runs detached; while it runs, its shim's and VMM's descriptors are
        // counted; then it is killed and removed as a kubelet would.
        var counts: [(shim: Int, vmm: Int)] = []
        for index in 0..<Self.stressInTurn {
            let id = "turn\(index)"
            let run = try C.ctr(containerd, ["run", "-d", "--runtime", "io.containerd.kata.v2", "--rootfs", rootfs,
                                             id, "sh", "-c", "echo up; \(ContainerdTests.idleLoop)"], timeout: 480)
            try #require(run.status == 0, "sandbox \(index): ctr run: \(run.stderr)\n\(context())")
            let shims = C.processes(mentioning: "-id \(id) ").filter { pid in
                (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("containerd-shim") == true
            }
            let vmms = C.processes(mentioning: containerd.directory + "/kasa-state/").filter { pid in
                (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("kasa-vmm") == true
            }
            if shims.count == 1, vmms.count == 1, let shim = C.descriptorCount(shims[0]), let vmm = C.descriptorCount(vmms[0]) {
                counts.append((shim, vmm))
            } else {
                Issue.record("sandbox \(index): expected one shim and one kasa-vmm, found \(shims) and \(vmms)")
            }
            let killed = try C.ctr(containerd, ["task", "kill", "--signal", "SIGKILL", id], timeout: 60)
            #expect(killed.status == 0, "sandbox \(index): \(killed.stderr)")
            let stopped = try C.waitFor(60) { try C.ctr(containerd, ["task", "ls"]).stdout.contains("STOPPED") }
            #expect(stopped, "sandbox \(index) did not stop after SIGKILL")
            let removed = try C.ctr(containerd, ["task", "rm", id], timeout: 60)
            #expect(removed.status == 0, "sandbox \(index): task rm: \(removed.stderr)")
            _ = try C.ctr(containerd, ["container", "rm", id])
        }
        if let first = counts.first {
            // Threads come and go with requests in flight: a couple of descriptors either way.
            let drifting = counts.enumerated().filter { abs($0.element.shim - first.shim) > 2 || abs($0.element.vmm - first.vmm) > 2 }
            #expect(drifting.isEmpty, "descriptor counts (shim, kasa-vmm) per sandbox: \(counts)")
        }

        // Four at a time: `ctr run --rm`, each printing its own line and exiting 0.
        for round in 0..<Self.stressRounds {
            let results = C.Results(count: Self.stressAtATime)
            let socket = containerd.socket
            DispatchQueue.concurrentPerform(iterations: Self.stressAtATime) { slot in
                let id = "round\(round)-\(slot)"
                results.set(slot, try? C.run("/usr/bin/ctr", ["--address", socket, "run", "--rm", "--runtime", "io.containerd.kata.v2", "--rootfs", rootfs,
                                                          id, "sh", "-c", "echo ok \(id)"], timeout: 600))
            }
            for (slot, outcome) in results.all.enumerated() {
                let id = "round\(round)-\(slot)"
                #expect(outcome?.stdout == "ok \(id)\n" && outcome?.status == 0,
                        "\(id): \(outcome.map { "status \($0.status), stdout \($0.stdout.debugDescription), stderr \($0.stderr)" } ?? "ctr did not run")")
            }
        }

        // Nothing left: processes, sandbox state, mounts, tasks.
        Thread.sleep(forTimeInterval: 1)
        #expect(containerd.leftovers().isEmpty, "shim, VMM or logger processes left: \(containerd.leftovers())")
        let states = try C.entries(of: containerd.directory + "/kasa-state")
        #expect(states.isEmpty, "sandbox state left: \(states)")
        let mounted = try C.mounts(under: containerd.directory)
        #expect(mounted.isEmpty, "mounts left: \(mounted)")
        let tasks = try C.ctr(containerd, ["task", "ls", "-q"])
        #expect(tasks.stdout.isEmpty, "tasks left: \(tasks.stdout)")
    }
}

/// What the stress and fault tests share.
extension ContainerdTests {
    typealias C = ContainerdTests

    /// Descriptors a process holds now (nil: it is gone or cannot be read).
    static func descriptorCount(_ pid: Int32) -> Int? {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
    }

    /// Mount points at or under `directory` in this process's mount table.
    static func mounts(under directory: String) throws -> [String] {
        guard let points = HostMounts.lookedUp(under: directory) else {
            throw C.CheckCannotLook(path: "/proc/self/mountinfo", reason: "cannot be read")
        }
        return points
    }

    /// What the concurrent runs of one round returned, by slot.
    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var outcomes: [C.Outcome?]
        init(count: Int) { outcomes = Array(repeating: nil, count: count) }
        func set(_ slot: Int, _ outcome: C.Outcome?) { lock.withLock { outcomes[slot] = outcome } }
        var all: [C.Outcome?] { lock.withLock { outcomes } }
    }
}
