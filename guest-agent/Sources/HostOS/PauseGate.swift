/// Halts a fixed set of worker threads between units of work, runs jobs on them while they
/// are halted, and lets them go again: how kasa-vmm pauses its vCPUs and its event loop for
/// a snapshot. Workers call `park(worker:)` when they see `pauseRequested`; one controller
/// at a time calls `pause`, `perform` and `resume`.
public final class PauseGate: @unchecked Sendable {
    private let monitor = Monitor()
    private let workerCount: Int
    // Guarded by `monitor`.
    private var requested = false
    private var released = false
    private var parked: Set<Int> = []
    private var jobs: [Int: () -> Void] = [:]

    public init(workers: Int) {
        workerCount = workers
    }

    /// Cheap enough to ask on every round of a worker's loop.
    public var pauseRequested: Bool { monitor.withLock { requested && !released } }

    /// Asks the workers to park; returns once all have, or false after `timeout` seconds (a
    /// worker stuck elsewhere, or gone). `nudge` wakes them (e.g. kicks vCPUs out of KVM_RUN).
    public func pause(timeout: Double, nudge: () -> Void) -> Bool {
        monitor.update { requested = true }
        nudge()
        let settled = monitor.wait(until: { parked.count == workerCount || released }, timeout: timeout)
        return monitor.withLock { settled && !released }
    }

    /// Runs `job` on parked worker `worker` and returns what it returned (or throws what
    /// it threw) once it has finished.
    public func perform<T>(on worker: Int, _ job: @escaping () throws -> T) throws -> T {
        var outcome: Result<T, any Error>?
        let finished = Monitor()
        monitor.update {
            jobs[worker] = {
                let result = Result { try job() }
                finished.update { outcome = result }
            }
        }
        _ = finished.wait(until: { outcome != nil })
        return try outcome!.get()
    }

    /// Lets parked workers continue.
    public func resume() {
        monitor.update { requested = false }
    }

    /// Lets every worker go for good (the machine is stopping): parked ones return, and
    /// later pause requests are ignored.
    public func release() {
        monitor.update { released = true }
    }

    /// Called by worker `worker` when it sees `pauseRequested`: waits, running the jobs
    /// given to it, until `resume` or `release`.
    public func park(worker: Int) {
        monitor.update { _ = parked.insert(worker) }
        while true {
            _ = monitor.wait(until: { !requested || released || jobs[worker] != nil })
            let (job, stay) = monitor.withLock { (jobs.removeValue(forKey: worker), requested && !released) }
            if let job {
                job()
                continue
            }
            if !stay { break }
        }
        monitor.update { _ = parked.remove(worker) }
    }
}
