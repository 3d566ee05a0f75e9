import Foundation
import Testing
@testable import KataAgentCore
import CAgentLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// End-to-end: a busybox container through ContainerLauncher -> kata-agent
/// __container-init -> namespaces, mounts, pivot_root, user, caps -> exec.
/// Needs root and namespaces; every wait is bounded.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ContainerLauncherTests {
    typealias S = ContainerTestSupport

    init() throws { try S.requireContainerSupport() }

    /// Runs `script` in a fresh container built from a new busybox rootfs.
    func run(_ script: String, _ configure: (inout ContainerLaunchSpec) -> Void = { _ in }) throws -> S.Output {
        try run(script, prepare: { _ in }, configure)
    }

    /// The same, with `prepare` filling the rootfs first.
    func run(_ script: String, prepare: (S.Rootfs) throws -> Void,
             _ configure: (inout ContainerLaunchSpec) -> Void) throws -> S.Output {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        try prepare(rootfs)
        let output = try S.run(S.spec(rootfs, script, configure: configure))
        #expect(S.hostMounts(under: rootfs.path).isEmpty, "mounts leaked onto the host")
        return output
    }

    @Test func stdoutStderrAndExitCode() throws {
        let output = try run("echo out; echo err >&2; exit 3")
        #expect(output.stdout == "out\n")
        #expect(output.stderr == "err\n")
        #expect(output.status == 3)
    }

    @Test func isPidOneOfItsNamespace() throws {
        let output = try run("echo $$")
        #expect(output.stdout == "1\n", "\(output)")
    }

    @Test func hostnameIsSetOnlyInside() throws {
        var before = [CChar](repeating: 0, count: 256)
        gethostname(&before, 255)
        let output = try run("hostname") { $0.hostname = "kasa-box" }
        #expect(output.stdout == "kasa-box\n", "\(output)")
        var after = [CChar](repeating: 0, count: 256)
        gethostname(&after, 255)
        #expect(before == after)
    }

    @Test func procIsMounted() throws {
        let output = try run("head -1 /proc/self/status; cat /proc/1/comm; exit 0")
        #expect(output.stdout == "Name:\thead\nsh\n", "\(output)")
    }

    @Test func environmentCwdAndHome() throws {
        let output = try run("echo $FOO; pwd; echo $HOME") {
            $0.env = ["PATH=/bin", "FOO=bar baz"]
            $0.cwd = "/tmp"
        }
        #expect(output.stdout == "bar baz\n/tmp\n/root\n", "\(output)")
    }

    @Test func userAndGroups() throws {
        let output = try run("id -u; id -g; id -G; echo $HOME") {
            $0.uid = 1000
            $0.gid = 1000
            $0.additionalGids = [2000, 3000]
        }
        #expect(output.stdout == "1000\n1000\n1000 2000 3000\n/home/user\n", "\(output)")
    }

    @Test func resourceLimits() throws {
        let output = try run("ulimit -n; ulimit -Hn; ulimit -c") {
            $0.rlimits = [.init(type: "RLIMIT_NOFILE", soft: 123, hard: 456), .init(type: "RLIMIT_CORE", soft: 0, hard: 0)]
        }
        #expect(output.stdout == "123\n456\n0\n", "\(output)")
    }

    @Test func maskedPathsReadEmpty() throws {
        let output = try run("cat /etc/secret; echo .; ls /secrets; echo .; cat /proc/kcore | wc -c", prepare: {
            try $0.write("/etc/secret", "top secret\n")
            try FileManager.default.createDirectory(atPath: $0.path + "/secrets", withIntermediateDirectories: false)
            try $0.write("/secrets/key", "k")
        }) {
            $0.maskedPaths = ["/etc/secret", "/secrets", "/proc/kcore", "/does/not/exist"]
        }
        #expect(output.stdout == ".\n.\n0\n", "\(output)")
        #expect(output.status == 0)
    }

    @Test func readonlyPathRefusesWrites() throws {
        let output = try run("cat /data/file; touch /data/new; echo $?; touch /other/new; echo $?", prepare: {
            try FileManager.default.createDirectory(atPath: $0.path + "/data", withIntermediateDirectories: false)
            try FileManager.default.createDirectory(atPath: $0.path + "/other", withIntermediateDirectories: false)
            try $0.write("/data/file", "kept\n")
        }) {
            $0.readonlyPaths = ["/data", "/proc/sys"]
        }
        #expect(output.stdout == "kept\n1\n0\n", "\(output)")
        #expect(output.stderr.contains("Read-only file system"), "\(output)")
    }

    @Test func readonlyRootfs() throws {
        let output = try run("touch /newfile; echo $?; touch /tmp/ok; echo $?") { $0.readonlyRootfs = true }
        #expect(output.stdout == "1\n0\n", "\(output)")
        #expect(output.stderr.contains("Read-only file system"), "\(output)")
    }

    @Test func capabilitiesAreDropped() throws {
        let output = try run("grep -E 'Cap(Eff|Prm|Bnd|Inh)' /proc/self/status") {
            $0.capabilities = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        }
        // CHOWN = 0, KILL = 5, NET_BIND_SERVICE = 10
        #expect(output.stdout == "CapInh:\t0000000000000421\nCapPrm:\t0000000000000421\nCapEff:\t0000000000000421\nCapBnd:\t0000000000000421\n",
                "\(output)")
    }

    @Test func ambientCapabilitiesSurviveANonRootExec() throws {
        let output = try run("grep -E 'Cap(Eff|Amb)' /proc/self/status; id -u") {
            $0.uid = 1000
            $0.gid = 1000
            $0.capabilitySets = .init(bounding: ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
                                      effective: ["CAP_NET_BIND_SERVICE"], permitted: ["CAP_NET_BIND_SERVICE"],
                                      inheritable: ["CAP_NET_BIND_SERVICE"], ambient: ["CAP_NET_BIND_SERVICE"])
        }
        #expect(output.stdout == "CapEff:\t0000000000000400\nCapAmb:\t0000000000000400\n1000\n", "\(output)")
    }

    @Test func noNewPrivileges() throws {
        let output = try run("grep NoNewPrivs /proc/self/status") { $0.noNewPrivileges = true }
        #expect(output.stdout == "NoNewPrivs:\t1\n", "\(output)")
    }

    @Test func devNodesAndSymlinks() throws {
        let output = try run("echo x > /dev/null && head -c 5 /dev/zero | wc -c && test -c /dev/urandom && test -c /dev/full && test -c /dev/tty && readlink /dev/ptmx && readlink /dev/fd && test -d /dev/pts && test -d /dev/shm && echo ok")
        #expect(output.stdout == "5\npts/ptmx\n/proc/self/fd\nok\n", "\(output)")
    }

    @Test func bindMountsWithOptions() throws {
        let host = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-bind-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: host, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: host) }
        try "from host\n".write(toFile: host + "/file", atomically: false, encoding: .utf8)
        let output = try run("cat /mnt/host/file; touch /mnt/host/new; echo $?; cat /etc/single; echo rw > /mnt/rw/new; cat \(host)/file 2>&1 | head -c 0; echo done") {
            $0.mounts += [
                .init(destination: "/mnt/host", type: "bind", source: host, options: ["rbind", "ro", "nosuid"]),
                .init(destination: "/etc/single", type: "none", source: host + "/file", options: ["bind", "ro"]),
                .init(destination: "/mnt/rw", type: "bind", source: host, options: ["bind", "rw"]),
            ]
        }
        #expect(output.stdout == "from host\n1\nfrom host\ndone\n", "\(output)")
        #expect(try String(contentsOfFile: host + "/new", encoding: .utf8) == "rw\n")
    }

    @Test func cgroupMountIsReadOnly() throws {
        let output = try run("ls /sys/fs/cgroup | grep -q . && echo listed; mkdir /sys/fs/cgroup/kasa-x; echo $?") {
            $0.mounts.append(.init(destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup",
                                   options: ["ro", "nosuid", "noexec", "nodev"]))
        }
        #expect(output.stdout == "listed\n1\n", "\(output)")
        #expect(access("/sys/fs/cgroup/kasa-x", F_OK) != 0)
    }

    @Test func pathLookupUsesTheSpecsPath() throws {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        var spec = S.spec(rootfs, "")
        spec.args = ["echo", "found", "in", "PATH"]
        spec.env = ["PATH=/nowhere:/bin"]
        let output = try S.run(spec)
        #expect(output.stdout == "found in PATH\n", "\(output)")
    }

    @Test func terminal() throws {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        var master: Int32 = -1, slave: Int32 = -1
        try #require(kasa_open_pty(&master, &slave) == 0)
        defer { close(master) }
        var spec = S.spec(rootfs, "test -t 0 && test -t 1 && echo tty; test -c /dev/console && echo console; ps -o tty= 2>/dev/null; stat -c %t /proc/self/fd/0")
        spec.terminal = true
        _ = S.subreaper
        let launch = try ContainerLauncher.launch(spec: spec, agentExecutable: S.agentExecutable!, stdio: .terminal(slave: slave))
        close(slave)
        try launch.start()
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        let deadline = ContinuousClock.now.advanced(by: .seconds(10))
        while ContinuousClock.now < deadline {
            var pfd = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 100) <= 0 { continue }
            let n = read(master, &buffer, buffer.count)
            if n <= 0 { break } // EIO once the last slave is closed
            output += buffer[0..<n]
        }
        let status = S.wait(launch.pid, timeout: .seconds(10))
        let text = String(decoding: output, as: UTF8.self)
        #expect(text.hasPrefix("tty\r\nconsole\r\n"), "\(text.debugDescription)")
        #expect(status == 0)
    }

    @Test func execJoinsARunningContainer() throws {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        _ = S.subreaper
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        var spec = S.spec(rootfs, "")
        spec.args = ["/bin/sleep", "30"]
        spec.hostname = "joined-box"
        let container = try ContainerLauncher.launch(spec: spec, agentExecutable: S.agentExecutable!,
                                                     stdio: .pipes(stdin: null, stdout: null, stderr: null))
        try container.start()
        defer {
            kill(container.pid, SIGKILL)
            _ = S.wait(container.pid, timeout: .seconds(10))
        }
        var exec = ContainerLaunchSpec(rootfs: rootfs.path,
                                       args: ["/bin/sh", "-c", "hostname; echo $$; cat /proc/1/comm; pwd; id -u"],
                                       env: ["PATH=/bin"], cwd: "/tmp", uid: 1000, gid: 1000,
                                       capabilities: ["CAP_KILL"], namespaces: .join(pid: container.pid))
        exec.noNewPrivileges = true
        let output = try S.run(exec)
        let lines = output.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "\(output)")
        #expect(lines.first == "joined-box")
        #expect(lines.count > 1 && lines[1] != "1" && Int(lines[1]) != nil)
        #expect(lines.count > 2 && lines[2] == "sleep")
        #expect(lines.count > 4 && lines[3] == "/tmp" && lines[4] == "1000")
        #expect(output.status == 0)
        // The container is still running.
        #expect(kill(container.pid, 0) == 0)
    }

    @Test func joinOfAMissingProcessFails() throws {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        var spec = S.spec(rootfs, "true")
        spec.namespaces = .join(pid: 999_999_999)
        #expect {
            _ = try S.run(spec)
        } throws: { error in
            guard case let .setupFailed(message) = error as? ContainerLaunchError else { return false }
            return message.contains("999999999") && message.contains("No such file or directory")
        }
    }

    @Test func missingExecutableFailsAtStart() throws {
        for (args, expected) in [(["/bin/nope"], "exec /bin/nope: No such file or directory"),
                                 (["nope"], "exec: \"nope\": executable file not found in $PATH"),
                                 (["/etc/passwd"], "exec /etc/passwd: Permission denied")] {
            let rootfs = try S.Rootfs()
            defer { rootfs.remove() }
            var spec = S.spec(rootfs, "")
            spec.args = args
            let null = open("/dev/null", O_RDWR | O_CLOEXEC)
            defer { close(null) }
            _ = S.subreaper
            let launch = try ContainerLauncher.launch(spec: spec, agentExecutable: S.agentExecutable!,
                                                      stdio: .pipes(stdin: null, stdout: null, stderr: null))
            #expect(throws: ContainerLaunchError.execFailed(expected)) { try launch.start() }
            // Nothing is left running: the process exits 1 on its own.
            #expect(S.wait(launch.pid, timeout: .seconds(10)) == 1)
            #expect(kill(launch.pid, 0) == -1 && errno == ESRCH)
        }
    }

    @Test func missingRootfsFailsAtLaunch() throws {
        let spec = ContainerLaunchSpec(rootfs: "/nonexistent/kasa-rootfs", args: ["/bin/sh"])
        #expect(throws: ContainerLaunchError.setupFailed("rootfs /nonexistent/kasa-rootfs: No such file or directory")) {
            _ = try S.run(spec)
        }
    }

    @Test func badMountFailsAtLaunchWithItsName() throws {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        var spec = S.spec(rootfs, "true")
        spec.mounts.append(.init(destination: "/weird", type: "nosuchfs", source: "x"))
        #expect {
            _ = try S.run(spec)
        } throws: { error in
            (error as? ContainerLaunchError) == .setupFailed("mount nosuchfs x on /weird: No such device")
        }
        #expect(S.hostMounts(under: rootfs.path).isEmpty)
    }

    @Test func unknownCapabilityFailsAtLaunch() throws {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        var spec = S.spec(rootfs, "true")
        spec.capabilities = ["CAP_FLY"]
        #expect(throws: ContainerLaunchError.setupFailed("unknown capabilities: CAP_FLY")) { _ = try S.run(spec) }
    }

    @Test func abortWithoutStartExitsWithoutExec() throws {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        try rootfs.write("/marker-dir-does-not-exist-yet", "")
        let spec = S.spec(rootfs, "echo ran > /ran")
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        _ = S.subreaper
        var launch: ContainerLaunch? = try ContainerLauncher.launch(spec: spec, agentExecutable: S.agentExecutable!,
                                                                    stdio: .pipes(stdin: null, stdout: null, stderr: null))
        let pid = launch!.pid
        launch = nil
        #expect(S.wait(pid, timeout: .seconds(10)) == 1)
        #expect(access(rootfs.path + "/ran", F_OK) != 0)
        #expect(throws: ContainerLaunchError.self) {
            let again = try ContainerLauncher.launch(spec: spec, agentExecutable: S.agentExecutable!,
                                                     stdio: .pipes(stdin: null, stdout: null, stderr: null))
            again.abort()
            _ = S.wait(again.pid, timeout: .seconds(10))
            try again.start()
        }
    }

    @Test func processKilledBeforeStartIsReportedByStart() throws {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        _ = S.subreaper
        let launch = try ContainerLauncher.launch(spec: S.spec(rootfs, "echo never"), agentExecutable: S.agentExecutable!,
                                                  stdio: .pipes(stdin: null, stdout: null, stderr: null))
        kill(launch.pid, SIGKILL)
        #expect(S.wait(launch.pid, timeout: .seconds(10)) == 128 + SIGKILL)
        #expect(throws: ContainerLaunchError.execFailed("container process \(launch.pid) exited before it was started")) {
            try launch.start()
        }
    }

    @Test func terminalMismatchIsRejected() throws {
        let spec = ContainerLaunchSpec(rootfs: "/", args: ["/bin/true"], terminal: true)
        #expect(throws: ContainerLaunchError.self) {
            _ = try ContainerLauncher.launch(spec: spec, agentExecutable: S.agentExecutable!,
                                             stdio: .pipes(stdin: 0, stdout: 1, stderr: 2))
        }
    }

    @Test func agentThatIsNotContainerInitIsReported() throws {
        let spec = ContainerLaunchSpec(rootfs: "/", args: ["/bin/true"])
        #expect {
            _ = try ContainerLauncher.launch(spec: spec, agentExecutable: "/bin/true", stdio: .pipes(stdin: 0, stdout: 1, stderr: 2))
        } throws: { error in
            guard case let .setupFailed(message) = error as? ContainerLaunchError else { return false }
            return message.contains("exit status 0") && message.contains("instead of a pid")
        }
        #expect(throws: ContainerLaunchError.self) {
            _ = try ContainerLauncher.launch(spec: spec, agentExecutable: "/nonexistent/kata-agent",
                                             stdio: .pipes(stdin: 0, stdout: 1, stderr: 2))
        }
    }

    @Test func concurrentLaunchesFromManyThreads() throws {
        let results = Mutex<[Int: String]>([:])
        DispatchQueue.concurrentPerform(iterations: 6) { index in
            let text: String
            do {
                let output = try run("echo container \(index); hostname") { $0.hostname = "box-\(index)" }
                text = "\(output.status) \(output.stdout)"
            } catch {
                text = "error \(error)"
            }
            results.withLock { $0[index] = text }
        }
        let all = results.withLock { $0 }
        for index in 0..<6 {
            #expect(all[index] == "0 container \(index)\nbox-\(index)\n")
        }
    }

    @Test func launchIsBoundedByItsTimeout() throws {
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-hang-\(UUID().uuidString)").path
        try "#!/bin/sh\nexec sleep 29.125\n".write(toFile: script, atomically: false, encoding: .utf8)
        chmod(script, 0o755)
        defer { unlink(script) }
        let spec = ContainerLaunchSpec(rootfs: "/", args: ["/bin/true"])
        let started = ContinuousClock.now
        #expect {
            _ = try ContainerLauncher.launch(spec: spec, agentExecutable: script, stdio: .pipes(stdin: 0, stdout: 1, stderr: 2),
                                             timeout: .milliseconds(300))
        } throws: { error in
            guard case .timedOut = error as? ContainerLaunchError else { return false }
            return true
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        // The hung child was killed and reaped.
        let survivors = (try FileManager.default.contentsOfDirectory(atPath: "/proc")).filter { entry in
            guard Int(entry) != nil,
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return false }
            return String(decoding: cmdline, as: UTF8.self).contains("29.125")
        }
        #expect(survivors.isEmpty)
    }

    /// The agent puts containers in cgroup v2 directories (in the guest, /sys/fs/cgroup is
    /// cgroup2): the test joins one under this host's cgroup2 mount, wherever it is (the
    /// whole tree, or /sys/fs/cgroup/unified on a hybrid host). A host without cgroup v2
    /// cannot show that the launcher joins what the agent creates: that is a failure.
    @Test
    func joinsTheCgroup() throws {
        let (cgroup, root) = try S.makeTestCgroup("kasa-test")
        defer { rmdir(cgroup) }
        let output = try run("grep ^0:: /proc/self/cgroup") { $0.cgroupPath = cgroup }
        #expect(output.stdout == "0::" + String(cgroup.dropFirst(root.count)) + "\n", "\(output)")
    }
}
