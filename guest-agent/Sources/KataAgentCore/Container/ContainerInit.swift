#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CAgentLinux

/// The child side of `ContainerLauncher`: what the kata-agent executable runs when
/// argv[1] is `ContainerLauncher.initArgument` ("__container-init"). It must be called
/// before the agent starts any thread: it forks.
///
/// `.create`: join the cgroup, unshare mount/UTS/IPC/PID namespaces, fork. The forked
/// child (PID 1 of the new PID namespace) sets up the root filesystem (private mounts,
/// rootfs bind, the spec's mounts, /dev nodes, console, readonly and masked paths,
/// pivot_root, readonly root, hostname) and the process (rlimits, capabilities, user,
/// no_new_privs, cwd, session and controlling terminal), then tells its parent it is
/// ready. The parent reports the child's pid on fd 4 and exits 0; on any setup failure
/// it reports "error: <what failed>: <strerror>" instead, reaps the child and exits 1.
/// The child waits for the start byte on fd 5 and execs; an exec failure is written to
/// fd 6 (O_CLOEXEC, so a successful exec shows as EOF).
///
/// `.join(pid)`: join the cgroup, setns into every namespace of `pid` that differs from
/// ours (ipc, uts, net, cgroup, pid, mnt), fork, then the same process set-up and start
/// protocol without any mount or hostname change.
///
/// The cgroup is joined before anything else (by the process that forks, so the
/// container process is born in it) because after pivot_root/setns the agent's cgroup
/// path is no longer visible.
public enum ContainerInit {
    static let specFd: Int32 = 3
    static let syncFd: Int32 = 4
    static let startFd: Int32 = 5
    static let execErrorFd: Int32 = 6

    /// Runs container init; never returns (exits 0 in the reporting parent, execs or
    /// exits 1 in the container process).
    public static func main(arguments: [String] = CommandLine.arguments) -> Never {
        _ = kasa_close_from(execErrorFd + 1)
        umask(0)
        if arguments.dropFirst(2).first == ContainerLauncher.standbyArgument { standBy() }
        let bytes = ContainerSys.readToEnd(specFd)
        close(specFd)
        let spec: ContainerLaunchSpec
        do {
            spec = try JSONDecoder().decode(ContainerLaunchSpec.self, from: Data(bytes))
        } catch {
            fail(on: syncFd, "decode launch spec: \(error)")
        }
        guard !spec.args.isEmpty else { fail(on: syncFd, "the launch spec has no args") }
        switch spec.namespaces {
        case .create:
            do {
                if let cgroup = spec.cgroupPath { try joinCgroup(cgroup) }
                var flags = Int32(KASA_CLONE_NEWNS | KASA_CLONE_NEWUTS | KASA_CLONE_NEWIPC | KASA_CLONE_NEWPID)
                if let shared = spec.sharedNamespaces {
                    for kind in try joinNamespaces(of: shared.pid, only: Set(shared.kinds)) { flags &= ~kind }
                }
                try containerCheck(kasa_unshare(flags), "unshare the container's new namespaces")
            } catch {
                fail(on: syncFd, "\(error)")
            }
            forkContainerProcess(spec) {
                try ContainerRootfs.setUp(spec)
                try ContainerProcessSetup.apply(spec)
            }
        case let .join(pid):
            do {
                if let cgroup = spec.cgroupPath { try joinCgroup(cgroup) }
                try joinNamespaces(of: pid)
            } catch {
                fail(on: syncFd, "\(error)")
            }
            forkContainerProcess(spec) {
                try ContainerProcessSetup.apply(spec)
            }
        }
    }

    /// Writes "error: <message>" to `fd` and exits 1.
    static func fail(on fd: Int32, _ message: String) -> Never {
        ContainerSys.writeAll(fd, ContainerInitProtocol.errorPrefix + message)
        _exit(1)
    }

    /// Forks the container process, which runs `setUp` and then waits for the start
    /// byte; this process reports its pid (or its setup error) on the sync pipe and exits.
    static func forkContainerProcess(_ spec: ContainerLaunchSpec, setUp: () throws -> Void) -> Never {
        let (child, ready) = forkWithReadyPipe()
        if child == 0 { becomeContainer(spec, ready: ready.write, setUp: setUp) }
        close(ready.write)
        report(child, ready: ready.read)
    }

    /// Forks; the child gets PR_SET_PDEATHSIG (if the launcher gives up on us and kills
    /// this process, the child dies too; a credential change clears it, and set-up is
    /// nearly done by then) and the write end of the ready pipe, this process its read end.
    static func forkWithReadyPipe() -> (child: pid_t, ready: (read: Int32, write: Int32)) {
        let ready: (read: Int32, write: Int32)
        do {
            ready = try ContainerSys.makePipe()
        } catch {
            fail(on: syncFd, "\(error)")
        }
        let child = fork()
        if child < 0 { fail(on: syncFd, ContainerSys.failure("fork")) }
        if child == 0 {
            close(ready.read)
            close(syncFd)
            _ = kasa_set_pdeathsig(SIGKILL)
        }
        return (child, ready)
    }

