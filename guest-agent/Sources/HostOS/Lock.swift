#if canImport(Glibc)
import Glibc
#endif

/// A small mutex (device state touched from vCPU and I/O threads, tables shared between
/// request threads). Synchronization's
/// Mutex needs macOS 15-era availability annotations; a pthread mutex works everywhere here.
public final class Lock: @unchecked Sendable {
    // Safe: the mutex is allocated once, initialized before use and destroyed in deinit;
    // all access goes through pthread calls.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
