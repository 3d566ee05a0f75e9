import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Wakes GetOOMEvent's waiters when a container's `memory.events` changes, instead of
/// their reading every container's file ten times a second. cgroup v2 raises a
/// file-modified event on `memory.events` whenever one of its counters moves (oom_kill
/// among them), and inotify delivers it. On kvm_pvm every file read is an emulated kernel
/// path: the polling kept a three-container pod's vCPU busy, and each exec in it took a
/// minute. Where no watch can be made (no inotify, no memory controller, so no file)
/// waiters still look every `fallbackInterval`.
final class MemoryEventWatch: @unchecked Sendable {
    static let fallbackInterval = 10.0

    /// The inotify instance (-1 without one); closed in deinit, once the reader is gone.
    private let descriptor: Int32
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var generation: UInt64 = 0
    private var watches: [String: Int32] = [:]
    private var readerStarted = false

    init() {
        descriptor = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// Watches `file` for `key` (a container id), replacing its earlier watch; false
    /// when it cannot be watched (the waiters' fallback look covers it).
    @discardableResult
    func watch(_ file: String, for key: String) -> Bool {
        guard descriptor >= 0 else { return false }
        let handle = inotify_add_watch(descriptor, file, UInt32(IN_MODIFY))
        guard handle >= 0 else { return false }
        let startReader = monitor.withLock { () -> Bool in
            watches[key] = handle
            defer { readerStarted = true }
            return !readerStarted
        }
        if startReader { startReading() }
        return true
    }

    func unwatch(_ key: String) {
        guard let handle = monitor.withLock({ watches.removeValue(forKey: key) }) else { return }
        // EINVAL when the cgroup went first (the kernel dropped the watch): nothing to do.
        _ = inotify_rm_watch(descriptor, handle)
    }

    /// How many changes have been seen: read it before looking at the files, then
    /// `wait(after:timeout:)` cannot miss a change made after the look.
    var changes: UInt64 { monitor.withLock { generation } }

    /// Returns once a change after `seen` arrives, or after `timeout` seconds.
    func wait(after seen: UInt64, timeout: Double) {
        _ = monitor.wait(until: { generation != seen }, timeout: max(0, timeout))
    }

    /// One reader thread, started with the first watch, blocked in poll; it holds this
    /// object a second at a time only, so one that is dropped (a host-process test's
    /// sandbox) ends the thread and closes its descriptor.
    private func startReading() {
        DetachedThread.start { [weak self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while let watch = self {
                watch.drain(into: &buffer, waitingMilliseconds: 1000)
            }
        }
    }

    private func drain(into buffer: inout [UInt8], waitingMilliseconds: Int32) {
        var request = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&request, 1, waitingMilliseconds) > 0 else { return }
        var arrived = false
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 { arrived = true; continue }
            if count < 0 && errno == EINTR { continue }
            break  // EAGAIN: drained
        }
        if arrived { monitor.update { generation &+= 1 } }
    }
}