    /// The forked child: runs `setUp`, tells the parent it is ready (or why not), then
    /// waits for the start byte and execs.
    static func becomeContainer(_ spec: ContainerLaunchSpec, ready: Int32, setUp: () throws -> Void) -> Never {
        do {
            try setUp()
        } catch {
            fail(on: ready, "\(error)")
        }
        _ = kasa_set_pdeathsig(0)
        ContainerSys.writeAll(ready, [0])
        close(ready)
        execWhenStarted(spec)
    }

    /// The parent: reports the child's pid once it is ready, or its error, and exits.
    static func report(_ child: pid_t, ready: Int32) -> Never {
        let answer = ContainerSys.readToEnd(ready)
        close(ready)
        if answer == [0] {
            ContainerSys.writeAll(syncFd, "\(child)")
            _exit(0)
        }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        if answer.isEmpty {
            fail(on: syncFd, "container process died during setup (\(ContainerSys.describe(waitStatus: status)))")
        }
        ContainerSys.writeAll(syncFd, answer)
        _exit(1)
    }

    /// Waits for the start byte (EOF: the launcher aborted, exit 1 without exec), then
    /// execs the spec's args; failures go to the exec-error pipe.
    static func execWhenStarted(_ spec: ContainerLaunchSpec) -> Never {
        _ = fcntl(execErrorFd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(startFd, F_SETFD, FD_CLOEXEC)
        var byte: UInt8 = 0
        var n: Int
        repeat { n = read(startFd, &byte, 1) } while n < 0 && errno == EINTR
        if n != 1 { _exit(1) }
        ContainerSys.sendAll(startFd, [1])
        close(startFd)
        umask(0o022)

        let environment = ContainerProcessSetup.environment(for: spec)
        let path: String
        do {
            path = try ContainerProcessSetup.resolveExecutable(spec.args[0], environment: environment)
        } catch {
            fail(on: execErrorFd, "\(error)")
        }
        let argv: [UnsafeMutablePointer<CChar>?] = spec.args.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        do {
            try ContainerProcessSetup.loadDeferredSeccomp()
        } catch {
            fail(on: execErrorFd, "\(error)")
        }
        execve(path, argv, envp)
        fail(on: execErrorFd, ContainerSys.failure("exec \(path)"))
    }

    /// Moves this process into the cgroup v2 (or v1) directory `path`.
    static func joinCgroup(_ path: String) throws {
        let procs = path + "/cgroup.procs"
        let fd = open(procs, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ContainerInitFailure(ContainerSys.failure("join cgroup: open \(procs)")) }
        defer { close(fd) }
        let code = ContainerSys.writeAll(fd, "0")
        if code != 0 {
            throw ContainerInitFailure(ContainerSys.failure("join cgroup: write \(procs)", errno: code))
        }
    }

    /// setns into each namespace of `pid` that is not already ours. Opens them all first:
    /// after joining the mount namespace, /proc is the container's.
    /// `only` limits it to those names; returns the CLONE_NEW* flags of every namespace
    /// asked for, joined or already shared.
    @discardableResult
    static func joinNamespaces(of pid: Int32, only: Set<String>? = nil) throws -> [Int32] {
        let kinds: [(name: String, flag: Int32)] = [
            ("ipc", Int32(KASA_CLONE_NEWIPC)), ("uts", Int32(KASA_CLONE_NEWUTS)),
            ("net", Int32(KASA_CLONE_NEWNET)), ("cgroup", Int32(KASA_CLONE_NEWCGROUP)),
            ("pid", Int32(KASA_CLONE_NEWPID)), ("mnt", Int32(KASA_CLONE_NEWNS)),
        ].filter { only?.contains($0.name) ?? true }
        var info = stat()
        guard stat("/proc/\(pid)", &info) == 0 else {
            throw ContainerInitFailure(ContainerSys.failure("join the namespaces of pid \(pid)"))
        }
        var opened: [(name: String, flag: Int32, fd: Int32)] = []
        defer { for entry in opened { close(entry.fd) } }
        for kind in kinds {
            let path = "/proc/\(pid)/ns/\(kind.name)"
            var theirs = stat(), ours = stat()
            guard stat(path, &theirs) == 0 else {
                if errno == ENOENT && stat("/proc/self/ns/\(kind.name)", &ours) != 0 { continue } // kernel lacks it
                throw ContainerInitFailure(ContainerSys.failure("join the namespaces of pid \(pid): \(path)"))
            }
            if stat("/proc/self/ns/\(kind.name)", &ours) == 0 && ours.st_ino == theirs.st_ino
                && ours.st_dev == theirs.st_dev {
                continue
            }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw ContainerInitFailure(ContainerSys.failure("join the namespaces of pid \(pid): open \(path)"))
            }
            opened.append((kind.name, kind.flag, fd))
        }
        for entry in opened {
            try containerCheck(kasa_setns(entry.fd, entry.flag), "setns into the \(entry.name) namespace of pid \(pid)")
        }
        return kinds.map(\.flag)
    }
}

/// A setup step that failed; `description` is "<what failed>: <strerror>".
struct ContainerInitFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Throws "<what>: <strerror(errno)>" when a call returned a negative value.
@inline(__always)
func containerCheck(_ result: Int32, _ what: @autoclosure () -> String) throws {
    if result < 0 { throw ContainerInitFailure(ContainerSys.failure(what())) }
}
