import AgentProtocol
import Foundation
import Runtime
import ShimProtocol
import SwiftProtobuf
import Testing

/// Real containerd (Debian's 1.6, started here with its own root, state and socket) runs
/// containers through containerd-shim-kata-v2 in Kasa microVMs, driven with `ctr` as users
/// do. On kvm_pvm each VM takes a minute or more to boot (docs/kvm-pvm.md): bounded by
/// time limits, and the shim's log is shown when something fails.
@Suite(.serialized) struct ContainerdTests {
    /// The VM template the tests share (`[factory] template_path`): kept between runs in
    /// /run like a cache (tmpfs, gone at reboot), rebuilt when kasa-vmm, the kernel or the
    /// image change. Tests with `shared_fs = "virtio-fs"` use `<path>-virtio-fs` (the
    /// runtime's own choice: that template has the virtio-fs device).
    static let templatePath = "/run/kasa/test-template"
    static let productsDirectory = URL(filePath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "")
        .deletingLastPathComponent()
    static let packageRoot = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Missing: Error, CustomStringConvertible { let description: String }

    /// A workload that runs until stopped and costs its VM nothing meanwhile. Not a
    /// `sleep 1` loop: each turn forks and executes, all kernel work, emulated on kvm_pvm;
    /// two such containers kept a pod's vCPU busy and its execs waiting.
    static let idleLoop = "while true; do sleep 3600 & wait $!; done"

    /// A containerd of our own, with the shim on its PATH and a Kasa configuration.
    /// With `cri`, its CRI plugin is on (`runtime_handler` "kata" is Kasa) and it runs in
    /// a network namespace of its own (`unshare --net`), so the CNI bridge, the pods'
    /// network namespaces and all their traffic stay inside namespaces the test made.
    final class Containerd {
        let directory: String
        let socket: String
        private(set) var process = Process()
        let log: String
        let cri: CRISetup?

        /// What the CRI plugin needs: the sandbox ("pause") image it starts every pod
        /// with (imported into the k8s.io namespace by the test; there is no registry)
        /// and the pods' subnets for the CNI bridge plugin (an IPv6 one too: dual stack).
        struct CRISetup {
            var sandboxImage = "docker.io/kasa/pause:test"
            var subnet = "10.88.7.0/24"
            var subnet6: String?
        }

        /// `hypervisorKeys`: more `[hypervisor.kasa]` lines for the shim's configuration.
        init(cri: CRISetup? = nil, hypervisorKeys: String = "") throws {
            guard access("/usr/bin/containerd", X_OK) == 0, access("/usr/bin/ctr", X_OK) == 0 else {
                throw Missing(description: "containerd is not installed (scripts/install-deps.sh installs Debian's containerd)")
            }
            if cri != nil {
                guard access("/usr/lib/cni/bridge", X_OK) == 0, access("/usr/lib/cni/host-local", X_OK) == 0,
                      access("/usr/lib/cni/loopback", X_OK) == 0 else {
                    throw Missing(description: "the CNI plugins are not installed (scripts/install-deps.sh installs containernetworking-plugins)")
                }
            }
            self.cri = cri
            let kernel = try ContainerdTests.artifact("KASA_TEST_KERNEL", "images/build-kernel.sh")
            let image = try ContainerdTests.artifact("KASA_TEST_AGENT_IMAGE", "images/build-agent-image.sh")
            directory = FileManager.default.temporaryDirectory.appending(path: "kasa-containerd-\(UUID().uuidString.prefix(6))").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            socket = directory + "/containerd.sock"
            log = directory + "/containerd.log"
            // Top-level keys before any table: a table header above `root` would swallow it.
            var config = """
                version = 2
                root = "\(directory)/root"
                state = "\(directory)/state"
                disabled_plugins = [\(cri == nil ? "\"io.containerd.grpc.v1.cri\"" : "")]
                [grpc]
                  address = "\(socket)"

                """
            if let cri {
                // restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE (shared/notes/networking.md).
                config += """
                    [plugins."io.containerd.grpc.v1.cri"]
                      sandbox_image = "\(cri.sandboxImage)"
                      netns_mounts_under_state_dir = true
                      restrict_oom_score_adj = true
                      [plugins."io.containerd.grpc.v1.cri".cni]
                        bin_dir = "/usr/lib/cni"
                        conf_dir = "\(directory)/cni"
                        max_conf_num = 1
                      [plugins."io.containerd.grpc.v1.cri".containerd]
                        default_runtime_name = "kata"
                      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
                        runtime_type = "io.containerd.kata.v2"

                    """
                try FileManager.default.createDirectory(atPath: directory + "/cni", withIntermediateDirectories: true)
                // No ipMasq: no iptables rules on the host; host-local keeps its leases here.
                let ranges = [cri.subnet] + (cri.subnet6.map { [$0] } ?? [])
                let routes = ["0.0.0.0/0"] + (cri.subnet6 == nil ? [] : ["::/0"])
                try """
                    {"cniVersion": "1.0.0", "name": "kasa-test",
                     "plugins": [{"type": "bridge", "bridge": "kasa-cni0", "isGateway": true, "ipMasq": false,
                                  "ipam": {"type": "host-local",
                                           "ranges": [\(ranges.map { "[{\"subnet\": \"\($0)\"}]" }.joined(separator: ", "))],
                                           "routes": [\(routes.map { "{\"dst\": \"\($0)\"}" }.joined(separator: ", "))],
                                           "dataDir": "\(directory)/cni-ipam"}}]}
                    """.write(toFile: directory + "/cni/10-kasa-test.conflist", atomically: true, encoding: .utf8)
            }
            try config.write(toFile: directory + "/config.toml", atomically: true, encoding: .utf8)
            let vmm = ContainerdTests.productsDirectory.appending(path: "kasa-vmm").path
            try """
                [hypervisor.kasa]
                path = "\(vmm)"
                kernel = "\(kernel)"
                image = "\(image)"
                \(hypervisorKeys)
                [agent.kata]
                dial_timeout = 420
                [runtime]
                state_dir = "\(directory)/kasa-state"
                image_cache_dir = "\(directory)/kasa-images"
                # As shipped (config/configuration.toml): sandboxes start from the template
                # (pods with one network interface too: its NIC slot). One template for every
                # test (and test run): a cache like the images', rebuilt when its inputs change.
                [factory]
                enable_template = true
                template_path = "\(ContainerdTests.templatePath)"
                """.write(toFile: directory + "/kasa.toml", atomically: true, encoding: .utf8)
            // Made here so that every test's "no state left" check can look, even when the
            // shim refused before it made anything.
            try FileManager.default.createDirectory(atPath: directory + "/kasa-state", withIntermediateDirectories: false)
            try Data().write(to: URL(filePath: log))
            try launch()
        }

