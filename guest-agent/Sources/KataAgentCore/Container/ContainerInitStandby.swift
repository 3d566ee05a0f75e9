import HostOS
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CAgentLinux

/// Keeps one standby container init (`ContainerInit.standBy`) ready for the next new
/// container, on a thread of its own: `take()` hands the ready one out, and the thread
/// makes the next once a container has started (or `replaceAfter` has passed) at nice 19:
/// making one is seconds of kernel work where the guest kernel is emulated, and done
/// at once it delayed the start of the container that took its predecessor by ~0.4 s
/// there (docs/performance.md) — the guest kernel's own work is not preempted, so the
/// nice value alone does not keep it out of the way. A pod's next container (CRI: the
/// application after the pause container) finds it ready. The first is made at normal
/// priority before the agent serves, so that a VM template is snapshotted with it. A
/// taken standby returns to nice 0.
///
/// The thread must outlive every standby: they die with it (PR_SET_PDEATHSIG is bound to
/// the thread that spawned them, not the process).
public final class ContainerInitStandby: @unchecked Sendable {
    let agentExecutable: String
    let log: @Sendable (String) -> Void
    /// How long a standby may take to get ready before it is given up (an emulated guest
    /// kernel takes seconds).
    let readyTimeout: Duration
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var ready: ContainerLauncher.InitProcess?
    private var stopped = false
    private var finished = false
    private var handedOut = 0
    private var startedSinceTake = false
    /// The longest a taken standby waits for a container's start before it is replaced.
    let replaceAfter: Double

    /// Standbys that failed one after another before the thread stops making them.
    static let failuresBeforeGivingUp = 3

    public init(agentExecutable: String = "/proc/self/exe", readyTimeout: Duration = .seconds(120),
                replaceAfter: Double = 10, log: @escaping @Sendable (String) -> Void) {
        self.agentExecutable = agentExecutable
        self.readyTimeout = readyTimeout
        self.replaceAfter = replaceAfter
        self.log = log
    }

    /// Starts the thread and waits at most `timeout` seconds for the first standby;
    /// false if there is none by then (containers are then launched afresh until there is).
    @discardableResult
    public func start(waitingUpTo timeout: Double) -> Bool {
        do {
            // Never joined: it runs as long as the agent (or until `stop`).
            _ = try JoinableThread(name: "init-standby") { [self] in run() }
        } catch {
            log("standby container init: \(error)")
            return false
        }
        return monitor.wait(until: { ready != nil || finished }, timeout: timeout) && isReady
    }

    /// Whether a standby is waiting now.
    public var isReady: Bool { monitor.withLock { ready != nil } }

    /// The waiting standby's pid (the process that reports its child's), if any.
    public var readyPID: Int32? { monitor.withLock { ready?.pid } }

    /// How many standbys `take` has handed out.
    public var takenCount: Int { monitor.withLock { handedOut } }

    /// The ready standby, if any, back at normal priority; the thread makes the next.
    public func take() -> ContainerLauncher.InitProcess? {
        let taken = monitor.update { () -> ContainerLauncher.InitProcess? in
            defer { ready = nil }
            if ready != nil {
                handedOut += 1
                startedSinceTake = false
            }
            return ready
        }
        if let taken { _ = kasa_set_nice(taken.pid, 0) }
        return taken
    }

    /// A container has started (any, however launched): the time to make the next standby.
    public func containerStarted() {
        monitor.update { startedSinceTake = true }
    }

    /// Ends the thread and kills the standby waiting (its child dies with it).
    public func stop() {
        let waiting = monitor.update { () -> ContainerLauncher.InitProcess? in
            stopped = true
            defer { ready = nil }
            return ready
        }
        if var waiting { waiting.discard() }
        _ = monitor.wait(until: { finished }, timeout: 10)
    }

    private func run() {
        defer { monitor.update { finished = true } }
        var failures = 0
        var first = true
        while !monitor.withLock({ stopped }) {
            guard var process = makeStandby() else {
                failures += 1
                if failures >= ContainerInitStandby.failuresBeforeGivingUp {
                    log("no standby container init after \(failures) attempts: containers are started without one")
                    return
                }
                sleep(1)
                continue
            }
            failures = 0
            if first {
                // From now on standbys are made while containers may be running.
                _ = kasa_set_nice(0, 19)
                first = false
            }
            let published = monitor.update { () -> Bool in
                guard !stopped else { return false }
                ready = process
                return true
            }
            guard published else {
                process.discard()
                return
            }
            _ = monitor.wait(until: { ready == nil || stopped })
            _ = monitor.wait(until: { startedSinceTake || stopped }, timeout: replaceAfter)
        }
    }

    /// Spawns a standby and waits until its child stands by; nil (logged) if it fails.
    private func makeStandby() -> ContainerLauncher.InitProcess? {
        var process: ContainerLauncher.InitProcess
        do {
            process = try ContainerLauncher.spawnInit(agentExecutable: agentExecutable, stdio: [], standby: true)
        } catch {
            log("standby container init: \(error)")
            return nil
        }
        switch ContainerSys.readToEnd(process.startFd, timeout: readyTimeout, limit: 1) {
        case let .complete(bytes) where bytes == [ContainerInitProtocol.standingBy]:
            return process
        case let .complete(bytes) where !bytes.isEmpty:
            log("standby container init: unexpected byte \(bytes[0]) on its start socket")
        case .complete:
            // Gone before it stood by: its own words are on the sync pipe.
            if case let .complete(report) = ContainerSys.readToEnd(process.syncFd, timeout: .seconds(1)) {
                let text = String(decoding: report, as: UTF8.self)
                log("standby container init failed: \(ContainerInitProtocol.errorMessage(text) ?? text)")
            }
        case .timedOut:
            log("standby container init was not ready within \(readyTimeout)")
        }
        process.discard()
        return nil
    }
}
