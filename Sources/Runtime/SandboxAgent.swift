import AgentProtocol
import FoundationEssentials  // Data: the type of swift-protobuf's bytes fields

/// The agent of one sandbox as the host speaks to it: one typed method per request the
/// runtime makes, used by `kata-runtime run`, the containerd shim and the pod network, so
/// that each request is built in one place. Blocking; safe from any thread (the ttrpc
/// connection multiplexes calls). Errors are the agent's (`TTRPCCallError`) or the
/// connection's, for the caller to classify.
public struct SandboxAgent: Sendable {
    /// The connection, for closing it (which fails every call still waiting).
    public let client: AgentClient
    /// The limit for an ordinary request; waits and stream reads are unbounded.
    public let callTimeout: Double

    /// Effectively no limit: a process's wait or a stream read lasts as long as it runs.
    public static let unbounded = 365.0 * 24 * 3600

    public init(_ client: AgentClient, callTimeout: Double) {
        self.client = client
        self.callTimeout = callTimeout
    }

    /// Fails every call in flight and every later one.
    public func close() { client.connection.close() }

    /// A process of a container: its init process when `exec` is nil or empty (containerd's
    /// convention, and the agent's, whose init process carries the container's id).
    static func execID(_ exec: String?, of container: String) -> String {
        guard let exec, !exec.isEmpty else { return container }
        return exec
    }

    // MARK: Sandbox

    public func health() throws -> AgentHealthCheckResponse.ServingStatus {
        try client.call(.check, AgentCheckRequest(), returning: AgentHealthCheckResponse.self, timeout: callTimeout).status
    }

    public func createSandbox(_ request: AgentCreateSandboxRequest) throws {
        try client.call(.createSandbox, request, timeout: callTimeout)
    }

    /// Mixes `seed` (host randomness) into the guest's pool and reseeds its CRNG: a VM
    /// restored from a template must not draw the template's random numbers.
    public func reseedRandom(_ seed: [UInt8]) throws {
        var request = AgentReseedRandomDevRequest()
        request.data = Data(seed)
        try client.call(.reseedRandomDev, request, timeout: callTimeout)
    }

    /// Sets the guest's wall clock.
    public func setGuestTime(seconds: Int64, microseconds: Int64) throws {
        var request = AgentSetGuestDateTimeRequest()
        request.sec = seconds
        request.usec = microseconds
        try client.call(.setGuestDateTime, request, timeout: callTimeout)
    }

    public func guestDetails() throws -> AgentGuestDetailsResponse {
        try client.call(.getGuestDetails, AgentGuestDetailsRequest(), returning: AgentGuestDetailsResponse.self, timeout: callTimeout)
    }

    public func copyFile(_ request: AgentCopyFileRequest) throws {
        try client.call(.copyFile, request, timeout: callTimeout)
    }

    /// The guest id of the next container whose memory.events counts a new OOM kill.
    public func nextOOMKill() throws -> String {
        try client.call(.getOOMEvent, AgentGetOOMEventRequest(), returning: AgentOOMEvent.self, timeout: Self.unbounded).containerID
    }

    // MARK: Network

    @discardableResult
    public func updateInterface(_ interface: AgentInterface) throws -> AgentInterface {
        var request = AgentUpdateInterfaceRequest()
        request.interface = interface
        return try client.call(.updateInterface, request, returning: AgentInterface.self, timeout: callTimeout)
    }

    @discardableResult
    public func updateRoutes(_ routes: [AgentRoute]) throws -> [AgentRoute] {
        var request = AgentUpdateRoutesRequest()
        request.routes = routes
        return try client.call(.updateRoutes, request, returning: AgentRoutes.self, timeout: callTimeout).routes
    }

    public func addARPNeighbors(_ neighbours: [AgentARPNeighbor]) throws {
        var request = AgentAddARPNeighborsRequest()
        request.neighbors = neighbours
        try client.call(.addARPNeighbors, request, timeout: callTimeout)
    }

    // MARK: Containers

    public func createContainer(_ request: AgentCreateContainerRequest) throws {
        try client.call(.createContainer, request, timeout: callTimeout)
    }

    public func startContainer(_ container: String) throws {
        var request = AgentStartContainerRequest()
        request.containerID = container
        try client.call(.startContainer, request, timeout: callTimeout)
    }

    /// Ends the container (its processes get `graceSeconds` after SIGTERM) and removes it;
    /// `timeout` bounds the call (by default the ordinary limit, and never under the grace).
    public func removeContainer(_ container: String, graceSeconds: UInt32 = 5, timeout: Double? = nil) throws {
        var request = AgentRemoveContainerRequest()
        request.containerID = container
        request.timeoutSeconds = graceSeconds
        try client.call(.removeContainer, request, timeout: max(timeout ?? callTimeout, Double(graceSeconds) + 1))
    }

