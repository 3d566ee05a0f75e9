import AgentProtocol
import Runtime
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Turns the signals a terminal user sends into sandbox actions, on one thread that
/// sigwait()s for them (they are blocked everywhere else): SIGINT/SIGTERM/SIGHUP go to
/// `ContainerRun.interrupt`, SIGWINCH resizes the workload's pty.
final class SignalRelay: @unchecked Sendable {
    static let handled: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR2]
    private let stopSignal = SIGUSR2
    private let monitor = Monitor()
    private var stopped = false

    /// Must run before any other thread starts, so that all inherit the blocked mask.
    static func start(for run: ContainerRun) -> SignalRelay {
        signal(SIGPIPE, SIG_IGN)
        var set = sigset_t()
        sigemptyset(&set)
        for number in handled { sigaddset(&set, number) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let relay = SignalRelay()
        let blocked = set
        DetachedThread.start { relay.loop(blocked, run: run) }
        return relay
    }

    private func loop(_ set: sigset_t, run: ContainerRun) {
        var waitSet = set
        while true {
            var number: Int32 = 0
            guard sigwait(&waitSet, &number) == 0 else { continue }
            if monitor.withLock({ stopped }) { return }
            switch number {
            case SIGWINCH:
                if let size = TerminalSize.of(STDIN_FILENO) ?? TerminalSize.of(STDOUT_FILENO) {
                    run.resize(rows: size.rows, columns: size.columns)
                }
            case stopSignal:
                continue
            default:
                run.interrupt(signal: number)
            }
        }
    }

    func stop() {
        monitor.withLock { stopped = true }
        kill(getpid(), stopSignal)
    }
}

/// The host terminal in raw mode while a `-t` workload owns it (its pty does the line
/// editing and turns Ctrl-C into SIGINT in the guest), restored afterwards.
final class RawTerminal {
    private let descriptor: Int32
    private var saved = termios()
    private var active = false

    init?(descriptor: Int32) {
        guard isatty(descriptor) != 0, tcgetattr(descriptor, &saved) == 0 else { return nil }
        self.descriptor = descriptor
        var raw = saved
        cfmakeraw(&raw)
        active = tcsetattr(descriptor, TCSANOW, &raw) == 0
    }

    func restore() {
        guard active else { return }
        tcsetattr(descriptor, TCSANOW, &saved)
        active = false
    }
}
