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
import Synchronization

/// The descriptors a container process gets as stdin, stdout and stderr: three
/// descriptors (`.pipes`, any kind, possibly the same one) or a pty slave for all three
/// that also becomes the controlling terminal (`.terminal`, requires `spec.terminal`).
/// The launcher duplicates them into the child; the caller keeps (and closes) its own
/// copies. (The agent's `ProcessStdio`, under the name this launcher was specified with.)
public typealias ContainerStdio = ProcessStdio

extension ProcessStdio {
    var descriptorsForChild: [Int32] {
        switch self {
        case let .pipes(stdin, stdout, stderr): [stdin, stdout, stderr]
        case let .terminal(slave): [slave, slave, slave]
        }
    }
}

/// Why a container process could not be created or started. The payload is the whole
/// human-readable message (the child's own words for setup and exec failures).
public enum ContainerLaunchError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The request itself is wrong (stdio kind does not match spec.terminal, start twice...).
    case invalidRequest(String)
    /// posix_spawn of the agent executable failed.
    case spawnFailed(String)
    /// Container init failed before reporting a pid: namespaces, mounts, pivot_root,
    /// user, capabilities... e.g. "rootfs /x: No such file or directory". Nothing is left
    /// running.
    case setupFailed(String)
    /// The process could not be executed after start(), e.g.
    /// "exec /bin/nope: No such file or directory". The process has exited (status 1).
    case execFailed(String)
    /// The child did not answer in time; what the launcher started was killed.
    case timedOut(String)

    public var description: String {
        switch self {
        case let .invalidRequest(m), let .spawnFailed(m), let .setupFailed(m), let .execFailed(m),
             let .timedOut(m):
            m
        }
    }
}

/// Starts container processes by re-executing the agent binary in container-init mode
/// (a multi-threaded agent must not fork). See `ContainerInit` for the child side.
///
/// Descriptors of the child (container init):
/// 0, 1, 2: the container's stdio; 3: the spec as JSON (read to EOF);
/// 4: sync pipe, child -> launcher: the container process's pid as the agent sees it,
///    or "error: <message>", then EOF;
/// 5: start socket: launcher -> child one byte = exec now (EOF = abort: exit 1, no
///    exec); child -> launcher one byte = acknowledged, about to exec;
/// 6: exec-error pipe, child -> launcher, O_CLOEXEC in the final process: EOF = exec
///    succeeded, bytes = "error: <message>".
/// Everything else is closed in the child.
///
/// Both `.create` and `.join` use the same two steps: `launch` returns once the process
/// is fully set up (namespaces, mounts, user, capabilities, cwd) and waiting; `start()`
/// execs it. For an exec into a running container the caller simply calls `start()`
/// right away (after wiring up its I/O).
///
/// The agent must be PID 1 or a child subreaper (`becomeChildSubreaper()`): the
/// container process is a grandchild of the launcher and is reparented to the agent,
/// which reaps it. `launch` itself reaps the intermediate process it spawned; a global
/// reaper (waitpid(-1)) in the agent may win that race, which is harmless.
///
/// A new container's init may come from a `ContainerInitStandby` instead: spawned before
/// the container was known, it takes the spec and stdio later (ContainerInit+Standby).
public enum ContainerLauncher {
    /// argv[1] that makes the kata-agent executable run `ContainerInit.main`.
    public static let initArgument = "__container-init"

    /// argv[2] that makes container init a standby (`ContainerInit.standBy`).
    public static let standbyArgument = "--standby"

