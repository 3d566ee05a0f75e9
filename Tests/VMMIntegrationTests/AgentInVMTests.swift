import AgentProtocol
import Foundation
import Testing
import VMM
#if canImport(Glibc)
import Glibc
#endif

/// kata-agent as the guest's PID 1 (images/build-agent-initrd.sh), driven from the host the
/// way the runtime will drive it: hybrid vsock (`CONNECT 1024`), then ttrpc with
/// AgentProtocol's client: health, version, and one container whose rootfs is the ext4 test
/// image on virtio-blk (/dev/vda), its output and exit code. On kvm_pvm the guest kernel is
/// emulated, including the initramfs unpack (2-3 s per MB of agent), so this takes about
/// 4 minutes here with a 58 MiB agent (docs/performance.md; well under a second of guest
/// time on hardware KVM); the watchdog and the per-call timeouts bound it.
@Suite struct AgentInVMTests {
    /// Guest time is slow on kvm_pvm: every ttrpc call gets this long.
    static let callTimeout = 120.0

    @Test(.timeLimit(.minutes(20)))
    func agentRunsAContainerFromAVirtioBlockRootfs() throws {
        let kernel = try RealKernelTests.artifact("KASA_TEST_KERNEL", script: "images/build-kernel.sh")
        let initrd = try RealKernelTests.artifact("KASA_TEST_AGENT_INITRD", script: "images/build-agent-initrd.sh")
        let cached = try RealKernelTests.artifact("KASA_TEST_ROOTFS", script: "images/build-test-rootfs.sh")
        let directory = GuestBuilder.outputDirectory.appending(path: "agent-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let disk = directory + "/root.ext4"
        try FileManager.default.copyItem(atPath: cached, toPath: disk)
        let socketPath = directory + "/vsock.sock"

        let capture = GuestRun.Capture()
        // No root=: the kernel's root is the initramfs, whose /init is kata-agent. The
        // ext4 drive is only the container's rootfs.
        var configuration = VMConfiguration(kernelPath: kernel, initrdPath: initrd, commandLine: "console=ttyS0 reboot=k panic=-1",
                                            memoryMiB: 512, console: .handler { capture.append($0) })
        configuration.drives = [DriveConfiguration(path: disk)]
        configuration.vsock = VsockConfiguration(guestCID: 3, udsPath: socketPath)
        let vm = try MicroVM(configuration: configuration)

        let deadline = Date().addingTimeInterval(420)
        let outcome = Outcome()
        let host = Thread {
            defer { vm.stop() }
            do {
                let client = try AgentInVMTests.connectToAgent(socketPath, until: deadline, outcome: outcome)
                defer { client.connection.close() }
                try AgentInVMTests.runContainer(client, outcome: outcome)
                try AgentInVMTests.runMemoryLimitedContainer(client, outcome: outcome)
            } catch {
                outcome.record("host side failed: \(error)")
            }
        }
        host.start()
        let watchdog = DispatchWorkItem { vm.stop() }
        DispatchQueue.global().asyncAfter(deadline: .now() + 480, execute: watchdog)
        let reason = try vm.run()
        watchdog.cancel()
        NotificationCheck.expectNoneLost(vm)

        let console = capture.text
        let tail = String(console.suffix(4000))
        let lines = outcome.lines
        let report = "\(reason); host side: \(lines); console tail:\n\(tail)"
        #expect(lines.contains { $0.hasPrefix("vsock: OK ") }, "never connected to the agent: \(report)")
        #expect(lines.contains("check: serving"), "\(report)")
        #expect(lines.contains { $0.hasPrefix("version: ") && !$0.hasPrefix("version:  ") && $0.hasSuffix(" protocol \(AgentProtocolVersion.current)") }, "\(report)")
        #expect(lines.contains("stdout: \"hello from the container\\n\""), "\(report)")
        #expect(lines.contains("exit status: 7"), "\(report)")
        #expect(lines.contains("removed"), "\(report)")
        #expect(lines.contains("hog stats: limit 33554432, pids limit 64"), "\(report)")
        #expect(!lines.contains { $0.hasPrefix("host side failed") }, "\(report)")
        #expect(console.contains("kata-agent: serving on"), "the agent never said it listens: \(report)")
        #expect(reason == .stopped, "\(report)")
    }

    /// Connects through the hybrid vsock bridge to guest port 1024. Until the agent listens,
    /// the bridge's socket file may be missing (the driver resets the device while probing)
    /// or the guest refuses the stream (the VMM then closes our socket): retry until
    /// `deadline`.
    static func connectToAgent(_ socketPath: String, until deadline: Date, outcome: Outcome) throws -> AgentClient {
        var attempts = 0
        var lastError = ""
        while Date() < deadline {
            attempts += 1
            do {
                let socket = try UnixSocketClient.connect(socketPath)
                do {
                    try socket.write(Array("CONNECT \(AgentService.vsockPort)\n".utf8))
                    let reply = try socket.readLine(timeout: max(1, min(60, deadline.timeIntervalSinceNow)))
                    guard reply.hasPrefix("OK ") else { throw UnixSocketClient.Failure(description: "reply \(reply.debugDescription)") }
                    outcome.record("vsock: \(reply.trimmingCharacters(in: .newlines)) after \(attempts) attempts")
                    // The ttrpc client owns the descriptor from here on (and closes it).
                    return AgentClient(connection: TTRPCClient(descriptor: socket.descriptor))
                } catch {
                    socket.close()
                    throw error
                }
            } catch {
                lastError = "\(error)"
                Thread.sleep(forTimeInterval: 1)
            }
        }
        throw UnixSocketClient.Failure(description: "the agent did not accept vsock port \(AgentService.vsockPort) in \(attempts) attempts (last: \(lastError))")
    }

    /// Health, version, then one container: `/bin/sh -c 'echo ...; exit 7'` in the busybox
    /// rootfs that the agent mounts from /dev/vda.
    static func runContainer(_ client: AgentClient, outcome: Outcome) throws {
        let health = try client.call(.check, AgentCheckRequest(), returning: AgentHealthCheckResponse.self, timeout: callTimeout)
        outcome.record(health.status == .serving ? "check: serving" : "check: \(health.status)")
        let version = try client.call(.version, AgentCheckRequest(), returning: AgentVersionCheckResponse.self, timeout: callTimeout)
        outcome.record("version: \(version.agentVersion) protocol \(version.protocolVersion)")

        let id = "hello"
        var create = AgentCreateContainerRequest()
        create.containerID = id
        create.execID = id
        var rootfs = AgentMount()
        rootfs.source = "/dev/vda"
        rootfs.target = ""
        rootfs.type = "ext4"
        rootfs.options = []
        create.rootfs = [rootfs]
        create.ociSpecJson = Data("""
            {"ociVersion": "1.1.0",
             "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
                         "args": ["/bin/sh", "-c", "echo hello from the container; exit 7"],
                         "env": ["PATH=/bin"], "cwd": "/"},
             "root": {"path": "rootfs"},
             "hostname": "kasa-vm-test",
             "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}]}
            """.utf8)
        try client.call(.createContainer, create, timeout: callTimeout)
        outcome.record("created")

        var start = AgentStartContainerRequest()
        start.containerID = id
        try client.call(.startContainer, start, timeout: callTimeout)
        outcome.record("started")

        var output: [UInt8] = []
        while true {
            var read = AgentReadStreamRequest()
            read.containerID = id
            read.execID = id
            read.len = 65536
            let chunk = try client.call(.readStdout, read, returning: AgentReadStreamResponse.self, timeout: callTimeout).data
            if chunk.isEmpty { break }
            output += chunk
        }
        outcome.record("stdout: \(String(decoding: output, as: UTF8.self).debugDescription)")

        var wait = AgentWaitProcessRequest()
        wait.containerID = id
        wait.execID = id
        let status = try client.call(.waitProcess, wait, returning: AgentWaitProcessResponse.self, timeout: callTimeout).exitStatus
        outcome.record("exit status: \(status)")

        var remove = AgentRemoveContainerRequest()
        remove.containerID = id
        remove.timeoutSeconds = 10
        try client.call(.removeContainer, remove, timeout: callTimeout)
        outcome.record("removed")
    }

    /// cgroup v2 in the guest: a 32 MiB memory limit and a pids limit from the OCI spec,
    /// visible in StatsContainer while a shell tries to grow a string past the limit.
    /// (The OOM kill itself is not awaited: on kvm_pvm every page fault runs emulated
    /// kernel code and the shell was still at 2.6 MB after 90 s; docs/kvm-pvm.md.)
    static func runMemoryLimitedContainer(_ client: AgentClient, outcome: Outcome) throws {
        let id = "hog"
        var create = AgentCreateContainerRequest()
        create.containerID = id
        create.execID = id
        var rootfs = AgentMount()
        rootfs.source = "/dev/vda"
        rootfs.type = "ext4"
        create.rootfs = [rootfs]
        create.ociSpecJson = Data("""
            {"ociVersion": "1.1.0",
             "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/", "env": ["PATH=/bin"],
                         "args": ["/bin/sh", "-c", "x=a; while true; do x=$x$x; done"]},
             "root": {"path": "rootfs"},
             "mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}],
             "linux": {"resources": {"memory": {"limit": 33554432}, "pids": {"limit": 64}}}}
            """.utf8)
        try client.call(.createContainer, create, timeout: callTimeout)
        var start = AgentStartContainerRequest()
        start.containerID = id
        try client.call(.startContainer, start, timeout: callTimeout)

        var statsRequest = AgentStatsContainerRequest()
        statsRequest.containerID = id
        let stats = try client.call(.statsContainer, statsRequest, returning: AgentStatsContainerResponse.self, timeout: callTimeout)
        outcome.record("hog stats: limit \(stats.memory.limitBytes), pids limit \(stats.pids.limit)")

        var remove = AgentRemoveContainerRequest()
        remove.containerID = id
        remove.timeoutSeconds = 10
        try client.call(.removeContainer, remove, timeout: callTimeout)
    }
}
