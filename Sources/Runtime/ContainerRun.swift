import AgentProtocol
import CLinux
import FoundationEssentials  // Data: the type of swift-protobuf's bytes fields
import KasaJSON
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// One workload in its own sandbox, start to end: launch the backend (a VM), dial the
/// agent, create and start the container, bridge its streams to host descriptors, wait
/// for its exit status, and tear everything down on every path — success, failure,
/// interruption, or the VM dying on its own.
///
/// Blocking threads rather than async tasks: every wait here is a blocking read or a
/// blocking ttrpc call, which would starve Swift's small cooperative pool (2 threads on
/// a 2-core host) and deadlock it.
public final class ContainerRun: @unchecked Sendable {
    public struct Stdio: Sendable {
        /// Copied to the workload's stdin until EOF; nil gives it an empty stdin.
        public var input: Int32?
        public var output: Int32
        public var error: Int32

        public init(input: Int32?, output: Int32, error: Int32) {
            self.input = input
            self.output = output
            self.error = error
        }
    }

    public let sandboxID: String
    public let backend: any SandboxBackend
    public let workload: WorkloadSpec
    public let dialTimeout: Double
    /// For control calls (create, start, remove); streams and the wait have no limit.
    public let callTimeout: Double
    /// Called with each step's name as it completes (for --debug and the benchmark).
    public var progress: (@Sendable (String) -> Void)?

    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var client: SandboxAgent?
    private var started = false
    private var finished = false
    private var interruption: Int32?
    private var abortSignal: Int32?
    private var backendFailure: String?
    private let cancelInput = StdinCancellation()

    public init(sandboxID: String, backend: any SandboxBackend, workload: WorkloadSpec, dialTimeout: Double, callTimeout: Double) {
        self.sandboxID = sandboxID
        self.backend = backend
        self.workload = workload
        self.dialTimeout = dialTimeout
        self.callTimeout = callTimeout
    }

    /// Runs the workload and returns its exit status (128 + n when killed by signal n).
    /// Everything the run created on the host is gone when this returns or throws.
    public func run(stdio: Stdio) throws(RuntimeError) -> Int32 {
        defer { tearDown() }
        do {
            return try runSteps(stdio: stdio)
        } catch {
            throw explain(error)
        }
    }

    private func runSteps(stdio: Stdio) throws(RuntimeError) -> Int32 {
        backend.onUnexpectedExit { [self] reason in
            let connection = monitor.update { () -> SandboxAgent? in
                backendFailure = reason
                return client
            }
            connection?.close()
        }
        let binds = try workload.hostBindMounts(containerID: sandboxID, sharing: backend.virtioFS != nil)
        let rootfsMount = try backend.launch(rootfs: workload.rootfs)
        progress?("launched")
        let agent = SandboxAgent(try backend.connect(deadline: MonotonicClock.now + dialTimeout), callTimeout: callTimeout)
        let keep = monitor.update { () -> Bool in
            guard abortSignal == nil && backendFailure == nil else { return false }
            client = agent
            return true
        }
        guard keep else {
            agent.close()
            throw RuntimeError.sandbox("stopped while connecting")
        }
        progress?("connected")

        let health = try call { try agent.health() }
        guard health == .serving else { throw RuntimeError.sandbox("the agent reports \(health), not serving") }
        if let network = backend.network {
            try call { try network.configureGuest(agent) }
            progress?("network configured")
        }
        let sandboxRequest = workload.createSandboxRequest(sandboxID: sandboxID, virtioFS: backend.virtioFS)
        try call { try agent.createSandbox(sandboxRequest) }
        let copied = try call { try workload.copying(binds, agent: agent, sharing: backend.virtioFS) }
        let create = copied.createContainerRequest(containerID: sandboxID, rootfs: rootfsMount)
        try call { try agent.createContainer(create) }
        progress?("created")

        do {
            try agent.startContainer(sandboxID)
        } catch let error as TTRPCCallError where error.code == .failedPrecondition && monitor.withLock({ backendFailure == nil }) {
            // The process could not be executed (the agent reports exec's error).
            let notFound = error.message.contains("not found") || error.message.contains("No such file")
            throw RuntimeError.workload("cannot run \(commandDescription): \(error.message)", exitStatus: notFound ? 127 : 126)
        } catch {
            throw classify(error)
        }
        monitor.withLock { started = true }
        progress?("started")

        if workload.terminal, let size = TerminalSize.of(stdio.output) ?? stdio.input.flatMap(TerminalSize.of) {
            resize(rows: size.rows, columns: size.columns)
        }
        let outputDone = Monitor()
        let pending = PendingCount(workload.terminal ? 1 : 2)
        startOutputPump(.stdout, agent: agent, to: stdio.output, pending: pending, monitor: outputDone)
        if !workload.terminal {
            startOutputPump(.stderr, agent: agent, to: stdio.error, pending: pending, monitor: outputDone)
        }
        startInputPump(agent: agent, from: stdio.input)

        let status = try call { try agent.waitProcess(container: sandboxID) }
        progress?("exited")
        // The streams end when the process and every holder of its pipes are gone;
        // a background child keeping them open must not hold the run forever.
        _ = outputDone.wait(until: { pending.value == 0 }, timeout: max(5, callTimeout))
        monitor.withLock { finished = true }
        return status
    }

    // MARK: Streams

    private func startOutputPump(_ stream: SandboxAgent.OutputStream, agent: SandboxAgent, to descriptor: Int32,
                                 pending: PendingCount, monitor done: Monitor) {
        StreamPumps.output(stream, agent: agent, container: sandboxID, exec: sandboxID, to: descriptor) {
            done.update { pending.value -= 1 }
        }
    }