    /// Spawns `agentExecutable __container-init` for `spec` (or, for a new container, hands
    /// `spec` to the ready standby `standby` holds, if any), waits (at most `timeout`)
    /// until the process is set up and reports its pid, and returns it waiting for
    /// `start()`. Blocks the calling thread. Throws `ContainerLaunchError`.
    public static func launch(spec: ContainerLaunchSpec, agentExecutable: String, stdio: ContainerStdio,
                              timeout: Duration = .seconds(30),
                              standby: ContainerInitStandby? = nil) throws(ContainerLaunchError) -> ContainerLaunch {
        switch stdio {
        case .terminal where !spec.terminal:
            throw .invalidRequest("a terminal was given but the spec does not ask for one (terminal=false)")
        case .pipes where spec.terminal:
            throw .invalidRequest("the spec asks for a terminal (terminal=true) but no pty slave was given")
        default: break
        }
        guard !spec.args.isEmpty else { throw .invalidRequest("the spec has no args") }
        let json: [UInt8]
        do {
            json = Array(try JSONEncoder().encode(spec))
        } catch {
            throw .invalidRequest("encode launch spec: \(error)")
        }
        // A container's start is when the standby it may have taken is replaced.
        var onStarted: (@Sendable () -> Void)?
        if let standby { onStarted = { standby.containerStarted() } }
        if case .create = spec.namespaces, var waiting = standby?.take() {
            // nil: the standby was gone before it got the spec (killed); start afresh.
            if let rest = handOver(json, stdio: stdio.descriptorsForChild, to: &waiting) {
                return try deliver(rest, to: waiting, timeout: timeout, onStarted: onStarted)
            }
        }
        // A fresh init has its stdio already and reads the whole spec at once.
        let process = try spawnInit(agentExecutable: agentExecutable, stdio: stdio.descriptorsForChild, standby: false)
        return try deliver(json[...], to: process, timeout: timeout, onStarted: onStarted)
    }

    /// A container init process and the launcher's ends of its descriptors.
    public struct InitProcess: Sendable {
        let pid: pid_t
        var specFd, syncFd, startFd, execFd: Int32

        mutating func closeAll() {
            for fd in [specFd, syncFd, startFd, execFd] where fd >= 0 { close(fd) }
            (specFd, syncFd, startFd, execFd) = (-1, -1, -1, -1)
        }

        /// Kills it (its forked child dies with it: PR_SET_PDEATHSIG), reaps it, and
        /// closes the launcher's ends.
        mutating func discard() {
            kill(pid, SIGKILL)
            _ = ContainerSys.reap(pid, timeout: .seconds(5))
            closeAll()
        }
    }