        private func launch() throws {
            process = Process()
            if cri == nil {
                process.executableURL = URL(filePath: "/usr/bin/containerd")
                process.arguments = ["--config", directory + "/config.toml"]
            } else {
                // unshare without --fork and sh's exec: the process is containerd itself.
                // Its CRI stream server listens on 127.0.0.1, so the namespace's lo is up.
                process.executableURL = URL(filePath: "/usr/bin/unshare")
                process.arguments = ["--net", "--", "/bin/sh", "-c",
                                     "ip link set lo up && exec /usr/bin/containerd --config \"$0\"", directory + "/config.toml"]
            }
            var environment = ProcessInfo.processInfo.environment
            environment["PATH"] = ContainerdTests.productsDirectory.path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
            environment["KATA_CONF_FILE"] = directory + "/kasa.toml"
            process.environment = environment
            let handle = try FileHandle(forWritingTo: URL(filePath: log))
            handle.seekToEndOfFile()
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                if (try? ContainerdTests.ctr(self, ["version"]))?.status == 0 { return }
                usleep(200_000)
            }
            throw Missing(description: "containerd did not come up: \(tail)")
        }

        /// Stops containerd (SIGTERM, as systemd does) and starts it again on the same
        /// root and state; shims keep running meanwhile.
        func restart() throws {
            stop()
            try launch()
        }

        /// SIGTERM, then waits for the exit by /proc: Foundation's own reaping can miss the
        /// SIGCHLD in this process (seen: waitUntilExit never returned, the child a zombie).
        func stop() {
            let pid = process.processIdentifier
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(30)
            func ended() -> Bool {
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
                return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
            }
            while !ended() && Date() < deadline { usleep(100_000) }
            if !ended() { kill(pid, SIGKILL) }
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }

        /// Processes this containerd's tasks left (shims, VMMs, loggers): everything whose
        /// command line mentions its directory, but containerd itself and `excluding`.
        func leftovers(excluding others: [Int32] = []) -> [Int32] {
            ContainerdTests.processes(mentioning: directory).filter { $0 != process.processIdentifier && !others.contains($0) }
        }

