import AgentProtocol
import Foundation
@testable import Runtime
import Testing

/// `kata-runtime` as users run it: the binary, a configuration file, real output and
/// exit statuses. The first group needs no VM; the last tests boot real microVMs on
/// this host's KVM (on kvm_pvm about 2 minutes each: the guest kernel is emulated),
/// each bounded by a time limit and reporting the VM's console when it fails.
@Suite(.serialized) struct KataRuntimeCommandTests {
    /// Products sit beside the test bundle.
    static let productsDirectory = URL(filePath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "")
        .deletingLastPathComponent()

    struct Outcome {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    final class Setup {
        let directory: String
        let configPath: String
        var stateDirectory: String { directory + "/state" }
        var imageCache: String { directory + "/images" }

        /// `boot` is the agent image (or, with `bootKey: "initrd"`, an initrd).
        init(kernel: String = "/nonexistent/vmlinux", boot: String = "/nonexistent/agent.img", bootKey: String = "image",
             extra: String = "", hypervisorExtra: String = "", debugConsole: Bool = false) throws {
            directory = try RuntimeTestSupport.temporaryDirectory("kasa-cli")
            configPath = directory + "/configuration.toml"
            let vmm = KataRuntimeCommandTests.productsDirectory.appending(path: "kasa-vmm").path
            try """
                [hypervisor.kasa]
                path = "\(vmm)"
                kernel = "\(kernel)"
                \(bootKey) = "\(boot)"
                default_memory = 512
                \(hypervisorExtra)

                [agent.kata]
                dial_timeout = 420
                debug_console_enabled = \(debugConsole)

                [runtime]
                state_dir = "\(directory)/state"
                image_cache_dir = "\(directory)/images"
                \(extra)
                """.write(toFile: configPath, atomically: true, encoding: .utf8)
            // Made here so that the "no state left" checks can look even after a refusal.
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: false)
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        /// A setup whose kernel and agent disk are 4 KiB of garbage (a whole number of
        /// sectors, so kasa-vmm takes it as the agent's disk and refuses it as a kernel),
        /// kept in a directory of its own (returned: the caller removes it).
        static func withGarbageKernel(_ name: String) throws -> (Setup, String) {
            let directory = try RuntimeTestSupport.temporaryDirectory(name)
            let kernel = directory + "/not-a-kernel"
            try String(repeating: "garbage!", count: 512).write(toFile: kernel, atomically: true, encoding: .utf8)
            return (try Setup(kernel: kernel, boot: kernel), directory)
        }

        /// Nothing of any sandbox is left: no state, no VMM, no socket.
        func expectNothingLeft(sourceLocation: SourceLocation = #_sourceLocation) {
            // A state directory that cannot be listed must not pass for an empty one.
            let states = Result { try FileManager.default.contentsOfDirectory(atPath: stateDirectory) }
            #expect((try? states.get())?.isEmpty == true, "sandbox state left, or not listable: \(states)", sourceLocation: sourceLocation)
            let vmms = RuntimeTestSupport.processes(mentioning: stateDirectory)
            #expect(vmms.isEmpty, "processes left: \(vmms)", sourceLocation: sourceLocation)
            // The sandboxes' own mounts (a virtio-fs sandbox's shared directory); a test may
            // mount something of its own beside them (the full image cache's tmpfs).
            #expect(HostMounts.lookedUp(under: stateDirectory)?.isEmpty == true,
                    "mounts left: \(HostMounts.mountPoints(under: stateDirectory))", sourceLocation: sourceLocation)
        }
    }

    static func kataRuntime(_ arguments: [String], stdin: String? = nil, timeout: Double = 60) throws -> Outcome {
        let process = Process()
        process.executableURL = productsDirectory.appending(path: "kata-runtime")
        process.arguments = arguments
        let captured = CapturedStdio(stdin: stdin ?? "")
        process.standardOutput = captured.output
        process.standardError = captured.error
        process.standardInput = captured.input
        var environment = ProcessInfo.processInfo.environment
        environment["KATA_CONF_FILE"] = nil
        process.environment = environment
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            process.interrupt()
            Thread.sleep(forTimeInterval: 15)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        let (stdout, stderr) = captured.finish()
        return Outcome(status: process.terminationStatus, stdout: stdout, stderr: stderr)
    }