    /// posix_spawn of `agentExecutable __container-init [--standby]` with `stdio` as its
    /// 0-2 (a standby gets /dev/null) and the protocol's descriptors as 3-6.
    static func spawnInit(agentExecutable: String, stdio: [Int32], standby: Bool) throws(ContainerLaunchError) -> InitProcess {
        var opened: [Int32] = []
        func closeAll() { for fd in opened where fd >= 0 { close(fd) }; opened.removeAll() }

        let specPair, startPair: (Int32, Int32)
        let syncPipe, execPipe: (read: Int32, write: Int32)
        var childStdio = stdio
        do throws(ContainerSysError) {
            if standby {
                let null = open("/dev/null", O_RDWR | O_CLOEXEC)
                guard null >= 0 else { throw ContainerSysError(ContainerSys.failure("open /dev/null")) }
                opened.append(null)
                childStdio = [null, null, null]
            }
            specPair = try ContainerSys.makeSocketPair(); opened += [specPair.0, specPair.1]
            syncPipe = try ContainerSys.makePipe(); opened += [syncPipe.read, syncPipe.write]
            startPair = try ContainerSys.makeSocketPair(); opened += [startPair.0, startPair.1]
            execPipe = try ContainerSys.makePipe(); opened += [execPipe.read, execPipe.write]
        } catch {
            closeAll()
            throw .spawnFailed(error.description)
        }

        // What the child gets as 0...6. Duplicate each above 9 first so that no dup2 in
        // the child can overwrite a source that a later dup2 still needs.
        let wanted = childStdio + [specPair.1, syncPipe.write, startPair.1, execPipe.write]
        var high: [Int32] = []
        for fd in wanted {
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, 10)
            if copy < 0 {
                let message = ContainerSys.failure("duplicate descriptor \(fd)")
                for h in high { close(h) }
                closeAll()
                throw .spawnFailed(message)
            }
            high.append(copy)
        }
        // Closed right after the spawn: a copy of a child end kept here would hide EOF.
        var highClosed = false
        func closeHigh() {
            if !highClosed { for h in high { close(h) } }
            highClosed = true
        }
        defer { closeHigh() }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, source) in high.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, source, Int32(target))
        }
        _ = kasa_spawn_file_actions_addclosefrom(&actions, Int32(wanted.count))

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(agentExecutable), strdup(initArgument)]
            + (standby ? [strdup(standbyArgument)] : []) + [nil]
        defer { for arg in argv { free(arg) } }
        let envp: [UnsafeMutablePointer<CChar>?] = InheritedEnvironment.entries.map { strdup($0) } + [nil]
        defer { for entry in envp { free(entry) } }
        var initPid: pid_t = 0
        let rc = posix_spawn(&initPid, agentExecutable, &actions, &attributes, argv, envp)
        if rc == 0 { ChildReaper.shared.childStarted() }
        closeHigh()
        if rc != 0 {
            closeAll()
            throw .spawnFailed("spawn \(agentExecutable): \(ContainerSys.describe(errno: rc))")
        }
        // Keep only our ends.
        close(specPair.1); close(syncPipe.write); close(startPair.1); close(execPipe.write)
        if standby { close(childStdio[0]) }
        return InitProcess(pid: initPid, specFd: specPair.0, syncFd: syncPipe.read, startFd: startPair.0, execFd: execPipe.read)
    }

    /// A standby's first message: the start of the spec with the container's stdio as
    /// SCM_RIGHTS. Returns the rest of the spec; nil if the standby was gone (discarded).
    static func handOver(_ json: [UInt8], stdio: [Int32], to process: inout InitProcess) -> ArraySlice<UInt8>? {
        let first = Array(json.prefix(ContainerInit.firstSpecChunk))
        let sent = first.withUnsafeBytes { raw in
            stdio.withUnsafeBufferPointer { fds in
                kasa_send_with_descriptors(process.specFd, raw.baseAddress!, raw.count, fds.baseAddress!, Int32(fds.count))
            }
        }
        guard sent > 0 else {
            process.discard()
            return nil
        }
        return json.dropFirst(sent)
    }

    /// Sends `spec` (what is left of it), closes the spec socket and waits for the pid report.
    static func deliver(_ spec: ArraySlice<UInt8>, to process: InitProcess, timeout: Duration,
                        onStarted: (@Sendable () -> Void)?) throws(ContainerLaunchError) -> ContainerLaunch {
        var process = process
        // A child that dies early shows up as EOF on the sync pipe; one that never reads
        // (not container init at all) as a timeout there.
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        ContainerSys.sendAll(process.specFd, Array(spec), timeout: timeout)
        ContainerSys.closeIfOpen(&process.specFd)

        let report = ContainerSys.readToEnd(process.syncFd, timeout: max(.zero, clock.now.duration(to: deadline)))
        ContainerSys.closeIfOpen(&process.syncFd)
        func fail(_ error: ContainerLaunchError) -> ContainerLaunchError {
            process.closeAll()
            return error
        }
        switch report {
        case .timedOut:
            process.discard()
            throw .timedOut("container init did not report within \(timeout)")
        case let .complete(bytes):
            let status = ContainerSys.reap(process.pid, timeout: .seconds(10))
            let text = String(decoding: bytes, as: UTF8.self)
            if let message = ContainerInitProtocol.errorMessage(text) {
                throw fail(.setupFailed(message))
            }
            guard let pid = Int32(String(text.filter { !$0.isWhitespace })), pid > 0 else {
                let how = status.map { ContainerSys.describe(waitStatus: $0) } ?? "an unknown status"
                let said = text.isEmpty ? "nothing" : "\"\(text)\""
                throw fail(.setupFailed("container init exited with \(how) and reported \(said) instead of a pid"))
            }
            return ContainerLaunch(pid: pid, startFd: process.startFd, execErrorFd: process.execFd, startTimeout: timeout,
                                   onStarted: onStarted)
        }
    }

    /// Makes the calling process a child subreaper (PR_SET_CHILD_SUBREAPER), so that
    /// container processes are reparented to it. Not needed when the agent is PID 1.
    public static func becomeChildSubreaper() throws(ContainerLaunchError) {
        if kasa_set_child_subreaper(1) != 0 {
            throw .invalidRequest(ContainerSys.failure("prctl(PR_SET_CHILD_SUBREAPER)"))
        }
    }
}

