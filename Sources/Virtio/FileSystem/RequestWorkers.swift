import HostOS

/// A fixed set of threads running jobs in order of arrival: virtio-fs requests block on
/// host file I/O, so they run here and not on the event loop (which would stall every
/// other device's queue behind a slow fsync). Its jobs are bounded by what feeds it (the
/// request queue's size); `stop` lets the threads finish and end.
final class RequestWorkers: @unchecked Sendable {
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var jobs: [@Sendable () -> Void] = []
    private var next = 0
    private var stopping = false
    private var threads: [JoinableThread] = []

    init(count: Int, name: String) throws {
        for index in 0..<max(1, count) {
            let thread = try JoinableThread(name: "\(name)\(index)") { [self] in self.work() }
            monitor.withLock { threads.append(thread) }
        }
    }

    func submit(_ job: @escaping @Sendable () -> Void) {
        monitor.update { jobs.append(job) }
    }

    private func work() {
        while true {
            var job: (@Sendable () -> Void)?
            _ = monitor.wait(until: { stopping || next < jobs.count })
            monitor.withLock {
                if next < jobs.count {
                    job = jobs[next]
                    next += 1
                    if next == jobs.count {
                        jobs.removeAll(keepingCapacity: true)
                        next = 0
                    }
                }
            }
            if let job { job() } else if monitor.withLock({ stopping }) { return }
        }
    }

    /// Runs what was submitted, then ends the threads and waits for them.
    func stop() {
        let running = monitor.update { () -> [JoinableThread] in
            stopping = true
            return threads
        }
        for thread in running { thread.join() }
    }
}
