import Foundation
import Testing
@testable import KataAgentCore
import CAgentLinux
#if canImport(Glibc)
import Glibc
#endif

/// Helpers for the container launcher tests: a busybox rootfs, the kata-agent binary to
/// re-execute, and a bounded run of one container process.
enum ContainerTestSupport {
    /// These tests need root and mount/pid/uts/ipc namespaces, and a static busybox.
    static let canRunContainers: Bool = {
        getuid() == 0 && access("/proc/self/ns/pid", F_OK) == 0 && busybox != nil && agentExecutable != nil
    }()

    static let busybox: String? = ["/bin/busybox", "/usr/bin/busybox"].first { access($0, X_OK) == 0 }

    /// kata-agent, built next to the test bundle (.build/debug/).
    static let agentExecutable: String? = {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        var directory = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // Inside a .xctest bundle directory on some layouts.
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("kata-agent").path
            if access(candidate, X_OK) == 0 { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return nil
    }()

    /// Missing prerequisites fail a suite rather than skip it: CI runs as root with busybox.
    static func requireContainerSupport() throws {
        guard canRunContainers else {
            throw Failure(description: "container tests need root, pid/mount namespaces, busybox-static and the built kata-agent")
        }
    }

    /// A new, empty cgroup v2 directory under this host's cgroup2 mount, wherever it is
    /// (the whole tree, or /sys/fs/cgroup/unified on a hybrid host), and that mount. A
    /// host without cgroup v2 cannot show that containers join what the agent creates:
    /// that is a failure. The caller removes the directory (rmdir).
    static func makeTestCgroup(_ name: String) throws -> (path: String, root: String) {
        let mountInfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        // mountinfo: "... mount-point options ... - fstype source super-options".
        let cgroup2 = mountInfo.split(separator: "\n").first { $0.contains(" - cgroup2 ") }
            .map { String($0.split(separator: " ")[4]) }
        guard let root = cgroup2 else {
            throw Failure(description: "no cgroup2 mount on this host: the agent's cgroup path cannot be tested")
        }
        let path = "\(root)/\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(path, 0o755) == 0 else { throw Failure(description: "mkdir \(path): \(String(cString: strerror(errno)))") }
        return (path, root)
    }

    /// The container process is a grandchild of the launcher: make it our child.
    static let subreaper: Bool = {
        (try? ContainerLauncher.becomeChildSubreaper()) != nil
    }()

    static let applets = ["sh", "echo", "cat", "id", "hostname", "ls", "sleep", "grep", "touch", "pwd", "env",
                          "test", "head", "wc", "tr", "mkdir", "stat", "readlink", "true", "false", "tty"]

    /// A temporary directory with bin/busybox and applet links, /etc/passwd, and empty
    /// proc, sys, dev, tmp directories. Removed by `remove()`.
    final class Rootfs {
        let path: String

        init() throws {
            let base = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-rootfs-\(UUID().uuidString)")
            path = base.path
            let fm = FileManager.default
            for dir in ["bin", "proc", "sys", "dev", "tmp", "etc", "root", "home/user"] {
                try fm.createDirectory(atPath: path + "/" + dir, withIntermediateDirectories: true)
            }
            try fm.copyItem(atPath: busybox!, toPath: path + "/bin/busybox")
            for applet in applets {
                try fm.createSymbolicLink(atPath: path + "/bin/" + applet, withDestinationPath: "busybox")
            }
            try write("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n")
            try write("/etc/group", "root:x:0:\nuser:x:1000:\n")
        }

        func write(_ relative: String, _ text: String) throws {
            try text.write(toFile: path + relative, atomically: false, encoding: .utf8)
        }

        /// Idempotent; also done on deinit, so a test that throws half-way leaves nothing.
        func remove() {
            try? FileManager.default.removeItem(atPath: path)
        }

        deinit {
            remove()
        }
    }

    /// The mounts a typical OCI config asks for (docker's defaults, cgroup left out).
    static let standardMounts: [ContainerLaunchSpec.Mount] = [
        .init(destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"]),
        .init(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        .init(destination: "/dev/pts", type: "devpts", source: "devpts",
              options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
        .init(destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        .init(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
        .init(destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]),
        .init(destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"]),
    ]

    static func spec(_ rootfs: Rootfs, _ script: String, configure: (inout ContainerLaunchSpec) -> Void = { _ in })
        -> ContainerLaunchSpec {
        var spec = ContainerLaunchSpec(rootfs: rootfs.path, mounts: standardMounts, hostname: "kasa-test",
                                       args: ["/bin/sh", "-c", script], env: ["PATH=/bin"])
        configure(&spec)
        return spec
    }

    struct Output: CustomStringConvertible {
        var stdout: String
        var stderr: String
        /// Exit code, or 128 + signal.
        var status: Int32
        var description: String { "status \(status), stdout \(stdout.debugDescription), stderr \(stderr.debugDescription)" }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard kasa_pipe_cloexec(&fds) == 0 else { throw Failure(description: "pipe2: \(errno)") }
        return (fds[0], fds[1])
    }

    /// Launches and starts `spec` with pipes for stdout/stderr and /dev/null as stdin,
    /// collects both streams and the exit status, all bounded by `timeout`.
    static func run(_ spec: ContainerLaunchSpec, timeout: Duration = .seconds(20),
                    standby: ContainerInitStandby? = nil) throws -> Output {
        _ = subreaper
        let out = try pipe(), err = try pipe()
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(out.read); close(err.read); close(null) }
        let launch: ContainerLaunch
        do {
            launch = try ContainerLauncher.launch(spec: spec, agentExecutable: agentExecutable!,
                                                  stdio: .pipes(stdin: null, stdout: out.write, stderr: err.write),
                                                  standby: standby)
        } catch {
            close(out.write); close(err.write)
            throw error
        }
        close(out.write); close(err.write)
        do {
            try launch.start()
        } catch {
            _ = wait(launch.pid, timeout: .seconds(5))
            throw error
        }
        let streams = try readBoth(out.read, err.read, timeout: timeout)
        guard let status = wait(launch.pid, timeout: timeout) else {
            throw Failure(description: "container process \(launch.pid) did not exit in time (killed)")
        }
        return Output(stdout: streams.0, stderr: streams.1, status: status)
    }

    /// Reads two descriptors to EOF (poll, bounded).
    static func readBoth(_ a: Int32, _ b: Int32, timeout: Duration) throws -> (String, String) {
        var data: [[UInt8]] = [[], []]
        var open = [true, true]
        let fds = [a, b]
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while open[0] || open[1] {
            guard ContinuousClock.now < deadline else { throw Failure(description: "output not closed within \(timeout)") }
            var pfds = (0..<2).filter { open[$0] }.map { pollfd(fd: fds[$0], events: Int16(POLLIN), revents: 0) }
            let rc = poll(&pfds, nfds_t(pfds.count), 100)
            if rc <= 0 { continue }
            for p in pfds where p.revents != 0 {
                let index = p.fd == a ? 0 : 1
                let n = read(p.fd, &buffer, buffer.count)
                if n > 0 { data[index] += buffer[0..<n] } else if n == 0 || errno != EINTR { open[index] = false }
            }
        }
        return (String(decoding: data[0], as: UTF8.self), String(decoding: data[1], as: UTF8.self))
    }

    /// waitpid with a bound; SIGKILLs and reaps on timeout (returns nil then).
    /// Returns the exit code or 128 + signal.
    static func wait(_ pid: Int32, timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var status: Int32 = 0
        while true {
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid { return decode(status) }
            if rc < 0 && errno != EINTR { return nil }
            if ContinuousClock.now >= deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                return nil
            }
            usleep(5_000)
        }
    }

    static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Mount points below `path` in our own mount namespace (must stay empty: all the
    /// container's mounts live in its private namespace).
    static func hostMounts(under path: String) -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let mountPoint = String(fields[4])
            return mountPoint.hasPrefix(path) ? mountPoint : nil
        }
    }
}
