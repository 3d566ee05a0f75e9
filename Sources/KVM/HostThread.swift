import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// A dedicated OS thread, used for each vCPU and for blocking host I/O. KVM binds a vCPU to the thread that first runs it,
/// and interrupting KVM_RUN means signalling that exact thread, so vCPUs get plain pthreads
/// rather than tasks on a shared pool.
public final class HostThread: @unchecked Sendable {
    /// The signal used to kick a vCPU thread out of KVM_RUN; its handler does nothing.
    public static let kickSignal = SIGUSR1
    private let thread: JoinableThread

    /// Installs the no-op kick handler without SA_RESTART, so the signal makes KVM_RUN
    /// return EINTR. Call once before starting vCPU threads.
    public static func installKickHandler() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(kickSignal, &action, nil)
    }

    public init(name: String, _ body: @escaping @Sendable () -> Void) throws {
        do {
            thread = try JoinableThread(name: name) {
                // The creating thread may block signals (dispatch workers do), and the new thread
                // inherits that mask; the kick must get through or a halted vCPU never wakes.
                var kick = sigset_t()
                sigemptyset(&kick)
                sigaddset(&kick, HostThread.kickSignal)
                pthread_sigmask(SIG_UNBLOCK, &kick, nil)
                body()
            }
        } catch {
            throw KVMError("pthread_create for \(name)", errno: error.code)
        }
    }

    /// Interrupts a KVM_RUN in progress on this thread.
    public func kick() {
        thread.send(signal: HostThread.kickSignal)
    }

    public func join() {
        thread.join()
    }
}