    private func startInputPump(agent: SandboxAgent, from descriptor: Int32?) {
        StreamPumps.input(agent: agent, container: sandboxID, exec: sandboxID, from: descriptor, cancel: cancelInput)
    }

    // MARK: Control from other threads

    /// The host terminal changed size (SIGWINCH).
    public func resize(rows: UInt16, columns: UInt16) {
        guard workload.terminal, let agent = monitor.withLock({ started ? client : nil }) else { return }
        let container = sandboxID
        DetachedThread.start { _ = try? agent.resizeTerminal(container: container, rows: UInt32(rows), columns: UInt32(columns)) }
    }

    /// Ctrl-C, SIGTERM, SIGHUP: the first is passed to the workload, which gets
    /// `grace` seconds to end; a second, or the grace running out, tears the sandbox
    /// down and the run ends with `RuntimeError.interrupted`.
    public func interrupt(signal: Int32, grace: Double = 10) {
        let (agent, first) = monitor.withLock { () -> (SandboxAgent?, Bool) in
            defer { if interruption == nil { interruption = signal } }
            return (started && !finished ? client : nil, interruption == nil)
        }
        guard first, let agent else {
            abort(signal: signal)
            return
        }
        let container = sandboxID
        DetachedThread.start { [self] in
            _ = try? agent.signalProcess(container: container, signal: UInt32(signal))
            usleep(UInt32(grace * 1_000_000))
            if monitor.withLock({ !finished }) { abort(signal: signal) }
        }
    }

    /// Stops everything now: the backend is killed, blocked calls fail, `run` throws.
    public func abort(signal: Int32) {
        let agent = monitor.update { () -> SandboxAgent? in
            if abortSignal == nil { abortSignal = signal }
            return client
        }
        agent?.close()
        cancelInput.cancel()
        backend.tearDown()
    }

    private func tearDown() {
        cancelInput.cancel()
        let (agent, removeFirst) = monitor.update { () -> (SandboxAgent?, Bool) in
            finished = true
            return (client, started || client != nil)
        }
        if let agent, removeFirst, !backend.stopDiscardsGuestState, backend.failure == nil {
            _ = try? agent.removeContainer(sandboxID, graceSeconds: 5, timeout: 15)
        }
        agent?.close()
        backend.tearDown()
        progress?("torn down")
    }

    // MARK: Errors

    private var commandDescription: String {
        let args = workload.ociSpec["process"]?["args"]?.arrayValue?.compactMap(\.stringValue) ?? []
        return args.first.map { "\"\($0)\"" } ?? "the command"
    }

    @discardableResult
    private func call<T>(_ body: () throws -> T) throws(RuntimeError) -> T {
        do {
            return try body()
        } catch {
            throw classify(error)
        }
    }

    private func classify(_ error: any Error) -> RuntimeError {
        if let error = error as? RuntimeError { return error }
        if let error = error as? TTRPCCallError {
            return RuntimeError.sandbox("the agent failed a request: \(error)")
        }
        return RuntimeError.sandbox("\(error)")
    }

    /// An interruption or a dead backend explains any error that followed from it.
    private func explain(_ error: RuntimeError) -> RuntimeError {
        var (signal, failure) = monitor.withLock { (abortSignal, backendFailure) }
        if signal == nil, failure == nil, case .sandbox = error {
            // A lost connection is usually the backend dying; its reaper may report
            // that a moment after the failed call did. Wait a little for the reason.
            let deadline = MonotonicClock.now + 2
            while failure == nil && MonotonicClock.now < deadline {
                usleep(20_000)
                failure = backend.failure
            }
        }
        if let signal { return .interrupted(signal: signal) }
        if let failure, case .sandbox(let message) = error, !message.contains(failure) {
            return .sandbox("the sandbox stopped unexpectedly: \(failure)\(backend.failureDetail)")
        }
        return error
    }
}

/// A counter shared by the output pumps (guarded by the Monitor they update it under).
final class PendingCount: @unchecked Sendable {
    var value: Int
    init(_ value: Int) { self.value = value }
}

/// Reads stdin until EOF or cancellation: poll on the descriptor and a wake-up eventfd,
/// so a pump blocked on an idle terminal ends with the run.
public final class StdinCancellation: @unchecked Sendable {
    private let wakeup = clinux_eventfd(0)
    private let monitor = Monitor()
    private var cancelled = false

    public init() {}

    deinit { if wakeup >= 0 { close(wakeup) } }

    public var isCancelled: Bool { monitor.withLock { cancelled } }

    public func cancel() {
        monitor.withLock { cancelled = true }
        var one: UInt64 = 1
        _ = write(wakeup, &one, 8)
    }

    /// Bytes read, [] at EOF, nil when cancelled or on error.
    public func read(_ descriptor: Int32) -> [UInt8]? {
        while !isCancelled {
            var descriptors = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: wakeup, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&descriptors, 2, -1)
            if ready < 0 { if errno == EINTR { continue }; return nil }
            if descriptors[1].revents != 0 { return nil }
            if descriptors[0].revents != 0 {
                var buffer = [UInt8](repeating: 0, count: 65536)
                let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
                if count < 0 { if errno == EINTR || errno == EAGAIN { continue }; return nil }
                return Array(buffer.prefix(count))
            }
        }
        return nil
    }
}

/// The size of the terminal on a descriptor.
public enum TerminalSize {
    public static func of(_ descriptor: Int32) -> (rows: UInt16, columns: UInt16)? {
        var size = winsize()
        guard isatty(descriptor) != 0, ioctl(descriptor, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0 else { return nil }
        return (size.ws_row, size.ws_col)
    }
}