/// A container process that is set up and waiting to exec.
///
/// `pid` is valid (and the process is the agent's to reap) from the moment `launch`
/// returns. Call `start()` once. Dropping the value, or `abort()`, without starting makes
/// the process exit with status 1 without executing anything.
public final class ContainerLaunch: Sendable {
    public let pid: Int32
    private let descriptors: Mutex<(start: Int32, execError: Int32)?>

    /// The launch's own limit, which `start()` keeps: a guest slow enough to need a long
    /// set-up needs as long to exec.
    let startTimeout: Duration

    /// Told when `start()` has let the process exec.
    let onStarted: (@Sendable () -> Void)?

    init(pid: Int32, startFd: Int32, execErrorFd: Int32, startTimeout: Duration, onStarted: (@Sendable () -> Void)? = nil) {
        self.onStarted = onStarted
        self.pid = pid
        self.startTimeout = startTimeout
        self.descriptors = Mutex((startFd, execErrorFd))
    }

    deinit {
        abort()
    }

    /// `start(timeout:)` with the launch's timeout.
    public func start() throws(ContainerLaunchError) {
        try start(timeout: startTimeout)
    }

    /// Lets the process exec and waits (at most `timeout`) to learn whether the exec
    /// succeeded. Throws `.execFailed` with the child's message (the process has then
    /// exited with status 1; reap it as usual).
    public func start(timeout: Duration) throws(ContainerLaunchError) {
        guard let (startFd, execFd) = descriptors.withLock({ state in
            defer { state = nil }
            return state
        }) else {
            throw .invalidRequest("container process \(pid) was already started or aborted")
        }
        defer {
            close(startFd); close(execFd)
            onStarted?()
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        // The process acknowledges the start byte on the same socket; EOF instead means
        // it was gone (killed) before it could exec.
        ContainerSys.sendAll(startFd, [1], timeout: timeout)
        switch ContainerSys.readToEnd(startFd, timeout: timeout, limit: 1) {
        case let .complete(ack) where ack == [1]:
            break
        case .complete:
            throw .execFailed("container process \(pid) exited before it was started")
        case .timedOut:
            throw .timedOut("container process \(pid) did not acknowledge the start within \(timeout)")
        }
        let result = ContainerSys.readToEnd(execFd, timeout: max(.zero, clock.now.duration(to: deadline)))
        switch result {
        case let .complete(bytes):
            if bytes.isEmpty { return }
            let text = String(decoding: bytes, as: UTF8.self)
            throw .execFailed(ContainerInitProtocol.errorMessage(text) ?? text)
        case .timedOut:
            throw .timedOut("container process \(pid) did not exec within \(timeout)")
        }
    }

    /// Tells the waiting process to exit without exec (status 1). No-op after start().
    public func abort() {
        if let (startFd, execFd) = descriptors.withLock({ state in
            defer { state = nil }
            return state
        }) {
            close(startFd)
            close(execFd)
        }
    }
}

/// The text protocol on the sync and exec-error pipes.
enum ContainerInitProtocol {
    static let errorPrefix = "error: "
    /// A standby's child, on the start socket: set up as far as it can be without a spec.
    static let standingBy: UInt8 = 2

    /// The message of an "error: <message>" report, else nil.
    static func errorMessage(_ text: String) -> String? {
        guard text.hasPrefix(errorPrefix) else { return nil }
        return String(text.dropFirst(errorPrefix.count))
    }
}