    // MARK: Without a VM

    @Test func runRefusesBadInputWithOneMessage() throws {
        let setup = try Setup()
        let noRootfs = try Self.kataRuntime(["run", "--config", setup.configPath, "--", "true"])
        #expect(noRootfs.status == 125)
        #expect(noRootfs.stderr == "kata-runtime: error: give the container's root filesystem: --rootfs DIR or --bundle DIR\n")
        let missing = try Self.kataRuntime(["run", "--config", setup.configPath, "--rootfs", "/nonexistent/rootfs", "--", "true"])
        #expect(missing.status == 125)
        #expect(missing.stderr == "kata-runtime: error: rootfs /nonexistent/rootfs does not exist\n")
        let noCommand = try Self.kataRuntime(["run", "--config", setup.configPath, "--rootfs", "/"])
        #expect(noCommand.status == 125)
        #expect(noCommand.stderr.contains("no command to run"))
        let badID = try Self.kataRuntime(["run", "--config", setup.configPath, "--id", "../x", "--rootfs", "/", "--", "true"])
        #expect(badID.status == 125)
        #expect(badID.stderr.contains("sandbox id \"../x\""))
        setup.expectNothingLeft()
    }

    @Test func aBadConfigurationFileIsReportedWithItsLine() throws {
        let setup = try Setup(extra: "enable_debug = \"yes\"")
        let run = try Self.kataRuntime(["run", "--config", setup.configPath, "--rootfs", "/", "--", "true"])
        #expect(run.status == 125)
        #expect(run.stderr.contains("[runtime] enable_debug: expected true or false, found a string (\"yes\")"), "\(run.stderr)")
        let env = try Self.kataRuntime(["--config", setup.configPath, "env"])
        #expect(env.status == 2)
        let missing = try Self.kataRuntime(["env", "--config", setup.directory + "/missing.toml"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("cannot read configuration file"))
    }

    @Test func envShowsEffectiveSettingsAndWarnsAboutUnknownKeys() throws {
        let setup = try Setup(extra: "sandbox_cgroup_only = false\nenable_pprof = true", hypervisorExtra: "shared_fs = \"virtio-fs\"")
        let toml = try Self.kataRuntime(["--config", setup.configPath, "env"])
        #expect(toml.status == 0)
        #expect(toml.stdout.contains("# source: \(setup.configPath)"))
        #expect(toml.stdout.contains("default_memory = 512"))
        #expect(toml.stdout.contains("shared_fs = \"virtio-fs\"") && toml.stdout.contains("virtio_fs_cache = \"auto\""))
        #expect(toml.stdout.contains("dial_timeout = 420"))
        #expect(toml.stdout.contains("sandbox_cgroup_only = false") && toml.stdout.contains("enable_jail = true"))
        #expect(toml.stderr.contains("[runtime] enable_pprof: unknown key, ignored"), "\(toml.stderr)")
        let json = try Self.kataRuntime(["env", "--json", "--config", setup.configPath])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let runtime = object?["runtime"] as? [String: Any]
        #expect(runtime?["state_dir"] as? String == setup.stateDirectory)
        #expect((object?["hypervisor.kasa"] as? [String: Any])?["default_memory"] as? Int == 512)
    }

    @Test func checkTellsTheTruthAboutThisHost() throws {
        let setup = try Setup()
        let check = try Self.kataRuntime(["check", "--config", setup.configPath])
        #expect(check.status == 1, "the kernel is missing, so the check must fail")
        #expect(check.stdout.contains("FAIL  guest kernel: /nonexistent/vmlinux"))
        #expect(check.stdout.contains("PASS  kasa-vmm"))
        #expect(check.stdout.contains("PASS  kasa-vmm confinement: each kasa-vmm thread under a seccomp filter"), "\(check.stdout)")
        let pvm = access("/sys/module/kvm_pvm", F_OK) == 0
        if access("/dev/kvm", R_OK | W_OK) == 0 {
            #expect(check.stdout.contains("PASS  /dev/kvm"))
            #expect(check.stdout.contains(pvm ? "INFO  KVM flavour: kvm_pvm" : "INFO  KVM flavour: hardware"), "\(check.stdout)")
        } else {
            #expect(check.stdout.contains("FAIL  /dev/kvm"))
        }
    }

    @Test func versionNamesTheRuntimeTheProtocolAndTheVMM() throws {
        let setup = try Setup()
        let version = try Self.kataRuntime(["version", "--config", setup.configPath])
        #expect(version.status == 0)
        #expect(version.stdout.contains("kata-runtime  : 0.1.0"))
        #expect(version.stdout.contains("agent protocol: \(AgentProtocolVersion.current)"), "\(version.stdout)")
        #expect(version.stdout.contains("hypervisor: kasa-vmm"), "\(version.stdout)")
    }

    /// A VM that dies at boot (here: a kernel file kasa-vmm refuses) ends the run at
    /// once with kasa-vmm's reason, not after the dial timeout.
    @Test func aVMThatDiesAtBootIsReportedAndCleanedUp() throws {
        let rootfs = try RuntimeTestSupport.busyboxRootfs()
        defer { try? FileManager.default.removeItem(atPath: rootfs) }
        let (setup, setupDirectory) = try Setup.withGarbageKernel("kasa-bad-kernel")
        defer { try? FileManager.default.removeItem(atPath: setupDirectory) }
        let started = Date()
        let run = try Self.kataRuntime(["run", "--config", setup.configPath, "--rootfs", rootfs, "--", "true"])
        #expect(run.status == 125)
        #expect(run.stderr.contains("the VM stopped before its agent answered: kasa-vmm exited with status 2"), "\(run.stderr)")
        #expect(run.stderr.contains("kasa-vmm: error: the kernel is neither an x86-64 ELF vmlinux nor a bzImage"),
                "kasa-vmm's own message should be shown: \(run.stderr)")
        #expect(Date().timeIntervalSince(started) < 30)
        setup.expectNothingLeft()
    }

