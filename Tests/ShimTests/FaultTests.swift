import Foundation
import Runtime
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Faults around a sandbox: its VM going away under a running task must end the task with
/// a clear status (255, as for any task whose sandbox died, published in the exit event);
/// a shim dying while it creates one must not fail the cleanup. Either way nothing may be
/// left once containerd has removed the task. A guest kernel panic (the guest kernel has no
/// magic SysRq: a privileged container turns on `vm.panic_on_oom` and runs out of memory)
/// ends the task the same way, and the shim's log names the panic.
///
/// In ContainerdTests' serialized suite (see StressTests.swift for why).
extension ContainerdTests {

    /// Starts `script` detached as task `id`, with `ctr events` recording into a file.
    struct WatchedTask {
        let containerd: C.Containerd
        let id: String
        let events: Process
        let eventLog: String

        init(_ containerd: C.Containerd, id: String, script: String, extra: [String] = []) throws {
            self.containerd = containerd
            self.id = id
            eventLog = containerd.directory + "/events-\(id).log"
            FileManager.default.createFile(atPath: eventLog, contents: nil)
            events = Process()
            events.executableURL = URL(filePath: "/usr/bin/ctr")
            events.arguments = ["--address", containerd.socket, "events"]
            events.standardOutput = try FileHandle(forWritingTo: URL(filePath: eventLog))
            events.standardError = FileHandle.nullDevice
            try events.run()
            let run = try C.ctr(containerd, ["run", "-d", "--runtime", "io.containerd.kata.v2"] + extra
                                    + ["--rootfs", try C.busyboxRootfs(), id, "sh", "-c", script], timeout: 480)
            if run.status != 0 {
                kill(events.processIdentifier, SIGKILL)
                throw C.Missing(description: "ctr run \(id): \(run.stderr)\ncontainerd log:\n\(containerd.tail)")
            }
        }

        /// The exit status of the task's exit event, once there is one (nil after `seconds`).
        func exitStatus(within seconds: Double) -> Int? {
            var status: Int?
            _ = C.waitFor(seconds) {
                let text = (try? String(contentsOfFile: eventLog, encoding: .utf8)) ?? ""
                guard let line = text.split(separator: "\n").first(where: { $0.contains("/tasks/exit") && $0.contains("\"\(id)\"") }),
                      let range = line.range(of: "\"exit_status\":") else { return false }
                status = Int(line[range.upperBound...].prefix { $0.isNumber })
                // An exit status of 0 is left out of the event's JSON.
                if status == nil { status = 0 }
                return true
            }
            return status
        }

        /// Removes the task and container, then checks nothing of them is left.
        func removeAndExpectNothingLeft(_ context: String) throws {
            let removed = try C.ctr(containerd, ["task", "rm", id], timeout: 60)
            #expect(removed.status == 0, "task rm \(id): \(removed.stderr) \(context)")
            _ = try C.ctr(containerd, ["container", "rm", id])
            kill(events.processIdentifier, SIGKILL)
            events.waitUntilExit()
            let gone = C.waitFor(30) { containerd.leftovers().isEmpty }
            #expect(gone, "processes left after \(id): \(containerd.leftovers()) \(context)")
            let states = try C.entries(of: containerd.directory + "/kasa-state")
            #expect(states.isEmpty, "sandbox state left after \(id): \(states)")
        }
    }

    /// The shims this containerd started (their environment names its directory).
    static func shimProcesses(_ containerd: C.Containerd) -> [Int32] {
        C.processes(mentioning: "containerd-shim-kata-v2").filter { pid in
            (try? String(contentsOfFile: "/proc/\(pid)/environ", encoding: .utf8))?.contains(containerd.directory) == true
        }
    }

