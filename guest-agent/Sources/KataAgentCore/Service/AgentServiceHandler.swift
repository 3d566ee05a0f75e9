import AgentProtocol
import FoundationEssentials
import SwiftProtobuf
#if canImport(Glibc)
import Glibc
#endif

/// AgentService: decodes each request, runs it against the sandbox, encodes the answer.
/// Every failure becomes a ttrpc status; nothing a request carries can stop the agent.
public final class AgentServiceHandler: TTRPCRequestHandler, @unchecked Sendable {
    let sandbox: Sandbox
    let network: GuestNetwork
    let log: @Sendable (String) -> Void

    public init(configuration: AgentConfiguration, launcher: any ProcessLauncher, log: @escaping @Sendable (String) -> Void) {
        sandbox = Sandbox(configuration: configuration, launcher: launcher, log: log)
        network = GuestNetwork(configuration: configuration, log: log)
        self.log = log
    }

    public func handle(_ request: TTRPCRequest) -> TTRPCResponse {
        guard request.service == AgentService.name else {
            return TTRPCResponse(code: .unimplemented, message: "unknown service \(request.service)")
        }
        guard let method = AgentServiceMethod(service: request.service, method: request.method) else {
            return TTRPCResponse(code: .unimplemented, message: "unknown method \(request.method)")
        }
        do {
            return try TTRPCResponse(message: dispatch(method, payload: request.payload, timeout: request.timeoutNano))
        } catch let error as AgentError {
            log("\(method.rawValue) failed: \(error.message)")
            return TTRPCResponse(code: error.code, message: error.message)
        } catch let error as SwiftProtobuf.BinaryDecodingError {
            return TTRPCResponse(code: .invalidArgument, message: "\(method.rawValue): malformed request (\(error))")
        } catch {
            log("\(method.rawValue) failed: \(error)")
            return TTRPCResponse(code: .internal, message: "\(method.rawValue): \(error)")
        }
    }

    private func decode<M: SwiftProtobuf.Message>(_ type: M.Type, _ payload: Data) throws -> M {
        try M(serializedBytes: Array(payload))
    }

    private func dispatch(_ method: AgentServiceMethod, payload: Data, timeout: Int64) throws -> any SwiftProtobuf.Message {
        let timeoutSeconds: Double? = timeout > 0 ? Double(timeout) / 1e9 : nil
        switch method {
        case .check:
            var response = AgentHealthCheckResponse()
            response.status = .serving
            return response
        case .version:
            var response = AgentVersionCheckResponse()
            response.agentVersion = sandbox.configuration.version
            response.protocolVersion = AgentProtocolVersion.current
            return response
        case .createSandbox:
            try sandbox.create(decode(AgentCreateSandboxRequest.self, payload))
            return AgentEmpty()
        case .destroySandbox:
            sandbox.destroy()
            return AgentEmpty()
        case .getGuestDetails:
            return sandbox.guestDetails()
        case .createContainer:
            try sandbox.createContainer(decode(AgentCreateContainerRequest.self, payload))
            return AgentEmpty()
        case .startContainer:
            try sandbox.startContainer(decode(AgentStartContainerRequest.self, payload).containerID)
            return AgentEmpty()
        case .removeContainer:
            let request = try decode(AgentRemoveContainerRequest.self, payload)
            try sandbox.removeContainer(request.containerID, timeout: Double(request.timeoutSeconds))
            return AgentEmpty()
        case .execProcess:
            try sandbox.exec(decode(AgentExecProcessRequest.self, payload))
            return AgentEmpty()
        case .signalProcess:
            let request = try decode(AgentSignalProcessRequest.self, payload)
            if request.all {
                try sandbox.signalAll(request.containerID, Int32(request.signal))
            } else {
                try sandbox.process(request.containerID, request.execID).signal(Int32(request.signal))
            }
            return AgentEmpty()
        case .waitProcess:
            let request = try decode(AgentWaitProcessRequest.self, payload)
            let process = try sandbox.process(request.containerID, request.execID)
            guard let status = process.waitForExit(timeout: timeoutSeconds) else {
                throw AgentError(.deadlineExceeded, "process \(request.execID) still running")
            }
            var response = AgentWaitProcessResponse()
            response.exitStatus = status
            return response
        case .writeStdin:
            let request = try decode(AgentWriteStreamRequest.self, payload)
            var response = AgentWriteStreamResponse()
            response.len = UInt32(try sandbox.process(request.containerID, request.execID).writeStdin(Array(request.data)))
            return response
        case .readStdout, .readStderr:
            let request = try decode(AgentReadStreamRequest.self, payload)
            let process = try sandbox.process(request.containerID, request.execID)
            let stream = method == .readStdout ? process.stdout : process.stderr
            guard let stream else { throw AgentError(.failedPrecondition, "a terminal process has no separate stderr") }
            var response = AgentReadStreamResponse()
            response.data = Data(stream.read(limit: Int(max(1, min(request.len, 1 << 20))), timeout: timeoutSeconds))
            return response
        case .closeStdin:
            let request = try decode(AgentCloseStdinRequest.self, payload)
            try sandbox.process(request.containerID, request.execID).closeStdin()
            return AgentEmpty()
        case .ttyWinResize:
            let request = try decode(AgentTtyWinResizeRequest.self, payload)
            try sandbox.process(request.containerID, request.execID)
                .resize(rows: UInt16(clamping: request.rows), columns: UInt16(clamping: request.columns))
            return AgentEmpty()
        case .statsContainer:
            return try sandbox.stats(decode(AgentStatsContainerRequest.self, payload).containerID)
        case .getOOMEvent:
            var response = AgentOOMEvent()
            response.containerID = try sandbox.nextOOMEvent(timeout: timeoutSeconds)
            return response
        case .pauseContainer:
            try sandbox.setPaused(true, decode(AgentPauseContainerRequest.self, payload).containerID)
            return AgentEmpty()
        case .resumeContainer:
            try sandbox.setPaused(false, decode(AgentResumeContainerRequest.self, payload).containerID)
            return AgentEmpty()
        case .updateContainer:
            try sandbox.update(decode(AgentUpdateContainerRequest.self, payload))
            return AgentEmpty()
        case .listProcesses:
            var response = AgentListProcessesResponse()
            response.pids = try sandbox.processes(decode(AgentListProcessesRequest.self, payload).containerID)
            return response
        case .copyFile:
            try sandbox.sharedFiles.copy(decode(AgentCopyFileRequest.self, payload))
            return AgentEmpty()
        case .updateInterface:
            return try network.updateInterface(decode(AgentUpdateInterfaceRequest.self, payload))
        case .updateRoutes:
            return try network.updateRoutes(decode(AgentUpdateRoutesRequest.self, payload))
        case .addARPNeighbors:
            try network.addNeighbours(decode(AgentAddARPNeighborsRequest.self, payload))
            return AgentEmpty()
        case .listInterfaces:
            return try network.listInterfaces()
        case .listRoutes:
            return try network.listRoutes()
        case .reseedRandomDev:
            let request = try decode(AgentReseedRandomDevRequest.self, payload)
            try CloneIdentity.reseed(Array(request.data), ownsTheMachine: sandbox.configuration.ownsTheMachine)
            return AgentEmpty()
        case .setGuestDateTime:
            let request = try decode(AgentSetGuestDateTimeRequest.self, payload)
            try CloneIdentity.setTime(seconds: request.sec, microseconds: request.usec, ownsTheMachine: sandbox.configuration.ownsTheMachine)
            return AgentEmpty()
        }
    }
}
