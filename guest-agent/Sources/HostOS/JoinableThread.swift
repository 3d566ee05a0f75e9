#if canImport(Glibc)
import Glibc
#endif

/// A named pthread the creator joins (vCPUs, event loops, work inside another network
/// namespace): dedicated OS threads where work blocks or must stay on one thread, rather
/// than tasks on a shared pool. `DetachedThread` is the fire-and-forget kind.
public final class JoinableThread: @unchecked Sendable {
    // Written once by pthread_create before init returns; read-only afterwards.
    private var thread = pthread_t()

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Starts `body` on a new thread named `name` (at most 15 bytes are kept). Throws the
    /// pthread_create error number.
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws(ThreadStartError) {
        let context = Unmanaged.passRetained(Body({
            JoinableThread.nameCurrentThread(name)
            JoinableThread.startHook()?(name)
            body()
        })).toOpaque()
        let result = pthread_create(&thread, nil, { argument in
            // Safe: `argument` is the retained Body passed just below; it is released here, once.
            Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, context)
        if result != 0 {
            Unmanaged<Body>.fromOpaque(context).release()
            throw ThreadStartError(name: name, code: result)
        }
    }

    // Guarded by `hookLock`: set by a process before it starts the threads it applies to.
    nonisolated(unsafe) private static var hook: (@Sendable (String) -> Void)?
    private static let hookLock = Lock()

    /// Runs `hook` on every thread started afterwards, first thing on the new thread, with
    /// its name (kasa-vmm confines each thread there: its capabilities and seccomp filter,
    /// before the thread's own work). nil removes it.
    public static func setStartHook(_ hook: (@Sendable (String) -> Void)?) {
        hookLock.withLock { JoinableThread.hook = hook }
    }

    private static func startHook() -> (@Sendable (String) -> Void)? {
        hookLock.withLock { hook }
    }

    /// Sends `signal` to this thread (e.g. to interrupt a blocking call in it).
    public func send(signal: Int32) {
        pthread_kill(thread, signal)
    }

    public func join() {
        pthread_join(thread, nil)
    }

    /// Names the calling thread (what `top -H` and /proc show) through
    /// /proc/thread-self/comm: pthread_setname_np needs _GNU_SOURCE, which Glibc's Swift
    /// module lacks. A failure leaves the name as it was.
    public static func nameCurrentThread(_ name: String) {
        let descriptor = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        DescriptorIO.write(descriptor, Array(name.utf8.prefix(15)), socket: false)
    }
}

public struct ThreadStartError: Error, Equatable, CustomStringConvertible {
    public let name: String
    public let code: Int32
    public var description: String { "cannot start thread \(name): \(String(cString: strerror(code)))" }
}
