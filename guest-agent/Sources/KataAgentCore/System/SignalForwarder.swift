import AgentProtocol
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Signals sent to the agent go on to the containers. As the guest's PID 1 the agent
/// would otherwise drop them (the kernel delivers nothing to init that init does not
/// handle), and a workload would never hear of a shutdown; PID 1 itself stays. A
/// host-process agent forwards the ending signals too, kills what is still running a
/// second later, then ends as it always did.
///
/// The signals are blocked in every thread (`setMask` runs before any thread exists, and
/// threads inherit the mask; the container launcher clears it for container processes)
/// and one thread takes them with sigwait.
enum SignalForwarder {
    static let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]
    static let ending: Set<Int32> = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]
    /// How long a host-process agent's containers have for an ending signal.
    static let hostAgentGrace = 1.0

    static var signalSet: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in forwarded { sigaddset(&set, signal) }
        return set
    }

    /// The process's starting mask: exactly the forwarded signals blocked. Whoever started
    /// the agent may have blocked others (a dispatch worker does); those are unblocked.
    static func setMask() {
        var set = signalSet
        pthread_sigmask(SIG_SETMASK, &set, nil)
    }

    static func start(sandbox: Sandbox, isInit: Bool, log: @escaping @Sendable (String) -> Void) {
        DetachedThread.start {
            var mask = signalSet
            while true {
                var signal: Int32 = 0
                guard sigwait(&mask, &signal) == 0 else { continue }
                let count = sandbox.signalEveryContainer(signal)
                log("received signal \(signal): forwarded to \(count) container(s)")
                if !isInit && ending.contains(signal) {
                    // A host-process agent's containers end with it, as a VM's do: they get
                    // a moment for the forwarded signal, then SIGKILL (a container's PID 1
                    // that has no handler never even sees it).
                    let deadline = monotonicSeconds() + hostAgentGrace
                    while sandbox.runningContainerCount > 0 && monotonicSeconds() < deadline { usleep(20_000) }
                    _ = sandbox.signalEveryContainer(SIGKILL)
                    // As before forwarding existed: the signal's usual end, by the signal itself.
                    var single = sigset_t()
                    sigemptyset(&single)
                    sigaddset(&single, signal)
                    Glibc.signal(signal, SIG_DFL)
                    pthread_sigmask(SIG_UNBLOCK, &single, nil)
                    raise(signal)
                    _exit(128 + signal)
                }
            }
        }
    }
}