    /// The rootfs image cache's file system full: a clear error naming it, no partial
    /// image left in the cache, no sandbox left (the run ends before any VM starts).
    @Test func aFullImageCacheIsAClearErrorAndLeavesNothing() throws {
        let rootfs = try RuntimeTestSupport.busyboxRootfs()
        defer { try? FileManager.default.removeItem(atPath: rootfs) }
        let (setup, setupDirectory) = try Setup.withGarbageKernel("kasa-full-cache")
        defer { try? FileManager.default.removeItem(atPath: setupDirectory) }
        try FileManager.default.createDirectory(atPath: setup.imageCache, withIntermediateDirectories: false)
        // 256 KiB: far less than the busybox image needs.
        try #require(mount("tmpfs", setup.imageCache, "tmpfs", 0, "size=256k,mode=0700") == 0,
                     "mount a small tmpfs at \(setup.imageCache): \(String(cString: strerror(errno)))")
        defer { umount2(setup.imageCache, Int32(MNT_DETACH)) }
        let run = try Self.kataRuntime(["run", "--config", setup.configPath, "--rootfs", rootfs, "--", "true"])
        #expect(run.status == 125, "\(run.stderr)")
        #expect(run.stderr.contains("No space left on device"), "the error should say the disk is full: \(run.stderr)")
        #expect(run.stderr.split(separator: "\n").count <= 3, "one clear message, not a dump: \(run.stderr)")
        let cached = try FileManager.default.contentsOfDirectory(atPath: setup.imageCache)
        #expect(cached.isEmpty, "partial images left in the cache: \(cached)")
        setup.expectNothingLeft()
    }

    /// The state directory's file system full (a 4 KiB tmpfs, filled): the sandbox stops
    /// as soon as its state cannot be written, with a clear error, and leaves nothing of
    /// itself there. (kasa-vmm is started before the first byte of state is written; with
    /// this setup's unbootable kernel it would fail later, with another message.)
    @Test func aFullStateDirectoryIsAClearErrorAndLeavesNothing() throws {
        let rootfs = try RuntimeTestSupport.busyboxRootfs()
        defer { try? FileManager.default.removeItem(atPath: rootfs) }
        let (setup, setupDirectory) = try Setup.withGarbageKernel("kasa-full-state")
        defer { try? FileManager.default.removeItem(atPath: setupDirectory) }
        try #require(mount("tmpfs", setup.stateDirectory, "tmpfs", 0, "size=4k,mode=0700") == 0,
                     "mount a small tmpfs at \(setup.stateDirectory): \(String(cString: strerror(errno)))")
        defer { umount2(setup.stateDirectory, Int32(MNT_DETACH)) }
        let filler = setup.stateDirectory + "/filler"
        try #require(FileManager.default.createFile(atPath: filler, contents: Data(count: 4096)), "fill \(filler)")

        let run = try Self.kataRuntime(["run", "--config", setup.configPath, "--rootfs", rootfs, "--", "true"])
        #expect(run.status == 125, "\(run.stderr)")
        #expect(run.stderr.contains("the sandbox cannot keep its state") && run.stderr.contains("No space left on device"),
                "the error should say the state cannot be written: \(run.stderr)")
        #expect(run.stderr.split(separator: "\n").count <= 3, "one clear message, not a dump: \(run.stderr)")
        // Nothing but the filler: no sandbox directory, no process, nothing mounted there.
        #expect(try FileManager.default.contentsOfDirectory(atPath: setup.stateDirectory) == ["filler"])
        #expect(RuntimeTestSupport.processes(mentioning: setup.stateDirectory).isEmpty)
        #expect(HostMounts.lookedUp(under: setup.stateDirectory) == [setup.stateDirectory],
                "mounts under the state directory: \(HostMounts.mountPoints(under: setup.stateDirectory))")
    }

    // MARK: Real microVMs

    /// The README's headline: output and exit status of a workload in its own VM, stdin
    /// piped in; then a second run with a pty that reuses the cached rootfs image.
    @Test(.timeLimit(.minutes(20)))
    func runsAWorkloadInAMicroVM() throws {
        let kernel = try RuntimeTestSupport.artifact("KASA_TEST_KERNEL", script: "images/build-kernel.sh", what: "the guest kernel")
        let image = try RuntimeTestSupport.artifact("KASA_TEST_AGENT_IMAGE", script: "images/build-agent-image.sh", what: "the agent image")
        let rootfs = try RuntimeTestSupport.busyboxRootfs()
        defer { try? FileManager.default.removeItem(atPath: rootfs) }
        let setup = try Setup(kernel: kernel, boot: image)

        let first = try Self.kataRuntime(["run", "--config", setup.configPath, "--rootfs", rootfs, "--",
                                          "sh", "-c", "read name; echo hello $name; echo to-stderr >&2; exit 7"],
                                         stdin: "world\n", timeout: 400)
        #expect(first.status == 7, "stderr: \(first.stderr)")
        #expect(first.stdout == "hello world\n", "stderr: \(first.stderr)")
        #expect(first.stderr == "to-stderr\n")
        setup.expectNothingLeft()
        // The image, and the index that finds it by the tree's metadata.
        let images = try FileManager.default.contentsOfDirectory(atPath: setup.imageCache).filter { $0 != "index" }
        #expect(images.count == 1 && images[0].hasSuffix(".ext4"), "\(images)")
        let imagePath = setup.imageCache + "/" + (images.first ?? "")
        let inode = try FileManager.default.attributesOfItem(atPath: imagePath)[.systemFileNumber] as? Int

        let second = try Self.kataRuntime(["run", "--config", setup.configPath, "-t", "--rootfs", rootfs, "--",
                                           "sh", "-c", "test -t 0 && test -t 1 && echo has-a-tty; exit 3"], timeout: 400)
        #expect(second.status == 3, "stderr: \(second.stderr)")
        #expect(second.stdout.contains("has-a-tty"), "stdout: \(second.stdout.debugDescription) stderr: \(second.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: setup.imageCache).filter { $0 != "index" } == images,
                "the image was not reused")
        #expect(try FileManager.default.attributesOfItem(atPath: imagePath)[.systemFileNumber] as? Int == inode,
                "the cached image was rebuilt")
        setup.expectNothingLeft()
    }

    /// `[factory] enable_template`: the template is built once (`factory init`), then two
    /// sandboxes restored from it at the same time run containers, each with its own random
    /// numbers and the host's time; `factory destroy` leaves nothing.
    @Test(.timeLimit(.minutes(20)))
    func sandboxesStartFromATemplateAndEachIsItsOwn() throws {
        let kernel = try RuntimeTestSupport.artifact("KASA_TEST_KERNEL", script: "images/build-kernel.sh", what: "the guest kernel")
        let image = try RuntimeTestSupport.artifact("KASA_TEST_AGENT_IMAGE", script: "images/build-agent-image.sh", what: "the agent image")
        let rootfs = try RuntimeTestSupport.busyboxRootfs()
        defer { try? FileManager.default.removeItem(atPath: rootfs) }
        let templates = try RuntimeTestSupport.temporaryDirectory("kasa-templates")
        defer { try? FileManager.default.removeItem(atPath: templates) }
        let template = templates + "/template"
        let setup = try Setup(kernel: kernel, boot: image, extra: "\n[factory]\nenable_template = true\ntemplate_path = \"\(template)\"")

        let absent = try Self.kataRuntime(["factory", "status", "--config", setup.configPath])
        #expect(absent.status == 0 && absent.stdout.contains("state: absent"), "\(absent.stdout)\(absent.stderr)")
        let built = try Self.kataRuntime(["factory", "init", "--config", setup.configPath], timeout: 400)
        try #require(built.status == 0, "factory init: \(built.stderr)")
        let ready = try Self.kataRuntime(["factory", "status", "--config", setup.configPath])
        #expect(ready.stdout.contains("state: ready") && ready.stdout.contains("memory_mib=512"), "\(ready.stdout)")

        // Two clones at once: 32 random bytes and the guest's clock from each.
        let script = "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s"
        let outcomes = LockedArray<(Outcome, Double, Double)>()
        let configPath = setup.configPath
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            let start = Date().timeIntervalSince1970
            let outcome = try? Self.kataRuntime(["run", "--config", configPath, "--rootfs", rootfs, "--", "sh", "-c", script], timeout: 400)
            if let outcome { outcomes.append((outcome, start, Date().timeIntervalSince1970)) }
        }
        let runs = outcomes.values
        try #require(runs.count == 2)
        var randoms: [String] = []
        for (outcome, start, end) in runs {
            #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
            let lines = outcome.stdout.split(separator: "\n").map(String.init)
            try #require(lines.count == 2, "stdout: \(outcome.stdout) stderr: \(outcome.stderr)")
            #expect(lines[0].count == 64, "32 random bytes in hex: \(lines[0])")
            randoms.append(lines[0])
            let guestTime = Double(lines[1]) ?? 0
            #expect(guestTime >= start.rounded(.down) - 2 && guestTime <= end + 2,
                    "the clone's clock says \(lines[1]), the host's was \(Int(start))...\(Int(end))")
        }
        #expect(randoms[0] != randoms[1], "two clones drew the same random bytes")
        #expect(try Self.kataRuntime(["factory", "status", "--config", setup.configPath]).stdout.contains("state: ready"),
                "the clones changed the template")
        setup.expectNothingLeft()

        // A clone killed with SIGKILL mid-run: the run fails, the template stays as it was.
        let memoryBefore = try Data(contentsOf: URL(filePath: template + "/memory"))
        let victim = Process()
        victim.executableURL = Self.productsDirectory.appending(path: "kata-runtime")
        victim.arguments = ["run", "--config", setup.configPath, "--rootfs", rootfs, "--", "sh", "-c", "sleep 120"]
        victim.standardInput = FileHandle.nullDevice
        victim.standardOutput = FileHandle.nullDevice
        victim.standardError = FileHandle.nullDevice
        try victim.run()
        let deadline = Date().addingTimeInterval(120)
        var vmms: [String] = []
        while vmms.isEmpty && victim.isRunning && Date() < deadline {
            usleep(100_000)
            vmms = RuntimeTestSupport.processes(mentioning: setup.stateDirectory).filter { $0.contains("kasa-vmm") && $0.contains("--restore") }
        }
        try #require(vmms.count == 1, "no restored kasa-vmm to kill: \(vmms)")
        sleep(3)  // into the container's start
        kill(Int32(vmms[0].prefix { $0 != ":" })!, SIGKILL)
        victim.waitUntilExit()
        #expect(victim.terminationStatus != 0, "a run whose VM was killed succeeded")
        #expect(try Data(contentsOf: URL(filePath: template + "/memory")) == memoryBefore, "the killed clone changed the template")
        let after = try Self.kataRuntime(["run", "--config", setup.configPath, "--rootfs", rootfs, "--", "sh", "-c", "echo still-works"], timeout: 400)
        #expect(after.status == 0 && after.stdout == "still-works\n", "after a killed clone: \(after.stderr)")
        setup.expectNothingLeft()

        let destroyed = try Self.kataRuntime(["factory", "destroy", "--config", setup.configPath])
        #expect(destroyed.status == 0, "\(destroyed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: template), "factory destroy left \(template)")
    }

    @Test func execNeedsARunningSandbox() throws {
        let setup = try Setup()
        let exec = try Self.kataRuntime(["exec", "--config", setup.configPath, "nothing-here"])
        #expect(exec.status == 2)
        #expect(exec.stderr == "kata-runtime: error: no running sandbox nothing-here (no \(setup.stateDirectory)/nothing-here)\n")
    }

    /// `kata-runtime exec` reaches the guest's shell while a workload runs; then Ctrl-C on
    /// the run: the workload (a shell as its container's PID 1, which ignores SIGINT) is
    /// given 10 s, then the sandbox is torn down and the run exits 130.
    @Test(.timeLimit(.minutes(20)))
    func theDebugConsoleReachesARunningSandboxAndCtrlCEndsIt() throws {
        let sandbox = try DebuggableSandbox("dbg")
        let (setup, id, background, run) = (sandbox.setup, sandbox.id, sandbox.run, sandbox.run.process)

        let exec = try Self.kataRuntime(["exec", "--config", setup.configPath, id],
                                        stdin: "echo guest-says-$((40+2)); cat /proc/1/cmdline; echo; exit\n", timeout: 120)
        #expect(exec.status == 0, "stderr: \(exec.stderr)")
        #expect(exec.stdout.contains("guest-says-42"), "\(exec.stdout.debugDescription)")
        #expect(exec.stdout.contains("/init"), "PID 1 of the guest is the agent: \(exec.stdout.debugDescription)")

        let interrupted = Date()
        kill(run.processIdentifier, SIGINT)
        try #require(background.waitForExit(120), "Ctrl-C did not end the run")
        #expect(run.terminationStatus == 130)
        #expect(Date().timeIntervalSince(interrupted) < 60)
        setup.expectNothingLeft()
    }

    /// The agent dying inside the guest (it is PID 1: the kernel panics, and `panic=-1`
    /// resets the guest at once): the run ends with an error that names the panic, not
    /// after a timeout, and leaves nothing. The agent is made to crash as a bug would crash
    /// it: from the guest's debug console, its code is overwritten with breakpoint
    /// instructions through /proc/1/mem (the kernel kills even init for a fault).
    @Test(.timeLimit(.minutes(20)))
    func anAgentThatDiesInTheGuestEndsTheRunWithTheKernelsReason() throws {
        let sandbox = try DebuggableSandbox("crash")
        let (setup, id, background) = (sandbox.setup, sandbox.id, sandbox.run)

        // The agent's first executable mapping (a static binary: its code), filled with int3.
        let crash = """
            l=$(grep -m1 ' r-xp ' /proc/1/maps); s=$((0x${l%%-*})); e=${l#*-}; e=$((0x${e%% *}))
            echo "overwriting $l"
            tr '\\000' '\\314' < /dev/zero | dd of=/proc/1/mem bs=4096 seek=$((s / 4096)) count=$(((e - s) / 4096)) conv=notrunc
            sleep 60

            """
        let started = Date()
        // The console's connection dies with the guest: its own status is not the point.
        let exec = try Self.kataRuntime(["exec", "--config", setup.configPath, id], stdin: crash, timeout: 120)
        let ended = background.waitForExit(120)
        try #require(ended, "the run outlived its agent; exec said: \(exec.stdout) \(exec.stderr)")
        let stderr = background.errors.text
        #expect(background.process.terminationStatus == 125, "\(stderr)")
        #expect(stderr.contains("the guest kernel panicked: Attempted to kill init!"),
                "the error should name the panic: \(stderr)\nexec: \(exec.stdout) \(exec.stderr)")
        #expect(Date().timeIntervalSince(started) < 120)
        setup.expectNothingLeft()
    }
}

