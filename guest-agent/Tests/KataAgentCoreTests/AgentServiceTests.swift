import AgentProtocol
import Foundation
import Testing
@testable import KataAgentCore
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// The real kata-agent binary as a host process on a Unix socket, driven over ttrpc the
/// way the host runtime drives it in a VM: containers in a busybox rootfs, their streams,
/// exit codes, signals, execs, ptys and bad requests.
final class RunningAgent {
    let process = Process()
    let directory: String
    let client: AgentClient
    let rootfs: ContainerTestSupport.Rootfs

    struct Failure: Error, CustomStringConvertible { let description: String }

    init(environment: [String: String] = [:], arguments: [String] = []) throws {
        guard let executable = ContainerTestSupport.agentExecutable else { throw Failure(description: "kata-agent was not built next to the tests") }
        guard getuid() == 0 else { throw Failure(description: "the agent tests create namespaces and mounts: run them as root") }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-agent-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let socketPath = directory + "/agent.sock"
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--listen", "unix:" + socketPath, "--state-dir", directory + "/state"] + arguments
        process.standardOutput = FileHandle.nullDevice
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        try process.run()
        rootfs = try ContainerTestSupport.Rootfs()
        var descriptor: Int32 = -1
        for _ in 0..<500 {
            descriptor = RunningAgent.connect(socketPath)
            if descriptor >= 0 { break }
            usleep(10_000)
        }
        guard descriptor >= 0 else { throw Failure(description: "the agent never listened on \(socketPath)") }
        client = AgentClient(connection: TTRPCClient(descriptor: descriptor))
    }

