import AgentProtocol
import CLinux
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// A child process (kasa-vmm, a host-process agent, mke2fs) started with posix_spawn: no
/// fork of this threaded process. One thread per child waits for it, so its exit is
/// known at once (a VM that dies at boot ends the dial) and it is reaped exactly once.
public final class ChildProcess: @unchecked Sendable {
    public enum Output: Sendable {
        case inherit
        case null
        /// Appended to, created 0600 if missing.
        case file(String)
        case descriptor(Int32)
    }

    public let pid: pid_t
    public let executable: String
    // Guarded by `monitor`.
    private let monitor = Monitor()
    private var waitStatus: Int32?
    private var exitHandlers: [@Sendable (Int32) -> Void] = []

    /// Signals the child starts with their default action, whatever the runtime blocks
    /// or ignores for itself (it blocks SIGINT/SIGTERM for its signal thread).
    private static let resetSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGWINCH, SIGCHLD, SIGUSR1]

    /// Where a child starts beyond its descriptors: namespaces of its own and a cgroup
    /// (kasa-vmm's jail). The default is the runtime's own.
    public struct Placement: Sendable {
        /// A PID namespace whose init the child is (it sees no other process).
        public var newPIDNamespace = false
        /// A network namespace with nothing in it but a loopback that is down.
        public var newNetworkNamespace = false
        /// A cgroup v2 directory the child joins before it executes anything.
        public var cgroup: String?
        public init(newPIDNamespace: Bool = false, newNetworkNamespace: Bool = false, cgroup: String? = nil) {
            self.newPIDNamespace = newPIDNamespace
            self.newNetworkNamespace = newNetworkNamespace
            self.cgroup = cgroup
        }
        var isDefault: Bool { !newPIDNamespace && !newNetworkNamespace && cgroup == nil }
    }

    /// Starts `executable` with `arguments` (argv[1...]). With `newProcessGroup` a Ctrl-C
    /// on the terminal does not reach the child: the runtime stops it in order instead.
    /// `passing` descriptors become the child's 3, 4, 5... in that order; `environment`
    /// (KEY=VALUE) replaces this process's own. A `placement` other than the default
    /// starts it through clone (posix_spawn takes no namespaces) and arms `parentDeathSignal`
    /// in it before it executes anything.
    public init(_ executable: String, _ arguments: [String], stdin: Output = .null, stdout: Output = .inherit,
                stderr: Output = .inherit, newProcessGroup: Bool = true, passing: [Int32] = [],
                environment: [String]? = nil, placement: Placement = Placement(),
                parentDeathSignal: Int32 = 0) throws(RuntimeError) {
        self.executable = executable
        if !placement.isDefault {
            pid = try Self.clone(executable, arguments, stdio: [stdin, stdout, stderr], newProcessGroup: newProcessGroup,
                                 passing: passing, environment: environment, placement: placement,
                                 parentDeathSignal: parentDeathSignal)
            DetachedThread.start { [self] in reap() }
            return
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Copies above every target first, so no dup2 overwrites a source still to come.
        let passed = passing.map { fcntl($0, F_DUPFD_CLOEXEC, 64) }
        defer { passed.filter { $0 >= 0 }.forEach { close($0) } }
        if let failed = passed.firstIndex(where: { $0 < 0 }) {
            throw RuntimeError.host("cannot pass descriptor \(passing[failed]) to \(executable): \(HostFile.lastErrorDescription(errno))")
        }
        for (index, descriptor) in passed.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, descriptor, Int32(3 + index))
        }
        for (target, output) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch output {
            case .inherit: break
            case .null:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            case .file(let path):
                posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
            case .descriptor(let descriptor):
                posix_spawn_file_actions_adddup2(&actions, descriptor, target)
            }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in Self.resetSignals { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { $0.map { strdup($0) } + [nil] }
        defer { envp?.forEach { free($0) } }
        var child: pid_t = 0
        // From the one long-lived spawning thread: a child's PR_SET_PDEATHSIG (kasa-vmm
        // --parent-pid) fires when the *thread* that forked it ends, so never fork from a
        // worker thread that may exit before the child should.
        let result = SpawningThread.shared.perform {
            // The child inherits this process's environment as it is.
            envp.map { posix_spawn(&child, executable, &actions, &attributes, argv, $0) }
                ?? posix_spawn(&child, executable, &actions, &attributes, argv, environ)
        }
        guard result == 0 else {
            throw RuntimeError.host("cannot start \(executable): \(HostFile.lastErrorDescription(result))")
        }
        pid = child
        DetachedThread.start { [self] in reap() }
    }

    /// `init`'s path for a placement: clinux_spawn (clone with CLONE_VFORK) on the spawning
    /// thread, with the same descriptor actions posix_spawn would take.
    private static func clone(_ executable: String, _ arguments: [String], stdio: [Output], newProcessGroup: Bool,
                              passing: [Int32], environment: [String]?, placement: Placement,
                              parentDeathSignal: Int32) throws(RuntimeError) -> pid_t {
        let passed = passing.map { fcntl($0, F_DUPFD_CLOEXEC, 64) }
        defer { passed.filter { $0 >= 0 }.forEach { close($0) } }
        if let failed = passed.firstIndex(where: { $0 < 0 }) {
            throw RuntimeError.host("cannot pass descriptor \(passing[failed]) to \(executable): \(HostFile.lastErrorDescription(errno))")
        }
        // Every C string the child uses, alive until clinux_spawn returns (the child copies them).
        var strings: [UnsafeMutablePointer<CChar>?] = []
        func keep(_ text: String) -> UnsafeMutablePointer<CChar>? {
            let copy = strdup(text)
            strings.append(copy)
            return copy
        }
        defer { strings.forEach { free($0) } }
        var actions: [clinux_spawn_action] = passed.enumerated().map { index, descriptor in
            clinux_spawn_action(kind: Int32(CLINUX_SPAWN_DUP2), source: descriptor, target: Int32(3 + index),
                                path: nil, flags: 0, mode: 0)
        }
        for (target, output) in stdio.enumerated().map({ (Int32($0.offset), $0.element) }) {
            switch output {
            case .inherit: break
            case .null:
                actions.append(clinux_spawn_action(kind: Int32(CLINUX_SPAWN_OPEN), source: -1, target: target,
                                                   path: UnsafePointer(keep("/dev/null")),
                                                   flags: (target == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC, mode: 0))
            case .file(let path):
                actions.append(clinux_spawn_action(kind: Int32(CLINUX_SPAWN_OPEN), source: -1, target: target,
                                                   path: UnsafePointer(keep(path)),
                                                   flags: O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode: 0o600))
            case .descriptor(let descriptor):
                actions.append(clinux_spawn_action(kind: Int32(CLINUX_SPAWN_DUP2), source: descriptor, target: target,
                                                   path: nil, flags: 0, mode: 0))
            }
        }
        let argv = ([executable] + arguments).map(keep) + [nil]
        let envp = (environment ?? Self.currentEnvironment()).map(keep) + [nil]
        let cgroupProcs = placement.cgroup.map { keep($0 + "/cgroup.procs") }
        let path = keep(executable)
        var namespaces: Int32 = 0
        if placement.newPIDNamespace { namespaces |= CLINUX_CLONE_NEWPID }
        if placement.newNetworkNamespace { namespaces |= CLINUX_CLONE_NEWNET }
        var failedStep: UnsafePointer<CChar>?
        let (child, code) = SpawningThread.shared.perform { () -> (Int32, Int32) in
            argv.withUnsafeBufferPointer { argvBuffer in
                envp.withUnsafeBufferPointer { envpBuffer in
                    actions.withUnsafeBufferPointer { actionBuffer in
                        var request = clinux_spawn_request(
                            path: UnsafePointer(path), argv: argvBuffer.baseAddress, envp: envpBuffer.baseAddress,
                            namespaces: namespaces, new_process_group: newProcessGroup ? 1 : 0,
                            parent_death_signal: parentDeathSignal, cgroup_procs: cgroupProcs.map { UnsafePointer($0) } ?? nil,
                            actions: actionBuffer.baseAddress, action_count: Int32(actionBuffer.count))
                        let result = clinux_spawn(&request, &failedStep)
                        return (result, result < 0 ? errno : 0)
                    }
                }
            }
        }
        guard child > 0 else {
            let step = failedStep.map { String(cString: $0) } ?? "clone"
            throw RuntimeError.host("cannot start \(executable) (\(step)): \(HostFile.lastErrorDescription(code))")
        }
        return child
    }

    /// This process's environment as KEY=VALUE strings.
    private static func currentEnvironment() -> [String] {
        var result: [String] = []
        var cursor = environ
        while let entry = cursor.pointee {
            result.append(String(cString: entry))
            cursor += 1
        }
        return result
    }

    private func reap() {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let handlers = monitor.update { () -> [@Sendable (Int32) -> Void] in
            waitStatus = status
            defer { exitHandlers.removeAll() }
            return exitHandlers
        }
        handlers.forEach { $0(status) }
    }

    /// Runs `handler` (on the reaping thread) when the child exits; at once if it has.
    public func onExit(_ handler: @escaping @Sendable (Int32) -> Void) {
        let status: Int32? = monitor.withLock {
            if let waitStatus { return waitStatus }
            exitHandlers.append(handler)
            return nil
        }
        if let status { handler(status) }
    }

    /// The wait status once the child has exited.
    public var exitStatus: Int32? { monitor.withLock { waitStatus } }

    public var isRunning: Bool { exitStatus == nil }

    /// Waits up to `timeout` seconds (forever when nil) for the exit; the wait status.
    @discardableResult
    public func wait(timeout: Double? = nil) -> Int32? {
        var status: Int32?
        _ = monitor.wait(until: { status = waitStatus; return status != nil }, timeout: timeout)
        return status
    }

    public func signal(_ number: Int32) {
        // Only while unreaped: after the wait the pid may belong to someone else.
        monitor.withLock { if waitStatus == nil { _ = kill(pid, number) } }
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; returns once the child is reaped.
    public func terminate(grace: Double = 3) {
        signal(SIGTERM)
        if wait(timeout: grace) == nil {
            signal(SIGKILL)
            wait()
        }
    }

    /// "exited with status 1", "killed by signal 9". SIGSYS is named: it is what a
    /// kasa-vmm thread's seccomp filter does to a system call outside its list.
    public static func describe(waitStatus status: Int32) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
        if signal == SIGSYS {
            return "killed by signal \(signal) (SIGSYS: a system call its seccomp filter forbids; "
                + "`disable_seccomp = true` or kasa-vmm --seccomp=log names it)"
        }
        return "killed by signal \(signal)"
    }

    /// A pipe whose ends close on exec. Made on the spawning thread, so no child of ours
    /// can be started between pipe(2) and the flag and inherit it (Glibc hides pipe2).
    public static func closeOnExecPipe() throws(RuntimeError) -> (read: Int32, write: Int32) {
        var descriptors: [Int32] = [-1, -1]
        let failure = SpawningThread.shared.perform { () -> Int32 in
            guard pipe(&descriptors) == 0 else { return errno }
            for descriptor in descriptors { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
            return 0
        }
        guard failure == 0 else { throw RuntimeError.host("pipe: \(HostFile.lastErrorDescription(failure))") }
        return (descriptors[0], descriptors[1])
    }

    /// Runs a command to completion, its stdout and stderr captured together.
    public static func run(_ executable: String, _ arguments: [String]) throws(RuntimeError) -> (status: Int32, output: String) {
        let pipe = try closeOnExecPipe()
        let descriptors = [pipe.read, pipe.write]
        let child: ChildProcess
        do {
            child = try ChildProcess(executable, arguments, stdin: .null, stdout: .descriptor(descriptors[1]),
                                     stderr: .descriptor(descriptors[1]), newProcessGroup: false)
        } catch {
            close(descriptors[0]); close(descriptors[1])
            throw error
        }
        close(descriptors[1])
        var output: [UInt8] = []
        while true {
            let chunk = DescriptorIO.readSome(descriptors[0])
            if chunk.isEmpty { break }
            output += chunk
        }
        close(descriptors[0])
        let status = child.wait() ?? -1
        return (status, String(decoding: output, as: UTF8.self))
    }
}

/// One thread that lives as long as the process and performs every posix_spawn.
final class SpawningThread: @unchecked Sendable {
    static let shared = SpawningThread()
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var job: (() -> Void)?
    private var generation = 0
    private var finished = 0
    private let serial = Monitor()

    private init() {
        DetachedThread.start { [self] in loop() }
    }

    private func loop() {
        while true {
            var work: (() -> Void)?
            _ = monitor.wait(until: {
                work = job
                return work != nil
            })
            work?()
            // Dropped before the caller is told: its closure must not outlive perform's
            // withoutActuallyEscaping (the runtime checks, and traps, when it does).
            work = nil
            monitor.update {
                job = nil
                finished += 1
            }
        }
    }

    /// Runs `body` on the spawning thread and returns its result.
    func perform<T>(_ body: () -> T) -> T {
        serial.withLock {
            withoutActuallyEscaping(body) { escapable in
                var result: T?
                let target = monitor.update { () -> Int in
                    job = { result = escapable() }
                    generation += 1
                    return generation
                }
                _ = monitor.wait(until: { finished >= target })
                return result!
            }
        }
    }
}