/// A sandbox of the agent image with a shell, its debug console on, running
/// `echo started; sleep 600` through `kata-runtime run` in the background: ready when its
/// workload said so (else the init throws). Its rootfs copy goes with it.
final class DebuggableSandbox {
    let setup: KataRuntimeCommandTests.Setup
    let id: String
    let run: BackgroundRun
    private let rootfs: String

    init(_ prefix: String) throws {
        let kernel = try RuntimeTestSupport.artifact("KASA_TEST_KERNEL", script: "images/build-kernel.sh", what: "the guest kernel")
        let image = try RuntimeTestSupport.artifact("KASA_TEST_AGENT_SHELL_IMAGE", script: "images/build-agent-image.sh",
                                                    arguments: ["--with-shell"], what: "the agent image with a shell")
        rootfs = try RuntimeTestSupport.busyboxRootfs()
        setup = try KataRuntimeCommandTests.Setup(kernel: kernel, boot: image, debugConsole: true)
        id = "\(prefix)-\(UUID().uuidString.prefix(6).lowercased())"
        run = try BackgroundRun(["run", "--config", setup.configPath, "--id", id, "--rootfs", rootfs, "--",
                                 "sh", "-c", "echo started; sleep 600"])
        guard run.output.wait(for: "started", timeout: 400) else {
            throw RuntimeTestSupport.Missing(description: "the workload never started; stderr: \(run.errors.text)")
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: rootfs) }
}