    static func connect(_ path: String) -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if result != 0 { close(descriptor); return -1 }
        return descriptor
    }

    deinit {
        client.connection.close()
        process.terminate()
        process.waitUntilExit()
        rootfs.remove()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// An OCI config.json for the busybox rootfs running `script` with sh.
    func ociSpec(_ script: String, terminal: Bool = false, extra: String = "", extraMounts: String = "") -> Data {
        let json = """
        {"ociVersion": "1.1.0",
         "process": {"terminal": \(terminal), "user": {"uid": 0, "gid": 0}, "args": ["/bin/sh", "-c", \(quote(script))],
                     "env": ["PATH=/bin", "GREETING=hello"], "cwd": "/"},
         "root": {"path": "\(rootfs.path)"},
         "hostname": "kasa-test",
         "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}\(extraMounts)]
         \(extra)}
        """
        return Data(json.utf8)
    }

    func quote(_ text: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [text])
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }

    func create(_ id: String, _ script: String, terminal: Bool = false, rootfsMounts: [AgentMount] = [], extra: String = "",
                extraMounts: String = "", readonlyRootfs: Bool = false) throws {
        var request = AgentCreateContainerRequest()
        request.containerID = id
        request.execID = id
        request.readonlyRootfs = readonlyRootfs
        request.ociSpecJson = ociSpec(script, terminal: terminal, extra: extra, extraMounts: extraMounts)
        request.rootfs = rootfsMounts
        try client.call(.createContainer, request)
    }

    func start(_ id: String) throws {
        var request = AgentStartContainerRequest()
        request.containerID = id
        try client.call(.startContainer, request)
    }

    /// Reads a stream to its end.
    func readAll(_ method: AgentServiceMethod, _ id: String, exec: String = "") throws -> String {
        var bytes: [UInt8] = []
        while true {
            var request = AgentReadStreamRequest()
            request.containerID = id
            request.execID = exec
            request.len = 65536
            let chunk = try client.call(method, request, returning: AgentReadStreamResponse.self, timeout: 30).data
            if chunk.isEmpty { break }
            bytes += chunk
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func wait(_ id: String, exec: String = "") throws -> Int32 {
        var request = AgentWaitProcessRequest()
        request.containerID = id
        request.execID = exec
        return try client.call(.waitProcess, request, returning: AgentWaitProcessResponse.self, timeout: 30).exitStatus
    }

    func remove(_ id: String) throws {
        var request = AgentRemoveContainerRequest()
        request.containerID = id
        request.timeoutSeconds = 5
        try client.call(.removeContainer, request)
    }
}

@Suite(.serialized, .timeLimit(.minutes(3)))
struct AgentServiceTests {
    @Test func healthAndVersion() throws {
        let agent = try RunningAgent()
        let health = try agent.client.call(.check, AgentCheckRequest(), returning: AgentHealthCheckResponse.self)
        #expect(health.status == .serving)
        let version = try agent.client.call(.version, AgentCheckRequest(), returning: AgentVersionCheckResponse.self)
        #expect(version.protocolVersion == AgentProtocolVersion.current)
        #expect(!version.agentVersion.isEmpty)
    }

    /// A clone's clock and random pool are the guest's: an agent running as a host process
    /// must refuse to touch the host's (the runtime calls these on every restored VM).
    @Test func aHostProcessAgentLeavesTheHostClockAndPoolAlone() throws {
        let agent = try RunningAgent()
        var seed = AgentReseedRandomDevRequest()
        seed.data = Data(repeating: 7, count: 64)
        let reseed = #expect(throws: TTRPCCallError.self) { try agent.client.call(.reseedRandomDev, seed) }
        #expect(reseed?.code == .failedPrecondition, "\(String(describing: reseed))")
        var time = AgentSetGuestDateTimeRequest()
        time.sec = 0
        let clock = #expect(throws: TTRPCCallError.self) { try agent.client.call(.setGuestDateTime, time) }
        #expect(clock?.code == .failedPrecondition, "\(String(describing: clock))")
        #expect(Date().timeIntervalSince1970 > 1_000_000_000, "the host clock was set to the epoch")
    }

    @Test func containerStreamsAndExitCode() throws {
        let agent = try RunningAgent()
        try agent.create("c1", "echo out; echo err >&2; echo $GREETING $(hostname) $$; exit 3")
        try agent.start("c1")
        #expect(try agent.readAll(.readStdout, "c1") == "out\nhello kasa-test 1\n")
        #expect(try agent.readAll(.readStderr, "c1") == "err\n")
        #expect(try agent.wait("c1") == 3)
        try agent.remove("c1")
    }

    @Test func stdinRoundTrip() throws {
        let agent = try RunningAgent()
        try agent.create("cat", "cat; echo done")
        try agent.start("cat")
        var write = AgentWriteStreamRequest()
        write.containerID = "cat"
        write.data = Data("ping\n".utf8)
        #expect(try agent.client.call(.writeStdin, write, returning: AgentWriteStreamResponse.self).len == 5)
        var close = AgentCloseStdinRequest()
        close.containerID = "cat"
        try agent.client.call(.closeStdin, close)
        #expect(try agent.readAll(.readStdout, "cat") == "ping\ndone\n")
        #expect(try agent.wait("cat") == 0)
    }

    @Test func execJoinsARunningContainerAndSignalsEndIt() throws {
        let agent = try RunningAgent()
        // PID 1 of a pid namespace only gets signals it handles (SIGKILL aside): trap TERM.
        try agent.create("long", "trap 'exit 143' TERM; echo ready; while true; do sleep 1; done")
        try agent.start("long")
        var exec = AgentExecProcessRequest()
        exec.containerID = "long"
        exec.execID = "e1"
        exec.processJson = Data(#"{"args": ["/bin/sh", "-c", "hostname; echo $$; exit 7"], "env": ["PATH=/bin"], "cwd": "/tmp"}"#.utf8)
        try agent.client.call(.execProcess, exec)
        let output = try agent.readAll(.readStdout, "long", exec: "e1").split(separator: "\n")
        #expect(output.first == "kasa-test")
        #expect(output.count == 2 && output[1] != "1")
        #expect(try agent.wait("long", exec: "e1") == 7)

        var signal = AgentSignalProcessRequest()
        signal.containerID = "long"
        signal.signal = UInt32(SIGTERM)
        try agent.client.call(.signalProcess, signal)
        #expect(try agent.wait("long") == 128 + SIGTERM)
        try agent.remove("long")
    }

    /// Signals sent to the agent reach the containers (as PID 1 it would drop them): USR1
    /// is forwarded and the agent keeps serving; TERM is forwarded, then a host-process
    /// agent ends by it. The trap writes into the rootfs, which is the host directory.
    @Test func signalsToTheAgentReachTheContainers() throws {
        let agent = try RunningAgent()
        try agent.create("sig", "trap 'echo usr1 >> /signals' USR1; trap 'echo term >> /signals; exit 0' TERM; echo up; while sleep 1; do :; done")
        try agent.start("sig")
        var read = AgentReadStreamRequest()
        read.containerID = "sig"
        read.len = 64
        #expect(try agent.client.call(.readStdout, read, returning: AgentReadStreamResponse.self, timeout: 30).data == Data("up\n".utf8))
        let marker = agent.rootfs.path + "/signals"
        func markerText(becomes expected: String) -> String {
            for _ in 0..<100 {
                let text = (try? String(contentsOfFile: marker, encoding: .utf8)) ?? ""
                if text == expected { return text }
                usleep(100_000)
            }
            return (try? String(contentsOfFile: marker, encoding: .utf8)) ?? "(no file)"
        }
        kill(agent.process.processIdentifier, SIGUSR1)
        #expect(markerText(becomes: "usr1\n") == "usr1\n")
        #expect(try agent.client.call(.check, AgentCheckRequest(), returning: AgentHealthCheckResponse.self).status == .serving)
        kill(agent.process.processIdentifier, SIGTERM)
        #expect(markerText(becomes: "usr1\nterm\n") == "usr1\nterm\n")
        agent.process.waitUntilExit()
        #expect(agent.process.terminationReason == .uncaughtSignal && agent.process.terminationStatus == SIGTERM)
    }

    /// On kvm_pvm the host puts GLIBC_TUNABLES (glibc off AVX) on the guest kernel command
    /// line, which makes it the agent's environment: every container process gets it
    /// too, unless its spec sets its own.
    @Test func glibcTunablesReachContainerProcesses() throws {
        let agent = try RunningAgent(environment: ["GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"])
        try agent.create("inherits", "echo $GLIBC_TUNABLES")
        try agent.start("inherits")
        #expect(try agent.readAll(.readStdout, "inherits") == "glibc.cpu.hwcaps=-AVX2\n")
        #expect(try agent.wait("inherits") == 0)

        var request = AgentCreateContainerRequest()
        request.containerID = "own"
        request.execID = "own"
        let spec = String(decoding: agent.ociSpec("echo $GLIBC_TUNABLES"), as: UTF8.self)
            .replacingOccurrences(of: #""GREETING=hello""#, with: #""GREETING=hello", "GLIBC_TUNABLES=mine""#)
        request.ociSpecJson = Data(spec.utf8)
        try agent.client.call(.createContainer, request)
        try agent.start("own")
        #expect(try agent.readAll(.readStdout, "own") == "mine\n")
    }

    /// GetOOMEvent reports a container once per new `oom_kill` in its cgroup's
    /// memory.events. The kill itself is the kernel's (this host has no cgroup v2 memory
    /// controller and kvm_pvm cannot reach an OOM in reasonable time, docs/kvm-pvm.md), so
    /// the cgroup root here is a plain directory whose files the test writes.
    @Test func oomKillsInTheCgroupAreReportedOnce() throws {
        let cgroups = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-fake-cgroup-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: cgroups) }
        try FileManager.default.createDirectory(atPath: cgroups + "/kasa-hog", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: cgroups + "/kasa-hog/cgroup.procs", contents: nil)
        try "oom 0\noom_kill 0\n".write(toFile: cgroups + "/kasa-hog/memory.events", atomically: true, encoding: .utf8)
        let agent = try RunningAgent(arguments: ["--cgroup-root", cgroups])
        try agent.create("hog", "sleep 30")
        try agent.start("hog")
        #expect(throws: TTRPCCallError.self, "no event while oom_kill stays 0") {
            try agent.client.call(.getOOMEvent, AgentGetOOMEventRequest(), returning: AgentOOMEvent.self, timeout: 1)
        }
        // The agent ends that call at its own deadline, a moment after the client gave up;
        // a kill it found in that moment would go to the abandoned call. Let it end first.
        usleep(1_000_000)
        try "oom 1\noom_kill 1\n".write(toFile: cgroups + "/kasa-hog/memory.events", atomically: true, encoding: .utf8)
        #expect(try agent.client.call(.getOOMEvent, AgentGetOOMEventRequest(), returning: AgentOOMEvent.self, timeout: 10).containerID == "hog")
        #expect(throws: TTRPCCallError.self, "the same kill is reported once") {
            try agent.client.call(.getOOMEvent, AgentGetOOMEventRequest(), returning: AgentOOMEvent.self, timeout: 1)
        }
        var signal = AgentSignalProcessRequest()
        signal.containerID = "hog"
        signal.signal = UInt32(SIGKILL)
        try agent.client.call(.signalProcess, signal)
        #expect(try agent.wait("hog") == 128 + SIGKILL)
    }

    /// A GetOOMEvent call already waiting is woken by the change itself (inotify on
    /// memory.events, which the kernel rewrites in place), not by a periodic look at the
    /// files: it answers well before the fallback look (10 s) and its own 8 s limit.
    @Test func aWaitingOOMCallIsWokenByTheChange() throws {
        let cgroups = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-fake-cgroup-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: cgroups) }
        try FileManager.default.createDirectory(atPath: cgroups + "/kasa-hog", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: cgroups + "/kasa-hog/cgroup.procs", contents: nil)
        let events = cgroups + "/kasa-hog/memory.events"
        try "oom 0\noom_kill 0\n".write(toFile: events, atomically: true, encoding: .utf8)
        let agent = try RunningAgent(arguments: ["--cgroup-root", cgroups])
        try agent.create("hog", "sleep 30")
        try agent.start("hog")
        DispatchQueue.global().asyncAfter(deadline: .now() + 1.5) {
            // The same file, rewritten where it is (no rename), as the kernel updates it.
            guard let file = FileHandle(forWritingAtPath: events) else { return }
            file.write(Data("oom 1\noom_kill 1\n".utf8))
            try? file.close()
        }
        let asked = Date()
        #expect(try agent.client.call(.getOOMEvent, AgentGetOOMEventRequest(), returning: AgentOOMEvent.self, timeout: 8).containerID == "hog")
        #expect(Date().timeIntervalSince(asked) < 7, "answered only after \(Date().timeIntervalSince(asked)) s")
        var signal = AgentSignalProcessRequest()
        signal.containerID = "hog"
        signal.signal = UInt32(SIGKILL)
        try agent.client.call(.signalProcess, signal)
        #expect(try agent.wait("hog") == 128 + SIGKILL)
    }

    /// Pause and Resume freeze and thaw the container's cgroup; Update writes new limits;
    /// ListProcesses names the container's processes. The cgroup root is a plain
    /// directory (no cgroup v2 controllers on this host): the test reads what the agent
    /// wrote. The real freeze runs in the VM tests.
    @Test func pauseResumeUpdateAndListReachTheCgroup() throws {
        let cgroups = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-fake-cgroup-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: cgroups) }
        let cgroup = cgroups + "/kasa-c"
        try FileManager.default.createDirectory(atPath: cgroup, withIntermediateDirectories: true)
        for file in ["cgroup.procs", "cgroup.freeze", "memory.max", "pids.max", "cpu.max"] {
            FileManager.default.createFile(atPath: cgroup + "/" + file, contents: nil)
        }
        func read(_ file: String) -> String { (try? String(contentsOfFile: cgroup + "/" + file, encoding: .utf8)) ?? "?" }
        let agent = try RunningAgent(arguments: ["--cgroup-root", cgroups])
        try agent.create("c", "exec sleep 30")
        try agent.start("c")

        var pause = AgentPauseContainerRequest()
        pause.containerID = "c"
        try agent.client.call(.pauseContainer, pause)
        #expect(read("cgroup.freeze") == "1")
        var resume = AgentResumeContainerRequest()
        resume.containerID = "c"
        try agent.client.call(.resumeContainer, resume)
        #expect(read("cgroup.freeze") == "0")

        var update = AgentUpdateContainerRequest()
        update.containerID = "c"
        update.resourcesJson = Data(#"{"memory": {"limit": 268435456}, "pids": {"limit": 42}, "cpu": {"quota": 50000, "period": 100000}}"#.utf8)
        try agent.client.call(.updateContainer, update)
        #expect(read("memory.max") == "268435456")
        #expect(read("pids.max") == "42")
        #expect(read("cpu.max") == "50000 100000")
        update.resourcesJson = Data(#"{"memory": {"limit": -1}}"#.utf8)
        try agent.client.call(.updateContainer, update)
        #expect(read("memory.max") == "max", "-1 lifts the limit")
        #expect(read("pids.max") == "42", "limits not named stay")
        update.resourcesJson = Data(#"{"memory": {"limit": "lots"}}"#.utf8)
        let invalid = #expect(throws: TTRPCCallError.self) { try agent.client.call(.updateContainer, update) }
        #expect(invalid?.code == .invalidArgument)

        // This fake cgroup.procs holds what joining wrote ("0"): the agent falls back to
        // the processes it started.
        var list = AgentListProcessesRequest()
        list.containerID = "c"
        let listed = try agent.client.call(.listProcesses, list, returning: AgentListProcessesResponse.self).pids
        #expect(listed.count == 1 && listed[0] > 0, "\(listed)")
        try "\(listed[0])\n7\n".write(toFile: cgroup + "/cgroup.procs", atomically: true, encoding: .utf8)
        #expect(try agent.client.call(.listProcesses, list, returning: AgentListProcessesResponse.self).pids == [7, listed[0]].sorted())

        list.containerID = "nope"
        let unknown = #expect(throws: TTRPCCallError.self) { try agent.client.call(.listProcesses, list) }
        #expect(unknown?.code == .notFound)
        var signal = AgentSignalProcessRequest()
        signal.containerID = "c"
        signal.signal = UInt32(SIGKILL)
        try agent.client.call(.signalProcess, signal)
        #expect(try agent.wait("c") == 128 + SIGKILL)
        let exited = #expect(throws: TTRPCCallError.self, "an exited container cannot be paused") { try agent.client.call(.pauseContainer, pause) }
        #expect(exited?.code == .failedPrecondition)
    }

    /// Kill with `all` reaches every process in the container's cgroup, including ones
    /// the agent never started (here a process the test put into the fake cgroup).
    @Test func signalAllReachesEveryProcessInTheCgroup() throws {
        let cgroups = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-fake-cgroup-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: cgroups) }
        try FileManager.default.createDirectory(atPath: cgroups + "/kasa-all", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: cgroups + "/kasa-all/cgroup.procs", contents: nil)
        let agent = try RunningAgent(arguments: ["--cgroup-root", cgroups])
        try agent.create("all", "exec sleep 30")
        try agent.start("all")
        let stray = try Process.run(URL(fileURLWithPath: "/bin/sleep"), arguments: ["60"])
        defer { kill(stray.processIdentifier, SIGKILL) }
        try "\(stray.processIdentifier)\n".write(toFile: cgroups + "/kasa-all/cgroup.procs", atomically: true, encoding: .utf8)

        var signal = AgentSignalProcessRequest()
        signal.containerID = "all"
        signal.signal = UInt32(SIGKILL)
        signal.all = true
        try agent.client.call(.signalProcess, signal)
        #expect(try agent.wait("all") == 128 + SIGKILL)
        func ended(_ pid: Int32) -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
            return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
        }
        var waited = 0
        while !ended(stray.processIdentifier) && waited < 100 { usleep(50_000); waited += 1 }
        #expect(ended(stray.processIdentifier), "the process in the cgroup got the signal too")
    }

    @Test func pausingWithoutCgroupsIsAClearError() throws {
        let agent = try RunningAgent()
        try agent.create("p", "exec sleep 30")
        try agent.start("p")
        var pause = AgentPauseContainerRequest()
        pause.containerID = "p"
        let error = #expect(throws: TTRPCCallError.self) { try agent.client.call(.pauseContainer, pause) }
        #expect(error?.code == .unavailable && error?.message.contains("cgroup") == true, "\(String(describing: error))")
        try agent.remove("p")
    }

    /// A pod's container whose spec names IPC and UTS namespaces by path (CRI's pause
    /// process on the host) joins those of the pod sandbox container; its PID namespace
    /// stays its own, and a container without such paths shares nothing.
    @Test func podContainersShareTheSandboxIPCAndUTSNamespaces() throws {
        let agent = try RunningAgent()
        var sandbox = AgentCreateSandboxRequest()
        sandbox.sandboxID = "pod"
        try agent.client.call(.createSandbox, sandbox)
        let report = #"echo "$(readlink /proc/self/ns/ipc) $(readlink /proc/self/ns/uts) $(readlink /proc/self/ns/pid)""#
        try agent.create("pod", report + "; exec sleep 30")
        try agent.start("pod")
        var read = AgentReadStreamRequest()
        read.containerID = "pod"
        read.len = 4096
        let podLine = String(decoding: try agent.client.call(.readStdout, read, returning: AgentReadStreamResponse.self, timeout: 30).data, as: UTF8.self)
        let pod = podLine.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(pod.count == 3, "\(podLine)")

        let hostPaths = #", "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc", "path": "/proc/4242/ns/ipc"}, {"type": "uts", "path": "/proc/4242/ns/uts"}, {"type": "network", "path": "/proc/4242/ns/net"}]}"#
        try agent.create("app", report, extra: hostPaths)
        try agent.start("app")
        let app = try agent.readAll(.readStdout, "app").split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(try agent.wait("app") == 0)
        try agent.create("solo", report)
        try agent.start("solo")
        let solo = try agent.readAll(.readStdout, "solo").split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(try agent.wait("solo") == 0)

        #expect(app.count == 3 && pod.count == 3 && solo.count == 3, "pod \(pod) app \(app) solo \(solo)")
        guard app.count == 3, pod.count == 3, solo.count == 3 else { return }
        #expect(app[0] == pod[0] && app[1] == pod[1], "IPC and UTS are the sandbox's: pod \(pod) app \(app)")
        #expect(app[2] != pod[2], "the PID namespace is the container's own")
        #expect(solo[0] != pod[0] && solo[1] != pod[1], "no paths, nothing shared: pod \(pod) solo \(solo)")
        try agent.remove("app")
        try agent.remove("solo")
        try agent.remove("pod")
    }

    @Test func killSignalIsReported() throws {
        let agent = try RunningAgent()
        try agent.create("k", "trap '' TERM; echo up; exec sleep 60")
        try agent.start("k")
        var signal = AgentSignalProcessRequest()
        signal.containerID = "k"
        signal.signal = UInt32(SIGKILL)
        try agent.client.call(.signalProcess, signal)
        #expect(try agent.wait("k") == 128 + SIGKILL)
    }

    @Test func terminalProcessesGetAPtyThatResizes() throws {
        let agent = try RunningAgent()
        try agent.create("tty", "stty size; tty", terminal: true)
        var resize = AgentTtyWinResizeRequest()
        resize.containerID = "tty"
        resize.rows = 33
        resize.columns = 101
        try agent.client.call(.ttyWinResize, resize)
        try agent.start("tty")
        let output = try agent.readAll(.readStdout, "tty")
        #expect(output.contains("33 101"), "output: \(output)")
        #expect(output.contains("/dev/pts/") || output.contains("/dev/console"), "output: \(output)")
        #expect(try agent.wait("tty") == 0)
    }

    @Test func badRequestsGetErrorsAndTheAgentKeepsServing() throws {
        let agent = try RunningAgent()
        // Unknown container and exec ids
        #expect(throws: TTRPCCallError.self) { try agent.wait("nope") }
        // Invalid OCI spec
        var create = AgentCreateContainerRequest()
        create.containerID = "bad"
        create.ociSpecJson = Data("{not json".utf8)
        let invalid = #expect(throws: TTRPCCallError.self) { try agent.client.call(.createContainer, create) }
        #expect(invalid?.code == .invalidArgument)
        // Missing rootfs
        create.ociSpecJson = Data(#"{"ociVersion": "1.1.0", "process": {"args": ["/bin/sh"], "cwd": "/"}, "root": {"path": "/nonexistent/rootfs"}}"#.utf8)
        let missing = #expect(throws: TTRPCCallError.self) { try agent.client.call(.createContainer, create) }
        #expect(missing?.code == .notFound)
        // Non-executable command: StartContainer fails with the exec error
        try agent.create("noexec", "true")
        var request = AgentCreateContainerRequest()
        request.containerID = "missing-binary"
        request.ociSpecJson = Data(String(decoding: agent.ociSpec("x"), as: UTF8.self)
            .replacingOccurrences(of: #"["/bin/sh", "-c", "x"]"#, with: #"["/bin/does-not-exist"]"#).utf8)
        try agent.client.call(.createContainer, request)
        let startFailure = #expect(throws: TTRPCCallError.self) { try agent.start("missing-binary") }
        #expect(startFailure?.message.contains("does-not-exist") == true, "\(String(describing: startFailure))")
        // Unknown method
        let unknown = #expect(throws: TTRPCCallError.self) {
            try agent.client.connection.call(service: AgentService.name, method: "Teleport", request: AgentEmpty(), responseType: AgentEmpty.self)
        }
        #expect(unknown?.code == .unimplemented)
        // Duplicate container id
        let duplicate = #expect(throws: TTRPCCallError.self) { try agent.create("noexec", "true") }
        #expect(duplicate?.code == .alreadyExists)
        // Still serving
        #expect(try agent.client.call(.check, AgentCheckRequest(), returning: AgentHealthCheckResponse.self).status == .serving)
    }

    @Test func removeLeavesNoProcessOrMount() throws {
        let agent = try RunningAgent()
        // Two sleeps with a duration no other process uses, so the host's /proc finds them.
        let token = "60.\(UInt32.random(in: 100_000...999_999))"
        func sleepers() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { entry in
                guard Int(entry) != nil, let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return false }
                return String(decoding: cmdline, as: UTF8.self).contains(token)
            }
        }
        try agent.create("gone", "sleep \(token) & sleep \(token)")
        try agent.start("gone")
        // Remove must end the background child too: wait until both run.
        var polls = 0
        while sleepers().count < 2 && polls < 200 { usleep(50_000); polls += 1 }
        #expect(sleepers().count == 2, "the container's two sleeps: \(sleepers())")
        try agent.remove("gone")
        // Nothing of the container is mounted on the host, and its processes are gone.
        polls = 0
        while !sleepers().isEmpty && polls < 200 { usleep(50_000); polls += 1 }
        #expect(sleepers().isEmpty, "processes left: \(sleepers())")
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        #expect(!mounts.contains(agent.rootfs.path))
        let status = #expect(throws: TTRPCCallError.self) { try agent.wait("gone") }
        #expect(status?.code == .notFound)
    }

    /// A read-only root (as the runtime hands over its cached image) gets a tmpfs overlay:
    /// the container writes, the source stays untouched, and removal unmounts every layer.
    @Test func readOnlyRootfsGetsAWritableOverlay() throws {
        let agent = try RunningAgent()
        var root = AgentMount()
        root.source = agent.rootfs.path
        root.type = "bind"
        root.options = ["bind", "ro"]
        try agent.create("layered", "echo written > /new-file && cat /new-file && rm /bin/true && ls /bin/true; echo $?",
                         rootfsMounts: [root])
        try agent.start("layered")
        let output = try agent.readAll(.readStdout, "layered")
        #expect(output.hasPrefix("written\n"), "stdout: \(output.debugDescription)")
        #expect(output.hasSuffix("1\n"), "a file removed in the container must be gone there: \(output.debugDescription)")
        #expect(try agent.wait("layered") == 0)
        #expect(access(agent.rootfs.path + "/new-file", F_OK) != 0, "the container's write reached the read-only source")
        #expect(access(agent.rootfs.path + "/bin/true", F_OK) == 0, "the container's delete reached the read-only source")
        try agent.remove("layered")
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        #expect(!mounts.contains(agent.directory + "/state/containers/layered"), "a layer stayed mounted:\n\(mounts)")
    }

    /// What containerd's CRI asks for every pod's sandbox (pause) container: a read-only
    /// root, plus binds and a tmpfs over paths the image does not have (/etc/resolv.conf,
    /// /dev/shm). The mount points are made before the root turns read-only; the image
    /// itself gains none of them, and the container cannot write its root.
    @Test func readOnlyRootWithMountsOverPathsTheImageLacks() throws {
        let agent = try RunningAgent()
        var root = AgentMount()
        root.source = agent.rootfs.path
        root.type = "bind"
        root.options = ["bind", "ro"]
        let resolv = agent.directory + "/resolv.conf"
        try "nameserver 10.96.0.10\nsearch pod.local\n".write(toFile: resolv, atomically: true, encoding: .utf8)
        let newDirectory = "/cri-\(UUID().uuidString.prefix(6))"
        let mounts = """
            , {"destination": "\(newDirectory)/resolv.conf", "type": "bind", "source": "\(resolv)", "options": ["rbind", "ro"]},
              {"destination": "\(newDirectory)/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "nodev", "size=65536k"]}
            """
        try agent.create("pause", "cat \(newDirectory)/resolv.conf; touch /written 2>/dev/null; echo root-write=$?; "
                         + "touch \(newDirectory)/shm/x; echo shm-write=$?",
                         rootfsMounts: [root], extraMounts: mounts, readonlyRootfs: true)
        try agent.start("pause")
        let output = try agent.readAll(.readStdout, "pause")
        #expect(output == "nameserver 10.96.0.10\nsearch pod.local\nroot-write=1\nshm-write=0\n", "stdout: \(output.debugDescription)")
        #expect(try agent.wait("pause") == 0)
        #expect(access(agent.rootfs.path + newDirectory, F_OK) != 0, "a mount point was created in the read-only source image")
        try agent.remove("pause")
        let left = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        #expect(!left.contains(agent.directory + "/state/containers/pause"), "a layer stayed mounted:\n\(left)")
    }
}