        var tail: String { String((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(3000) ?? "") }

        deinit {
            stop()
            // Shims outlive containerd by design; a test's must not outlive the test.
            for pid in ContainerdTests.processes(mentioning: directory) { kill(pid, SIGKILL) }
            // A test that stopped half-way leaves its sandboxes to this: with their shims
            // killed and no containerd to run `shim delete`, their cgroups go here.
            let states = directory + "/kasa-state"
            let sandboxes = (try? FileManager.default.contentsOfDirectory(atPath: states)) ?? []
            // Their guest console and VMM log are the only account of what went wrong
            // inside; they go with the directory, so the test's output keeps their ends.
            for id in sandboxes {
                for name in ["console.log", "kasa-vmm.log"] {
                    let text = (try? String(contentsOfFile: states + "/\(id)/\(name)", encoding: .utf8)) ?? ""
                    guard !text.isEmpty else { continue }
                    FileHandle.standardError.write(Data("--- sandbox \(id) left behind: the end of its \(name):\n\(text.suffix(4000))\n---\n".utf8))
                }
            }
            if let hierarchy = SandboxCgroup.unifiedHierarchy() {
                for id in sandboxes {
                    SandboxCgroup(hierarchy: hierarchy, sandboxID: id, stateDirectory: states + "/" + id).remove()
                }
            }
            // Anything a test left mounted under the temporary root goes too.
            HostMounts.unmountAll(under: directory)
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// The entries of `path` for a "nothing left" check. A directory that cannot be read
    /// is an error: a check that cannot look must not pass.
    static func entries(of path: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw CheckCannotLook(path: path, reason: "\(error)")
        }
    }

    struct CheckCannotLook: Error, CustomStringConvertible {
        let path: String, reason: String
        var description: String { "cannot list \(path) to check that nothing was left there: \(reason)" }
    }

    /// Processes whose command line mentions `text` (the process table must be readable).
    static func processes(mentioning text: String) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else {
            Issue.record("cannot list /proc to look for left processes")
            return []
        }
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry), pid != getpid(),
                  let bytes = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            return String(decoding: bytes.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(text) ? pid : nil
        }
    }

    static func artifact(_ variable: String, _ script: String) throws -> String {
        if let path = ProcessInfo.processInfo.environment[variable], !path.isEmpty { return path }
        let process = Process()
        process.executableURL = URL(filePath: "/bin/bash")
        process.arguments = [packageRoot.appending(path: script).path, "--print-path"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0, let path = output.split(separator: "\n").last.map(String.init) else {
            throw Missing(description: "\(script) has not been built (scripts/test.sh builds it)")
        }
        return path
    }

    struct Outcome {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static func ctr(_ containerd: Containerd, _ arguments: [String], timeout: Double = 30) throws -> Outcome {
        try run("/usr/bin/ctr", ["--address", containerd.socket] + arguments, timeout: timeout)
    }

    /// Runs a program to its end (terminated after `timeout` seconds), stdin empty,
    /// stdout and stderr collected; `environment` adds to this process's. With
    /// `unblockingSignals`, through a Python one-liner that unblocks every signal first: a
    /// child inherits this test process's blocked SIGALRM, and busybox's ping and wget
    /// time out with alarm(2).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                    timeout: Double = 30, unblockingSignals: Bool = false) throws -> Outcome {
        let process = Process()
        if unblockingSignals {
            process.executableURL = URL(filePath: "/usr/bin/python3")
            process.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])",
                                 executable] + arguments
        } else {
            process.executableURL = URL(filePath: executable)
            process.arguments = arguments
        }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let collected = Collected()
        let group = DispatchGroup()
        for (pipe, isOutput) in [(output, true), (error, false)] {
            group.enter()
            DispatchQueue.global().async {
                collected.set(pipe.fileHandleForReading.readDataToEndOfFile(), isOutput: isOutput)
                group.leave()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        group.wait()
        let (out, err) = collected.texts
        return Outcome(status: process.terminationStatus, stdout: out, stderr: err)
    }

    final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var output = Data(), error = Data()
        func set(_ data: Data, isOutput: Bool) { lock.withLock { if isOutput { output = data } else { error = data } } }
        var texts: (String, String) { lock.withLock { (String(decoding: output, as: UTF8.self), String(decoding: error, as: UTF8.self)) } }
    }

    static func busyboxRootfs() throws -> String {
        let output = try artifact("KASA_TEST_BUSYBOX_ROOTFS", "images/build-busybox-rootfs.sh")
        return output
    }

    /// `ctr run --rm --runtime io.containerd.kata.v2 --rootfs DIR t1 sh -c 'echo hi; exit 3'`,
    /// with a host directory bind-mounted as a config map would be (copied into the VM).
    @Test(.timeLimit(.minutes(20)))
    func ctrRunPrintsTheOutputAndExitStatus() throws {
        let containerd = try Containerd()
        let rootfs = try Self.busyboxRootfs()
        let config = containerd.directory + "/config-map"
        try FileManager.default.createDirectory(atPath: config, withIntermediateDirectories: true)
        try "level=debug\n".write(toFile: config + "/app.conf", atomically: false, encoding: .utf8)
        let run = try Self.ctr(containerd, ["run", "--rm", "--runtime", "io.containerd.kata.v2",
                                            "--mount", "type=bind,src=\(config),dst=/etc/app,options=rbind:ro", "--rootfs", rootfs,
                                            "t1", "sh", "-c", "echo hi from kasa; cat /etc/app/app.conf; exit 3"], timeout: 480)
        let context = "ctr stderr: \(run.stderr)\ncontainerd log:\n\(containerd.tail)"
        #expect(run.stdout == "hi from kasa\nlevel=debug\n", "\(context)\n\(OutputBytes.describe(run.stdout))")
        #expect(run.status == 3, "\(context)")
        let tasks = try Self.ctr(containerd, ["task", "ls"])
        #expect(!tasks.stdout.contains("t1"), "the task was left behind: \(tasks.stdout)")
        let states = try ContainerdTests.entries(of: containerd.directory + "/kasa-state")
        #expect(states.isEmpty, "sandbox state left: \(states)")
        // The shim exits after Shutdown and its VMM with it: nothing of t1 runs on.
        Thread.sleep(forTimeInterval: 1)
        #expect(containerd.leftovers().isEmpty,
                "shim or VMM processes left")
    }

    /// `ctr run -d`, then `ctr task ls / exec / kill / rm` on the running task, with
    /// `ctr events` watching: create, start, exec-added, exec-started, exit (exec), exit,
    /// delete, in that order.
    @Test(.timeLimit(.minutes(20)))
    func aDetachedTaskIsListedExecedKilledAndRemoved() throws {
        let containerd = try Containerd()
        let rootfs = try Self.busyboxRootfs()
        let events = Process()
        events.executableURL = URL(filePath: "/usr/bin/ctr")
        events.arguments = ["--address", containerd.socket, "events"]
        let eventOutput = Pipe()
        events.standardOutput = eventOutput
        events.standardError = FileHandle.nullDevice
        try events.run()
        let collected = Collected()
        DispatchQueue.global().async { collected.set(eventOutput.fileHandleForReading.readDataToEndOfFile(), isOutput: true) }

        let run = try Self.ctr(containerd, ["run", "-d", "--runtime", "io.containerd.kata.v2", "--rootfs", rootfs,
                                            "t2", "sh", "-c", "trap 'exit 0' TERM; echo up; \(ContainerdTests.idleLoop)"], timeout: 480)
        let context = "ctr run: \(run.stderr)\ncontainerd log:\n\(containerd.tail)"
        #expect(run.status == 0, "\(context)")
        let listed = try Self.ctr(containerd, ["task", "ls"])
        #expect(listed.stdout.contains("t2") && listed.stdout.contains("RUNNING"), "\(listed.stdout) \(context)")
        let exec = try Self.ctr(containerd, ["task", "exec", "--exec-id", "e1", "t2", "sh", "-c", "echo from-exec; exit 4"], timeout: 120)
        #expect(exec.stdout == "from-exec\n", "\(exec.stderr) \(context)")
        #expect(exec.status == 4, "\(exec.stderr)")
        // The task's VM runs jailed: its own namespaces, root and /proc, filtered threads.
        let vmms = Self.vmmProcesses(containerd), shims = Self.shimProcesses(containerd)
        #expect(vmms.count == 1 && shims.count == 1, "one kasa-vmm and one shim: \(vmms) \(shims)")
        if let vmm = vmms.first, let shim = shims.first {
            let problems = VMMConfinementProbe.problems(vmm: vmm, shim: shim)
            #expect(problems.isEmpty, "kasa-vmm \(vmm) is not confined as promised: \(problems)")
        }
        // sandbox_cgroup_only: the VMM in a cgroup of its own, which goes with the task.
        let hierarchy = SandboxCgroup.unifiedHierarchy()
        let cgroup = hierarchy.flatMap { hierarchy in vmms.first.flatMap { VMMConfinementProbe.cgroupDirectory(of: $0, hierarchy: hierarchy) } }
        if let hierarchy {
            #expect(cgroup?.hasPrefix(hierarchy + "/kasa/t2-") == true, "kasa-vmm's cgroup: \(String(describing: cgroup))")
            #expect(cgroup.map { FileManager.default.fileExists(atPath: $0 + "/cgroup.procs") } == true)
        }
        try Self.stopAndRemove(containerd, "t2", signal: "SIGTERM")
        if let cgroup { #expect(!FileManager.default.fileExists(atPath: cgroup), "the sandbox's cgroup \(cgroup) was left") }
        events.terminate()
        events.waitUntilExit()
        Thread.sleep(forTimeInterval: 0.5)
        let topics = collected.texts.0.split(separator: "\n").compactMap { line -> String? in
            line.split(separator: " ").first { $0.hasPrefix("/tasks/") }.map(String.init)
        }
        #expect(topics == ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit",
                           "/tasks/exit", "/tasks/delete"], "ctr events: \(collected.texts.0)")
        #expect(containerd.leftovers().isEmpty,
                "shim or VMM processes left")
    }

    /// A pod as CRI makes one: a sandbox container, then containers annotated with its id.
    /// They reach the same shim and run in the sandbox's one VM, each with its own rootfs
    /// disk put into a drive slot of the running VM and emptied when it is deleted (later
    /// containers reuse earlier ones' slots, one of them after a failed start, and must see
    /// their own files).
    @Test(.timeLimit(.minutes(20)))
    func twoContainersOfAPodShareOneVM() throws {
        let containerd = try Containerd()
        let busybox = try Self.busyboxRootfs()
        var appRootfs: [String] = []
        for marker in ["first", "second"] {
            let copy = containerd.directory + "/rootfs-\(marker)"
            let copying = try Process.run(URL(filePath: "/bin/cp"), arguments: ["-a", busybox, copy])
            copying.waitUntilExit()
            try #require(copying.terminationStatus == 0, "cp -a \(busybox) \(copy)")
            try "\(marker) app\n".write(toFile: copy + "/marker", atomically: true, encoding: .utf8)
            appRootfs.append(copy)
        }
        let probeSource = Self.packageRoot.appending(path: "Tests/guests/memprobe.c").path
        let compiling = try Process.run(URL(filePath: "/usr/bin/gcc"), arguments: ["-static", "-O1", "-o", appRootfs[0] + "/memprobe", probeSource])
        compiling.waitUntilExit()
        try #require(compiling.terminationStatus == 0, "gcc \(probeSource)")
        let onPVM = FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm")
        let runtime = ["--runtime", "io.containerd.kata.v2"]
        func member(_ type: String) -> [String] {
            ["--annotation", "io.kubernetes.cri.container-type=\(type)", "--annotation", "io.kubernetes.cri.sandbox-id=pod1"]
        }
        let sandbox = try Self.ctr(containerd, ["run", "-d"] + runtime + member("sandbox") + ["--rootfs", busybox, "pod1",
                                                "sh", "-c", "trap 'exit 0' TERM; \(ContainerdTests.idleLoop)"], timeout: 480)
        let context = { "containerd log:\n\(containerd.tail)" }
        try #require(sandbox.status == 0, "ctr run pod1: \(sandbox.stderr) \(context())")
        let vmms = { Self.processes(mentioning: containerd.directory + "/kasa-state").filter { pid in
            (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("kasa-vmm") == true
        } }
        #expect(vmms().count == 1)

        let first = try Self.ctr(containerd, ["run", "--rm"] + runtime + member("container") + ["--rootfs", appRootfs[0], "app1",
                                              "sh", "-c", "cat /marker; /memprobe; exit 5"], timeout: 300)
        // On kvm_pvm glibc must keep off AVX in the guest (its ymm state is not preserved).
        #expect(first.stdout == "first app\n" + (onPVM ? "memcpy: sse\n" : first.stdout.dropFirst(10)),
                "app1: \(first.stderr) \(context())")
        #expect(first.status == 5, "app1: \(first.stderr)")
        #expect(vmms().count == 1, "app1 must run in pod1's VM, not a VM of its own")
        // A container whose command does not exist fails at start; its drive slot is then
        // refilled with app2's image, which app2 must see (not a stale view of this one's).
        let broken = try Self.ctr(containerd, ["run", "--rm"] + runtime + member("container") + ["--rootfs", appRootfs[0], "broken",
                                               "/no-such-binary"], timeout: 300)
        #expect(broken.status != 0 && broken.stderr.contains("no-such-binary"), "broken: \(broken.stdout) \(broken.stderr)")
        _ = try Self.ctr(containerd, ["task", "rm", "-f", "broken"], timeout: 60)
        _ = try Self.ctr(containerd, ["container", "rm", "broken"])
        let second = try Self.ctr(containerd, ["run", "--rm"] + runtime + member("container") + ["--rootfs", appRootfs[1], "app2",
                                               "sh", "-c", "cat /marker; ls /proc | grep -c '^[0-9]'"], timeout: 300)
        let lines = second.stdout.split(separator: "\n")
        #expect(lines.first == "second app", "app2 saw another rootfs: \(second.stdout) \(second.stderr) \(context())")
        #expect(second.status == 0, "app2: \(second.stderr)")
        #expect(lines.count == 2 && Int(lines[1]).map { $0 <= 3 } == true, "app2 has its own PID namespace: \(second.stdout)")

        let tasks = try Self.ctr(containerd, ["task", "ls"])
        #expect(tasks.stdout.contains("pod1") && !tasks.stdout.contains("app1") && !tasks.stdout.contains("app2"), "\(tasks.stdout)")
        _ = try Self.ctr(containerd, ["task", "kill", "--signal", "SIGTERM", "pod1"], timeout: 60)
        for _ in 0..<120 where !(try Self.ctr(containerd, ["task", "ls"])).stdout.contains("STOPPED") { Thread.sleep(forTimeInterval: 0.5) }
        let removed = try Self.ctr(containerd, ["task", "rm", "pod1"], timeout: 60)
        #expect(removed.status == 0, "\(removed.stderr)")
        _ = try Self.ctr(containerd, ["container", "rm", "pod1"])
        Thread.sleep(forTimeInterval: 1)
        #expect(containerd.leftovers().isEmpty,
                "shim or VMM processes left")
        let states = try ContainerdTests.entries(of: containerd.directory + "/kasa-state")
        #expect(states.isEmpty, "sandbox state left: \(states)")
    }

    /// Bad input reaches the shim before any VM boots: a rootfs that does not exist and a
    /// spec without process args each give ctr a clear error naming the problem, and
    /// leave no task, shim, VM or sandbox state behind.
    @Test(.timeLimit(.minutes(5)))
    func badInputGetsAClearErrorAndLeavesNothing() throws {
        let containerd = try Containerd()
        let runtime = ["--runtime", "io.containerd.kata.v2"]
        let missing = try Self.ctr(containerd, ["run", "--rm"] + runtime + ["--rootfs", containerd.directory + "/no-such-rootfs",
                                                "bad1", "sh", "-c", "true"], timeout: 60)
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("no-such-rootfs"), "ctr: \(missing.stderr)")

        let spec = """
            {"ociVersion": "1.0.2", "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]},
             "root": {"path": "\(try Self.busyboxRootfs())"}, "linux": {}}
            """
        let specPath = containerd.directory + "/no-args.json"
        try spec.write(toFile: specPath, atomically: true, encoding: .utf8)
        let noArgs = try Self.ctr(containerd, ["run", "--rm"] + runtime + ["--config", specPath, "bad2"], timeout: 60)
        #expect(noArgs.status != 0)
        #expect(noArgs.stderr.contains("process.args"), "ctr: \(noArgs.stderr)")

        let tasks = try Self.ctr(containerd, ["task", "ls"])
        #expect(!tasks.stdout.contains("bad1") && !tasks.stdout.contains("bad2"), "\(tasks.stdout)")
        Thread.sleep(forTimeInterval: 1)
        #expect(containerd.leftovers().isEmpty,
                "shim or VMM processes left")
        let states = try ContainerdTests.entries(of: containerd.directory + "/kasa-state")
        #expect(states.isEmpty, "sandbox state left: \(states)")
    }

    /// Containerd's binary:// logger contract, end to end: a shell-script logger writing
    /// the container's two streams to files.
    static func loggerScript(in directory: String) throws -> String {
        let path = directory + "/logger.sh"
        try """
            #!/bin/sh
            echo "$CONTAINER_NAMESPACE/$CONTAINER_ID" > "\(directory)/logger-for"
            cat <&3 > "\(directory)/logged-stdout" 5>&- 4<&- &
            cat <&4 > "\(directory)/logged-stderr" 5>&- 3<&- &
            exec 5>&-
            wait
            """.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    static func waitFor(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.5)
        }
        return try condition()
    }

    /// A running task as operators handle one: its output to a binary:// logger, `ctr task
    /// ps` (the guest's pids), `ctr task metrics` (the guest cgroup's figures, its memory
    /// limit from `--memory-limit`), pause and
    /// resume (the guest freezes it: its output stops, then goes on). Then the shim is
    /// killed with SIGKILL: containerd's cleanup (`containerd-shim-kata-v2 delete`) must
    /// leave no VM, shim, socket or sandbox state. `ctr events` watches throughout: paused
    /// and resumed are published. (An OOM kill is FaultTests': a container that outgrows
    /// its limit takes minutes to be killed on kvm_pvm, one that lowers its own limit
    /// does not; docs/kvm-pvm.md.)
    @Test(.timeLimit(.minutes(20)))
    func aRunningTaskIsLoggedListedMeasuredPausedAndCleanedUpAfterItsShimDies() throws {
        let containerd = try Containerd()
        let rootfs = try Self.busyboxRootfs()
        let logger = try Self.loggerScript(in: containerd.directory)
        // `ctr events` into a file, read while it runs.
        let eventLog = containerd.directory + "/events.log"
        try Data().write(to: URL(filePath: eventLog))
        let events = Process()
        events.executableURL = URL(filePath: "/usr/bin/ctr")
        events.arguments = ["--address", containerd.socket, "events"]
        events.standardOutput = try FileHandle(forWritingTo: URL(filePath: eventLog))
        events.standardError = FileHandle.nullDevice
        try events.run()
        defer { kill(events.processIdentifier, SIGKILL) }
        let eventText = { (try? String(contentsOfFile: eventLog, encoding: .utf8)) ?? "" }

        // A long sleep in the background, so `ctr task ps` always has two processes to show:
        // the loop's own `sleep 1` is gone between ticks (on kvm_pvm, forking the next one
        // takes long enough for ps to land in that gap).
        let script = "sleep 100000 & echo to-stderr >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"
        let limit = 64 << 20
        let run = try Self.ctr(containerd, ["run", "-d", "--runtime", "io.containerd.kata.v2", "--log-uri", "binary://" + logger,
                                            "--memory-limit", String(limit), "--rootfs", rootfs, "t7", "sh", "-c", script], timeout: 480)
        let context = { "containerd log:\n\(containerd.tail)" }
        try #require(run.status == 0, "ctr run: \(run.stderr) \(context())")
        // static_sandbox_resource_mgmt: the VM is default_memory (512) plus the limit.
        let vmm = CRITests.commandLines(containing: containerd.directory + "/kasa-state/").filter { $0.contains("kasa-vmm") }
        #expect(vmm.count == 1 && vmm[0].contains("--memory \(512 + (limit >> 20)) "), "the VM sized by the limit: \(vmm)")
        func logged(_ name: String) -> String {
            (try? String(contentsOfFile: containerd.directory + "/" + name, encoding: .utf8)) ?? ""
        }
        #expect(Self.waitFor(120) { logged("logged-stdout").contains("tick 2") }, "stdout through the logger: \(logged("logged-stdout"))")
        #expect(logged("logged-stderr") == "to-stderr\n")
        #expect(logged("logger-for") == "default/t7\n")

        let ps = try Self.ctr(containerd, ["task", "ps", "t7"], timeout: 120)
        let pids = ps.stdout.split(separator: "\n").dropFirst().compactMap { Int($0.split(separator: " ").first ?? "") }
        #expect(ps.status == 0 && pids.count >= 2, "sh and its background sleep: \(ps.stdout) \(ps.stderr)")
        let metrics = try Self.ctr(containerd, ["task", "metrics", "t7"], timeout: 120)
        #expect(metrics.status == 0 && (Self.metric("memory.usage", in: metrics.stdout) ?? 0) > 0,
                "the guest cgroup's memory: \(metrics.stdout) \(metrics.stderr)")
        #expect(metrics.stdout.contains("pids.current"), "\(metrics.stdout)")
        #expect(Self.metric("memory.usage_limit", in: metrics.stdout) == limit,
                "the spec's memory limit is the guest cgroup's: \(metrics.stdout)")

        // Update is CRI's UpdateContainerResources; ctr 1.6 has no command for it, so it
        // goes to the shim's socket as containerd sends it (LinuxResources as JSON).
        let newLimit = 96 << 20
        let bundle = containerd.directory + "/state/io.containerd.runtime.v2.task/default/t7"
        let address = try String(contentsOfFile: bundle + "/address", encoding: .utf8)
        try Self.updateTask(shimAddress: address, id: "t7", resourcesJSON: #"{"memory":{"limit":\#(newLimit)},"pids":{"limit":77}}"#)
        let updated = try Self.ctr(containerd, ["task", "metrics", "t7"], timeout: 120)
        #expect(Self.metric("memory.usage_limit", in: updated.stdout) == newLimit, "after Update: \(updated.stdout) \(updated.stderr)")
        #expect(Self.metric("pids.limit", in: updated.stdout) == 77, "after Update: \(updated.stdout)")

        let paused = try Self.ctr(containerd, ["task", "pause", "t7"], timeout: 120)
        #expect(paused.status == 0, "\(paused.stderr) \(context())")
        #expect(try Self.ctr(containerd, ["task", "ls"]).stdout.contains("PAUSED"))
        let atPause = logged("logged-stdout")
        Thread.sleep(forTimeInterval: 4)
        #expect(logged("logged-stdout") == atPause, "a frozen task prints nothing")
        let resumed = try Self.ctr(containerd, ["task", "resume", "t7"], timeout: 120)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try Self.ctr(containerd, ["task", "ls"]).stdout.contains("RUNNING"))
        #expect(Self.waitFor(60) { logged("logged-stdout").count > atPause.count }, "the task goes on after resume")

        let topics = eventText().split(separator: "\n").compactMap { line in line.split(separator: " ").first { $0.hasPrefix("/tasks/") } }
        #expect(topics == ["/tasks/create", "/tasks/start", "/tasks/paused", "/tasks/resumed"], "ctr events: \(eventText())")

        let shims = Self.shimProcesses(containerd)
        try #require(shims.count == 1, "one shim: \(shims)")
        kill(shims[0], SIGKILL)
        let cleaned = try Self.waitFor(120) {
            let listed = try Self.ctr(containerd, ["task", "ls"]).stdout
            return containerd.leftovers(excluding: [events.processIdentifier]).isEmpty && !listed.contains("t7")
        }
        let afterDeath = try Self.ctr(containerd, ["task", "ls"]).stdout
        #expect(cleaned, "after the shim died: \(afterDeath) \(context())")
        let states = try ContainerdTests.entries(of: containerd.directory + "/kasa-state")
        #expect(states.isEmpty, "sandbox state left: \(states)")
        let sockets = try ContainerdTests.entries(of: "/run/containerd/s").filter(address.contains)
        #expect(sockets.isEmpty, "shim socket left: \(sockets)")
        #expect(!FileManager.default.fileExists(atPath: bundle), "bundle left")
        _ = try Self.ctr(containerd, ["container", "rm", "t7"])
    }

    /// `ctr task kill` with `signal`, a wait (up to a minute) for the task to stop, `ctr task
    /// rm` and `ctr container rm`, each expected to work; then a second for the shim to go.
    static func stopAndRemove(_ containerd: Containerd, _ id: String, signal: String) throws {
        let killed = try ctr(containerd, ["task", "kill", "--signal", signal, id], timeout: 60)
        #expect(killed.status == 0, "\(killed.stderr)")
        var stopped = false
        for _ in 0..<120 where !stopped {
            stopped = (try ctr(containerd, ["task", "ls"])).stdout.contains("STOPPED")
            if !stopped { Thread.sleep(forTimeInterval: 0.5) }
        }
        #expect(stopped, "the task \(id) did not stop after \(signal)")
        let removed = try ctr(containerd, ["task", "rm", id], timeout: 60)
        #expect(removed.status == 0, "\(removed.stderr)")
        _ = try ctr(containerd, ["container", "rm", id])
        Thread.sleep(forTimeInterval: 1)
    }

    /// A figure of `ctr task metrics` output ("NAME   VALUE" lines).
    static func metric(_ name: String, in output: String) -> Int? {
        output.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Int($0.split(separator: " ").last ?? "") }
    }

    /// Task.Update straight to a shim (containerd's bundle `address` file names its socket).
    static func updateTask(shimAddress: String, id: String, resourcesJSON: String) throws {
        let path = shimAddress.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "unix://", with: "")
        let descriptor: Int32
        switch UnixStream.connect(path) {
        case .success(let connected): descriptor = connected
        case .failure(let error): throw Missing(description: "connect to the shim at \(path): \(error)")
        }
        let client = TTRPCClient(descriptor: descriptor)
        defer { client.close() }
        var update = Containerd_Task_V2_UpdateTaskRequest()
        update.id = id
        update.resources.typeURL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
        update.resources.value = Data(resourcesJSON.utf8)
        _ = try client.call(service: "containerd.task.v2.Task", method: "Update", request: update,
                            responseType: Google_Protobuf_Empty.self, timeout: 120)
    }

    /// An image built here (images/build-oci-archive.sh: busybox plus a second layer) is
    /// imported with `ctr images import` and runs from the overlayfs snapshotter's mounts.
    /// containerd is restarted while the task runs: it reconnects to the shim, and the
    /// task is still listed, exec'd into, killed and removed.
    @Test(.timeLimit(.minutes(20)))
    func anImportedImageRunsAndSurvivesAContainerdRestart() throws {
        let containerd = try Containerd()
        let archive = containerd.directory + "/busybox-image.tar"
        let name = "docker.io/kasa/busybox:test"
        let build = try Process.run(URL(filePath: "/bin/bash"), arguments: [
            Self.packageRoot.appending(path: "images/build-oci-archive.sh").path, try Self.busyboxRootfs(), archive, name])
        build.waitUntilExit()
        try #require(build.terminationStatus == 0, "images/build-oci-archive.sh failed")
        let imported = try Self.ctr(containerd, ["images", "import", "--snapshotter", "overlayfs", archive], timeout: 120)
        try #require(imported.status == 0, "ctr images import: \(imported.stderr)")

        let run = try Self.ctr(containerd, ["run", "-d", "--runtime", "io.containerd.kata.v2", "--snapshotter", "overlayfs", name,
                                            "t8", "sh", "-c", "trap 'exit 0' TERM; \(ContainerdTests.idleLoop)"], timeout: 480)
        let context = { "containerd log:\n\(containerd.tail)" }
        try #require(run.status == 0, "ctr run: \(run.stderr) \(context())")
        #expect(try Self.ctr(containerd, ["task", "ls"]).stdout.contains("RUNNING"))

        try containerd.restart()
        let listed = try Self.ctr(containerd, ["task", "ls"], timeout: 60)
        #expect(listed.stdout.contains("t8") && listed.stdout.contains("RUNNING"), "after the restart: \(listed.stdout) \(context())")
        let exec = try Self.ctr(containerd, ["task", "exec", "--exec-id", "e1", "t8", "cat", "/etc/kasa-image"], timeout: 180)
        #expect(exec.stdout == name + "\n", "the image's second layer: \(exec.stdout) \(exec.stderr) \(context())")
        #expect(exec.status == 0)

        _ = try Self.ctr(containerd, ["task", "kill", "--signal", "SIGTERM", "t8"], timeout: 60)
        let stopped = try Self.waitFor(60) { (try Self.ctr(containerd, ["task", "ls"])).stdout.contains("STOPPED") }
        #expect(stopped, "the task did not stop")
        let removed = try Self.ctr(containerd, ["task", "rm", "t8"], timeout: 60)
        #expect(removed.status == 0, "\(removed.stderr)")
        _ = try Self.ctr(containerd, ["container", "rm", "t8"])
        #expect(Self.waitFor(10) {
            containerd.leftovers().isEmpty
        }, "shim or VMM processes left")
        let mounts = try ContainerdTests.mounts(under: containerd.directory + "/state")
        #expect(mounts.isEmpty, "the rootfs mount is left: \(mounts)")
    }
}