/// `kata-runtime ARGUMENTS` in the background, stdin empty, its output and errors
/// collected as they come; killed if still running when this goes.
final class BackgroundRun {
    let process = Process()
    let output: LineWatcher
    let errors: LineWatcher

    init(_ arguments: [String]) throws {
        process.executableURL = KataRuntimeCommandTests.productsDirectory.appending(path: "kata-runtime")
        process.arguments = arguments
        let outputPipe = Pipe(), errorPipe = Pipe()
        process.standardOutput = outputPipe
        process.standardError = errorPipe
        process.standardInput = FileHandle.nullDevice
        var environment = ProcessInfo.processInfo.environment
        environment["KATA_CONF_FILE"] = nil
        process.environment = environment
        try process.run()
        output = LineWatcher(outputPipe.fileHandleForReading)
        errors = LineWatcher(errorPipe.fileHandleForReading)
    }

    /// Waits up to `seconds` for the exit; true when it exited.
    func waitForExit(_ seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        guard !process.isRunning else { return false }
        process.waitUntilExit()
        return true
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// Collects a pipe's output and waits for a line.
final class LineWatcher: @unchecked Sendable {
    private let lock = NSCondition()
    private var collected = ""

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                lock.lock()
                collected += String(decoding: data, as: UTF8.self)
                lock.broadcast()
                lock.unlock()
            }
        }
    }

    /// Everything collected so far.
    var text: String { lock.lock(); defer { lock.unlock() }; return collected }

    func wait(for needle: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        defer { lock.unlock() }
        while !collected.contains(needle) {
            if !lock.wait(until: deadline) { return collected.contains(needle) }
        }
        return true
    }
}
