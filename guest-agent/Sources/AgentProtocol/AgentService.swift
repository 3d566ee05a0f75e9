import SwiftProtobuf

/// The version of the host<->guest contract (agent.proto) this code implements. The
/// agent reports it in VersionCheckResponse.protocol_version; bump it when the host must
/// be able to tell that the agent understands something new.
public enum AgentProtocolVersion {
    public static let current: UInt32 = 6
}

/// Where and under which name the agent serves AgentService.
public enum AgentService {
    /// The ttrpc service name: agent.proto's package + service.
    public static let name = "kasa.agent.v1.AgentService"
    /// The guest vsock port the agent listens on (Kata's).
    public static let vsockPort: UInt32 = 1024
    /// The guest vsock port of the agent's debug shell (Kata's default; the guest command
    /// line's `agent.debug_console_vport=N` moves it).
    public static let debugConsoleVsockPort: UInt32 = 1026
}

/// The methods of AgentService (agent.proto), with their message types. The raw value
/// is the ttrpc method name.
public enum AgentServiceMethod: String, CaseIterable, Hashable, Sendable {
    // health
    case check = "Check"
    case version = "Version"
    // sandbox
    case createSandbox = "CreateSandbox"
    case destroySandbox = "DestroySandbox"
    case getGuestDetails = "GetGuestDetails"
    // container
    case createContainer = "CreateContainer"
    case startContainer = "StartContainer"
    case removeContainer = "RemoveContainer"
    // process
    case execProcess = "ExecProcess"
    case signalProcess = "SignalProcess"
    case waitProcess = "WaitProcess"
    // stdio
    case writeStdin = "WriteStdin"
    case readStdout = "ReadStdout"
    case readStderr = "ReadStderr"
    case closeStdin = "CloseStdin"
    case ttyWinResize = "TtyWinResize"
    // stats and events
    case statsContainer = "StatsContainer"
    case getOOMEvent = "GetOOMEvent"
    // container control (protocol 2)
    case pauseContainer = "PauseContainer"
    case resumeContainer = "ResumeContainer"
    case updateContainer = "UpdateContainer"
    case listProcesses = "ListProcesses"
    case copyFile = "CopyFile"
    // network (protocol 4)
    case updateInterface = "UpdateInterface"
    case updateRoutes = "UpdateRoutes"
    case addARPNeighbors = "AddARPNeighbors"
    case listInterfaces = "ListInterfaces"
    case listRoutes = "ListRoutes"
    // clones (protocol 5)
    case reseedRandomDev = "ReseedRandomDev"
    case setGuestDateTime = "SetGuestDateTime"

    public var requestType: any SwiftProtobuf.Message.Type {
        switch self {
        case .check, .version: AgentCheckRequest.self
        case .createSandbox: AgentCreateSandboxRequest.self
        case .destroySandbox: AgentDestroySandboxRequest.self
        case .getGuestDetails: AgentGuestDetailsRequest.self
        case .createContainer: AgentCreateContainerRequest.self
        case .startContainer: AgentStartContainerRequest.self
        case .removeContainer: AgentRemoveContainerRequest.self
        case .execProcess: AgentExecProcessRequest.self
        case .signalProcess: AgentSignalProcessRequest.self
        case .waitProcess: AgentWaitProcessRequest.self
        case .writeStdin: AgentWriteStreamRequest.self
        case .readStdout, .readStderr: AgentReadStreamRequest.self
        case .closeStdin: AgentCloseStdinRequest.self
        case .ttyWinResize: AgentTtyWinResizeRequest.self
        case .statsContainer: AgentStatsContainerRequest.self
        case .getOOMEvent: AgentGetOOMEventRequest.self
        case .pauseContainer: AgentPauseContainerRequest.self
        case .resumeContainer: AgentResumeContainerRequest.self
        case .updateContainer: AgentUpdateContainerRequest.self
        case .listProcesses: AgentListProcessesRequest.self
        case .copyFile: AgentCopyFileRequest.self
        case .updateInterface: AgentUpdateInterfaceRequest.self
        case .updateRoutes: AgentUpdateRoutesRequest.self
        case .addARPNeighbors: AgentAddARPNeighborsRequest.self
        case .listInterfaces: AgentListInterfacesRequest.self
        case .listRoutes: AgentListRoutesRequest.self
        case .reseedRandomDev: AgentReseedRandomDevRequest.self
        case .setGuestDateTime: AgentSetGuestDateTimeRequest.self
        }
    }

    public var responseType: any SwiftProtobuf.Message.Type {
        switch self {
        case .check: AgentHealthCheckResponse.self
        case .version: AgentVersionCheckResponse.self
        case .getGuestDetails: AgentGuestDetailsResponse.self
        case .waitProcess: AgentWaitProcessResponse.self
        case .writeStdin: AgentWriteStreamResponse.self
        case .readStdout, .readStderr: AgentReadStreamResponse.self
        case .statsContainer: AgentStatsContainerResponse.self
        case .getOOMEvent: AgentOOMEvent.self
        case .listProcesses: AgentListProcessesResponse.self
        case .updateInterface: AgentInterface.self
        case .updateRoutes, .listRoutes: AgentRoutes.self
        case .listInterfaces: AgentInterfaces.self
        case .createSandbox, .destroySandbox, .createContainer, .startContainer, .removeContainer,
             .execProcess, .signalProcess, .closeStdin, .ttyWinResize, .pauseContainer, .resumeContainer, .updateContainer,
             .copyFile, .addARPNeighbors, .reseedRandomDev, .setGuestDateTime:
            AgentEmpty.self
        }
    }

    /// The method for a ttrpc Request's service and method names; nil when the request
    /// is not for AgentService or names no method of it (answer UNIMPLEMENTED).
    public init?(service: String, method: String) {
        guard service == AgentService.name else { return nil }
        self.init(rawValue: method)
    }
}