    static func vmmProcesses(_ containerd: C.Containerd) -> [Int32] {
        C.processes(mentioning: containerd.directory + "/kasa-state/").filter { pid in
            (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("kasa-vmm") == true
        }
    }

    @Test(.timeLimit(.minutes(20)))
    func aVMKilledUnderARunningTaskEndsItWith255AndLeavesNothing() throws {
        let containerd = try C.Containerd()
        let task = try WatchedTask(containerd, id: "vmm-killed", script: "\(ContainerdTests.idleLoop)")
        let vmms = Self.vmmProcesses(containerd)
        try #require(vmms.count == 1, "one kasa-vmm: \(vmms)")
        kill(vmms[0], SIGKILL)
        let status = task.exitStatus(within: 60)
        #expect(status == 255, "the task's exit status after its VM was killed: \(String(describing: status))\n\(containerd.tail)")
        #expect(try C.ctr(containerd, ["task", "ls"]).stdout.contains("STOPPED"))
        try task.removeAndExpectNothingLeft(containerd.tail)
    }

    /// A privileged container's script that sets its own cgroup's memory.max far below
    /// what it uses: the kernel's reclaim fails and the OOM killer runs in the write itself.
    /// (Filling memory instead takes minutes on kvm_pvm: every new page is zeroed by
    /// emulated kernel code, docs/kvm-pvm.md.) The sleep lets `ctr run -d` return first.
    static let outOfMemoryAtOnce = """
        mkdir -p /cgroup && mount -t cgroup2 none /cgroup || exit 10
        own=$(sed -n 's/^0:://p' /proc/self/cgroup)
        sleep 2
        echo 4096 > "/cgroup$own/memory.max"
        """

    /// An OOM kill in the guest reaches containerd as the `/tasks/oom` event (the agent
    /// answers the shim's GetOOMEvent when the container's memory.events counts it), and
    /// the killed task ends with 137.
    @Test(.timeLimit(.minutes(20)))
    func anOOMKillInTheGuestIsPublishedToContainerd() throws {
        let containerd = try C.Containerd()
        let task = try WatchedTask(containerd, id: "oom", script: Self.outOfMemoryAtOnce + "\nexec sleep 3600", extra: ["--privileged"])
        let status = task.exitStatus(within: 180)
        #expect(status == 137, "the exit status of the OOM-killed task: \(String(describing: status))\n\(containerd.tail)")
        let published = C.waitFor(30) {
            ((try? String(contentsOfFile: task.eventLog, encoding: .utf8)) ?? "")
                .split(separator: "\n").contains { $0.contains("/tasks/oom") && $0.contains("\"oom\"") }
        }
        #expect(published, "no /tasks/oom event for the task: \((try? String(contentsOfFile: task.eventLog, encoding: .utf8)) ?? "")")
        try task.removeAndExpectNothingLeft(containerd.tail)
    }

    /// A privileged container may change the guest kernel's settings (its VM is its
    /// boundary): with `vm.panic_on_oom = 2` an out-of-memory kill in any memory cgroup is
    /// a kernel panic. The guest resets (`panic=-1`), kasa-vmm ends, the task ends with 255,
    /// and the shim logs the kernel's reason, not just kasa-vmm's exit status.
    @Test(.timeLimit(.minutes(20)))
    func aGuestKernelPanicEndsTheTaskWith255AndTheShimNamesIt() throws {
        let containerd = try C.Containerd()
        let script = "echo 2 > /proc/sys/vm/panic_on_oom || exit 9\n" + Self.outOfMemoryAtOnce + "\nexit 8"
        let task = try WatchedTask(containerd, id: "panics", script: script, extra: ["--privileged"])
        let status = task.exitStatus(within: 180)
        #expect(status == 255, "the task's exit status after its guest panicked: \(String(describing: status))\n\(containerd.tail)")
        let log = { (try? String(contentsOfFile: containerd.log, encoding: .utf8)) ?? "" }
        let named = C.waitFor(30) { log().contains("the sandbox stopped: the guest kernel panicked: Out of memory") }
        #expect(named, "the shim's log should name the panic:\n\(containerd.tail)")
        #expect(try C.ctr(containerd, ["task", "ls"]).stdout.contains("STOPPED"))
        try task.removeAndExpectNothingLeft(containerd.tail)
    }

    /// The shim killed with SIGKILL while it creates the sandbox (kasa-vmm already
    /// started): `ctr run` fails, and containerd's cleanup (`containerd-shim-kata-v2
    /// delete`) with kasa-vmm's own watch on its parent leave no process and no state.
    @Test(.timeLimit(.minutes(20)))
    func aShimKilledDuringCreateLeavesNothing() throws {
        let containerd = try C.Containerd()
        let rootfs = try C.busyboxRootfs()
        let outcome = C.Results(count: 1)
        let socket = containerd.socket
        let finished = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            outcome.set(0, try? C.run("/usr/bin/ctr", ["--address", socket, "run", "-d", "--runtime", "io.containerd.kata.v2",
                                                       "--rootfs", rootfs, "doomed", "sh", "-c", "echo never"], timeout: 480))
            finished.signal()
        }
        let vmmStarted = C.waitFor(240) { !Self.vmmProcesses(containerd).isEmpty }
        try #require(vmmStarted, "kasa-vmm never started: \(containerd.tail)")
        let shims = Self.shimProcesses(containerd)
        try #require(shims.count == 1, "one shim: \(shims)")
        // Its cgroup (sandbox_cgroup_only), which only containerd's cleanup can remove now.
        let cgroup = SandboxCgroup.unifiedHierarchy().flatMap { hierarchy in
            Self.vmmProcesses(containerd).first.flatMap { VMMConfinementProbe.cgroupDirectory(of: $0, hierarchy: hierarchy) }
        }
        kill(shims[0], SIGKILL)
        #expect(finished.wait(timeout: .now() + 300) == .success, "ctr run did not return after its shim died")
        let result = outcome.all[0]
        #expect(result.map { $0.status != 0 } ?? false, "ctr run must fail: \(String(describing: result))")
        _ = try C.ctr(containerd, ["container", "rm", "doomed"])
        let gone = C.waitFor(60) { containerd.leftovers().isEmpty && Self.vmmProcesses(containerd).isEmpty }
        #expect(gone, "processes left: \(containerd.leftovers()) \(containerd.tail)")
        let states = try C.entries(of: containerd.directory + "/kasa-state")
        #expect(states.isEmpty, "sandbox state left: \(states)")
        let tasks = try C.ctr(containerd, ["task", "ls", "-q"])
        #expect(tasks.stdout.isEmpty, "tasks left: \(tasks.stdout)")
        if let cgroup {
            #expect(cgroup.contains("/kasa/doomed-"), "the VMM's cgroup: \(cgroup)")
            #expect(!FileManager.default.fileExists(atPath: cgroup), "the sandbox's cgroup \(cgroup) was left")
        }
    }
}