/// The debug console (`kata-runtime exec`): a shell on a pty for each connection.
@Suite(.timeLimit(.minutes(1)))
struct DebugConsoleTests {
    @Test func theKernelCommandLineEnablesIt() {
        #expect(DebugConsole.endpoint(fromKernelCommandLine: "console=ttyS0 quiet\n") == nil)
        #expect(DebugConsole.endpoint(fromKernelCommandLine: "console=ttyS0 agent.debug_console quiet\n") == .vsock(port: 1026))
        #expect(DebugConsole.endpoint(fromKernelCommandLine: "agent.debug_console agent.debug_console_vport=2000") == .vsock(port: 2000))
        #expect(DebugConsole.endpoint(fromKernelCommandLine: "agent.debug_console_vport=2000") == nil)
    }

    @Test func aConnectionGetsAShellWithATerminal() throws {
        guard let executable = ContainerTestSupport.agentExecutable else { throw RunningAgent.Failure(description: "kata-agent was not built next to the tests") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-console-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--listen", "unix:\(directory)/agent.sock", "--state-dir", directory + "/state",
                             "--debug-console", "unix:\(directory)/console.sock"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { process.terminate(); process.waitUntilExit() }
        var descriptor: Int32 = -1
        for _ in 0..<500 where descriptor < 0 {
            descriptor = RunningAgent.connect(directory + "/console.sock")
            if descriptor < 0 { usleep(10_000) }
        }
        guard descriptor >= 0 else { throw RunningAgent.Failure(description: "the debug console never listened") }
        defer { close(descriptor) }
        // The pty echoes the input line: the expected text appears only if the shell ran it.
        _ = DescriptorIO.writeAll(descriptor, Array("test -t 0 && echo tty:$((2+3)); echo $((6*7)); exit\n".utf8))
        var output: [UInt8] = []
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let bytes = DescriptorIO.readSome(descriptor)
            if bytes.isEmpty { break }
            output += bytes
        }
        let text = String(decoding: output, as: UTF8.self)
        #expect(text.contains("tty:5"), "\(text.debugDescription)")
        #expect(text.contains("42"), "\(text.debugDescription)")
    }
}