    public func pauseContainer(_ container: String) throws {
        var request = AgentPauseContainerRequest()
        request.containerID = container
        try client.call(.pauseContainer, request, timeout: callTimeout)
    }

    public func resumeContainer(_ container: String) throws {
        var request = AgentResumeContainerRequest()
        request.containerID = container
        try client.call(.resumeContainer, request, timeout: callTimeout)
    }

    /// New cgroup limits, as the OCI spec's `linux.resources` JSON.
    public func updateContainer(_ container: String, resourcesJSON: [UInt8]) throws {
        var request = AgentUpdateContainerRequest()
        request.containerID = container
        request.resourcesJson = Data(resourcesJSON)
        try client.call(.updateContainer, request, timeout: callTimeout)
    }

    public func stats(_ container: String) throws -> AgentStatsContainerResponse {
        var request = AgentStatsContainerRequest()
        request.containerID = container
        return try client.call(.statsContainer, request, returning: AgentStatsContainerResponse.self, timeout: callTimeout)
    }

    /// The guest pids of the container's processes.
    public func processes(_ container: String) throws -> [Int32] {
        var request = AgentListProcessesRequest()
        request.containerID = container
        return try client.call(.listProcesses, request, returning: AgentListProcessesResponse.self, timeout: callTimeout).pids
    }

    // MARK: Processes

    /// Starts a further process (an OCI `process` JSON) in a running container.
    public func execProcess(container: String, exec: String, processJSON: [UInt8], terminal: Bool) throws {
        var request = AgentExecProcessRequest()
        request.containerID = container
        request.execID = exec
        request.processJson = Data(processJSON)
        request.terminal = terminal
        try client.call(.execProcess, request, timeout: callTimeout)
    }

    /// Waits, without limit, for the process to end; returns its exit status (128+n for signal n).
    public func waitProcess(container: String, exec: String? = nil) throws -> Int32 {
        var request = AgentWaitProcessRequest()
        request.containerID = container
        request.execID = Self.execID(exec, of: container)
        return try client.call(.waitProcess, request, returning: AgentWaitProcessResponse.self, timeout: Self.unbounded).exitStatus
    }

    /// `all` signals every process of the container (only for its init process).
    public func signalProcess(container: String, exec: String? = nil, signal: UInt32, all: Bool = false) throws {
        var request = AgentSignalProcessRequest()
        request.containerID = container
        request.execID = Self.execID(exec, of: container)
        request.signal = signal
        request.all = all && (exec ?? "").isEmpty
        try client.call(.signalProcess, request, timeout: callTimeout)
    }

    public func resizeTerminal(container: String, exec: String? = nil, rows: UInt32, columns: UInt32) throws {
        var request = AgentTtyWinResizeRequest()
        request.containerID = container
        request.execID = Self.execID(exec, of: container)
        request.rows = rows
        request.columns = columns
        try client.call(.ttyWinResize, request, timeout: callTimeout)
    }

    public func closeStdin(container: String, exec: String? = nil) throws {
        var request = AgentCloseStdinRequest()
        request.containerID = container
        request.execID = Self.execID(exec, of: container)
        try client.call(.closeStdin, request, timeout: callTimeout)
    }

    // MARK: Streams

    public enum OutputStream: Sendable {
        case stdout, stderr
        var method: AgentServiceMethod { self == .stdout ? .readStdout : .readStderr }
    }

    /// The next bytes the process wrote to `stream` (at most `limit`), waiting without
    /// limit; empty at the end of the stream.
    public func read(_ stream: OutputStream, container: String, exec: String? = nil, limit: UInt32 = 65536) throws -> [UInt8] {
        var request = AgentReadStreamRequest()
        request.containerID = container
        request.execID = Self.execID(exec, of: container)
        request.len = limit
        return Array(try client.call(stream.method, request, returning: AgentReadStreamResponse.self, timeout: Self.unbounded).data)
    }

    /// Gives `bytes` to the process's stdin; returns how many it took (it may take fewer).
    public func writeStdin(container: String, exec: String? = nil, _ bytes: ArraySlice<UInt8>) throws -> Int {
        var request = AgentWriteStreamRequest()
        request.containerID = container
        request.execID = Self.execID(exec, of: container)
        request.data = Data(bytes)
        return Int(try client.call(.writeStdin, request, returning: AgentWriteStreamResponse.self, timeout: Self.unbounded).len)
    }
}
