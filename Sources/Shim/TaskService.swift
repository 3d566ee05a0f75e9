import AgentProtocol
import Foundation
import ShimProtocol
import SwiftProtobuf
import TTRPCNIO

/// containerd's `containerd.task.v2.Task` service: decodes each request, keeps the task
/// table, drives the runtime, and publishes the task events in containerd's order
/// (create, start, exec-added, exec-started, exit, delete).
public final class TaskService: TTRPCService {
    public static let serviceName = "containerd.task.v2.Task"

    let runtime: any ShimRuntime
    let events: any EventPublisher
    let shimPID: UInt32
    /// Called after a Shutdown that leaves nothing to serve (the daemon exits).
    let onShutdown: @Sendable () -> Void
    let table = TaskTable()
    private let oomWatch = OOMWatch()

    public init(runtime: any ShimRuntime, events: any EventPublisher, shimPID: UInt32,
                onShutdown: @escaping @Sendable () -> Void) {
        self.runtime = runtime
        self.events = events
        self.shimPID = shimPID
        self.onShutdown = onShutdown
    }

    public func handle(_ request: TTRPCRequest) async -> TTRPCResponse {
        guard request.service == Self.serviceName else {
            return TTRPCResponse(code: .unimplemented, message: "service \(request.service) is not served here")
        }
        do {
            let payload = [UInt8](request.payload)
            let response: any SwiftProtobuf.Message
            switch request.method {
            case "Create": response = try await create(Containerd_Task_V2_CreateTaskRequest(serializedBytes: payload))
            case "Start": response = try await start(Containerd_Task_V2_StartRequest(serializedBytes: payload))
            case "State": response = try await state(Containerd_Task_V2_StateRequest(serializedBytes: payload))
            case "Wait": response = try await wait(Containerd_Task_V2_WaitRequest(serializedBytes: payload))
            case "Kill": response = try await kill(Containerd_Task_V2_KillRequest(serializedBytes: payload))
            case "Exec": response = try await exec(Containerd_Task_V2_ExecProcessRequest(serializedBytes: payload))
            case "ResizePty": response = try await resize(Containerd_Task_V2_ResizePtyRequest(serializedBytes: payload))
            case "CloseIO": response = try await closeIO(Containerd_Task_V2_CloseIORequest(serializedBytes: payload))
            case "Delete": response = try await delete(Containerd_Task_V2_DeleteRequest(serializedBytes: payload))
            case "Pids": response = try await pids(Containerd_Task_V2_PidsRequest(serializedBytes: payload))
            case "Connect": response = try await connect(Containerd_Task_V2_ConnectRequest(serializedBytes: payload))
            case "Shutdown": response = try await shutdown(Containerd_Task_V2_ShutdownRequest(serializedBytes: payload))
            case "Pause": response = try await setPaused(Containerd_Task_V2_PauseRequest(serializedBytes: payload).id, true)
            case "Resume": response = try await setPaused(Containerd_Task_V2_ResumeRequest(serializedBytes: payload).id, false)
            case "Update": response = try await update(Containerd_Task_V2_UpdateTaskRequest(serializedBytes: payload))
            case "Stats": response = try await stats(Containerd_Task_V2_StatsRequest(serializedBytes: payload))
            case "Checkpoint":
                return TTRPCResponse(code: .unimplemented, message: "Checkpoint: a VM sandbox cannot be checkpointed by the Kasa shim")
            default:
                return TTRPCResponse(code: .unimplemented, message: "unknown method \(request.method)")
            }
            return try TTRPCResponse(message: response)
        } catch let error as ShimError {
            return TTRPCResponse(code: error.kind.statusCode, message: error.message)
        } catch let error as SwiftProtobuf.BinaryDecodingError {
            return TTRPCResponse(code: .invalidArgument, message: "\(request.method): malformed request: \(error)")
        } catch {
            return TTRPCResponse(code: .internal, message: "\(request.method): \(error)")
        }
    }

    // MARK: Methods

    func create(_ request: Containerd_Task_V2_CreateTaskRequest) async throws -> Containerd_Task_V2_CreateTaskResponse {
        guard !request.id.isEmpty else { throw ShimError(.invalidArgument, "Create: empty id") }
        let key = TaskTable.Key(containerID: request.id, execID: "")
        let stdio = ShimStdio(stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal)
        try await table.add(key, TaskTable.Process(bundle: request.bundle, stdio: stdio))
        let pid: UInt32
        do {
            pid = try await runtime.create(ShimContainerSpec(
                id: request.id, bundle: request.bundle,
                rootfsMounts: request.rootfs.map { ShimMount(type: $0.type, source: $0.source, options: $0.options) },
                stdio: stdio))
        } catch {
            _ = await table.remove(key)
            throw error
        }
        try await table.update(key) { $0.pid = pid; $0.status = .created }
        if await oomWatch.begin() { watchOOMKills() }
        var event = Containerd_Events_TaskCreate()
        event.containerID = request.id
        event.bundle = request.bundle
        event.rootfs = request.rootfs
        event.io.stdin = request.stdin
        event.io.stdout = request.stdout
        event.io.stderr = request.stderr
        event.io.terminal = request.terminal
        event.pid = pid
        await events.publish(topic: TaskTopic.create, event: event)
        var response = Containerd_Task_V2_CreateTaskResponse()
        response.pid = pid
        return response
    }

    func start(_ request: Containerd_Task_V2_StartRequest) async throws -> Containerd_Task_V2_StartResponse {
        let key = TaskTable.Key(containerID: request.id, execID: request.execID)
        let process = try await table.process(key)
        guard process.status == .created else {
            throw ShimError(.failedPrecondition, "\(describe(key)) is \(process.status), not created")
        }
        let pid = try await runtime.start(containerID: key.containerID, execID: key.execID)
        try await table.update(key) { $0.pid = pid; $0.status = .running }
        if key.execID.isEmpty {
            var event = Containerd_Events_TaskStart()
            event.containerID = key.containerID
            event.pid = pid
            await events.publish(topic: TaskTopic.start, event: event)
        } else {
            var event = Containerd_Events_TaskExecStarted()
            event.containerID = key.containerID
            event.execID = key.execID
            event.pid = pid
            await events.publish(topic: TaskTopic.execStarted, event: event)
        }
        // The exit is awaited in the background: Start answers now.
        Task { [self] in
            let status = (try? await runtime.wait(containerID: key.containerID, execID: key.execID)) ?? 255
            let now = Date()
            await table.exited(key, status: status, at: now)
            var event = Containerd_Events_TaskExit()
            event.containerID = key.containerID
            event.id = key.execID.isEmpty ? key.containerID : key.execID
            event.pid = pid
            event.exitStatus = UInt32(bitPattern: status)
            event.exitedAt = Google_Protobuf_Timestamp(date: now)
            await events.publish(topic: TaskTopic.exit, event: event)
        }
        var response = Containerd_Task_V2_StartResponse()
        response.pid = pid
        return response
    }

    func state(_ request: Containerd_Task_V2_StateRequest) async throws -> Containerd_Task_V2_StateResponse {
        let key = TaskTable.Key(containerID: request.id, execID: request.execID)
        let process = try await table.process(key)
        var response = Containerd_Task_V2_StateResponse()
        response.id = key.containerID
        response.execID = key.execID
        response.bundle = process.bundle
        response.pid = process.pid
        response.status = process.status
        response.stdin = process.stdio.stdin
        response.stdout = process.stdio.stdout
        response.stderr = process.stdio.stderr
        response.terminal = process.stdio.terminal
        response.exitStatus = process.exitStatus
        if let exitedAt = process.exitedAt { response.exitedAt = Google_Protobuf_Timestamp(date: exitedAt) }
        return response
    }

    func wait(_ request: Containerd_Task_V2_WaitRequest) async throws -> Containerd_Task_V2_WaitResponse {
        let process = try await table.waitForExit(TaskTable.Key(containerID: request.id, execID: request.execID))
        var response = Containerd_Task_V2_WaitResponse()
        response.exitStatus = process.exitStatus
        response.exitedAt = Google_Protobuf_Timestamp(date: process.exitedAt ?? Date())
        return response
    }

    func kill(_ request: Containerd_Task_V2_KillRequest) async throws -> Google_Protobuf_Empty {
        let key = TaskTable.Key(containerID: request.id, execID: request.execID)
        let process = try await table.process(key)
        switch process.status {
        case .running, .paused, .pausing:
            try await runtime.signal(containerID: key.containerID, execID: key.execID, signal: request.signal, all: request.all)
        case .created:
            // Never started: nothing runs; it ends as if killed by the signal.
            await table.exited(key, status: 128 + Int32(request.signal), at: Date())
        default:
            break  // already stopped: containerd's `kill` of an exited task is not an error
        }
        return Google_Protobuf_Empty()
    }

    func exec(_ request: Containerd_Task_V2_ExecProcessRequest) async throws -> Google_Protobuf_Empty {
        guard !request.execID.isEmpty else { throw ShimError(.invalidArgument, "Exec: empty exec_id") }
        let key = TaskTable.Key(containerID: request.id, execID: request.execID)
        let container = try await table.process(TaskTable.Key(containerID: request.id, execID: ""))
        guard container.status == .running else {
            throw ShimError(.failedPrecondition, "container \(request.id) is not running")
        }
        let stdio = ShimStdio(stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal)
        try await table.add(key, TaskTable.Process(bundle: container.bundle, stdio: stdio))
        do {
            try await runtime.exec(containerID: request.id, execID: request.execID, processJSON: [UInt8](request.spec.value), stdio: stdio)
        } catch {
            _ = await table.remove(key)
            throw error
        }
        try await table.update(key) { $0.status = .created }
        var event = Containerd_Events_TaskExecAdded()
        event.containerID = request.id
        event.execID = request.execID
        await events.publish(topic: TaskTopic.execAdded, event: event)
        return Google_Protobuf_Empty()
    }

    func resize(_ request: Containerd_Task_V2_ResizePtyRequest) async throws -> Google_Protobuf_Empty {
        _ = try await table.process(TaskTable.Key(containerID: request.id, execID: request.execID))
        try await runtime.resizePty(containerID: request.id, execID: request.execID, rows: request.height, columns: request.width)
        return Google_Protobuf_Empty()
    }

    func closeIO(_ request: Containerd_Task_V2_CloseIORequest) async throws -> Google_Protobuf_Empty {
        _ = try await table.process(TaskTable.Key(containerID: request.id, execID: request.execID))
        if request.stdin {
            try await runtime.closeStdin(containerID: request.id, execID: request.execID)
        }
        return Google_Protobuf_Empty()
    }

    func delete(_ request: Containerd_Task_V2_DeleteRequest) async throws -> Containerd_Task_V2_DeleteResponse {
        let key = TaskTable.Key(containerID: request.id, execID: request.execID)
        let process = try await table.process(key)
        guard process.status == .stopped || process.status == .created else {
            throw ShimError(.failedPrecondition, "\(describe(key)) is still running: kill it first")
        }
        if key.execID.isEmpty {
            let execs = await table.keys(of: key.containerID).filter { !$0.execID.isEmpty }
            for exec in execs { _ = await table.remove(exec) }
        }
        try await runtime.delete(containerID: key.containerID, execID: key.execID)
        _ = await table.remove(key)
        let exitedAt = Google_Protobuf_Timestamp(date: process.exitedAt ?? Date())
        if key.execID.isEmpty {
            var event = Containerd_Events_TaskDelete()
            event.containerID = key.containerID
            event.id = key.containerID
            event.pid = process.pid
            event.exitStatus = process.exitStatus
            event.exitedAt = exitedAt
            await events.publish(topic: TaskTopic.delete, event: event)
        }
        var response = Containerd_Task_V2_DeleteResponse()
        response.pid = process.pid
        response.exitStatus = process.exitStatus
        response.exitedAt = exitedAt
        return response
    }

    /// The container's processes as the guest numbers them (the host has none of them).
    func pids(_ request: Containerd_Task_V2_PidsRequest) async throws -> Containerd_Task_V2_PidsResponse {
        let container = try await table.process(TaskTable.Key(containerID: request.id, execID: ""))
        var response = Containerd_Task_V2_PidsResponse()
        guard container.status == .running || container.status == .paused else { return response }
        for pid in try await runtime.processes(containerID: request.id) {
            var info = Containerd_V1_Types_ProcessInfo()
            info.pid = pid
            response.processes.append(info)
        }
        return response
    }

    func setPaused(_ id: String, _ paused: Bool) async throws -> Google_Protobuf_Empty {
        let key = TaskTable.Key(containerID: id, execID: "")
        let process = try await table.process(key)
        guard process.status == (paused ? .running : .paused) else {
            throw ShimError(.failedPrecondition, "container \(id) is \(process.status), not \(paused ? "running" : "paused")")
        }
        try await runtime.setPaused(containerID: id, paused)
        try await table.update(key) { if $0.status != .stopped { $0.status = paused ? .paused : .running } }
        if paused {
            var event = Containerd_Events_TaskPaused()
            event.containerID = id
            await events.publish(topic: TaskTopic.paused, event: event)
        } else {
            var event = Containerd_Events_TaskResumed()
            event.containerID = id
            await events.publish(topic: TaskTopic.resumed, event: event)
        }
        return Google_Protobuf_Empty()
    }

    func update(_ request: Containerd_Task_V2_UpdateTaskRequest) async throws -> Google_Protobuf_Empty {
        let process = try await table.process(TaskTable.Key(containerID: request.id, execID: ""))
        guard process.status == .running || process.status == .paused else {
            throw ShimError(.failedPrecondition, "container \(request.id) is \(process.status): only a running container is updated")
        }
        guard request.hasResources, !request.resources.value.isEmpty else {
            throw ShimError(.invalidArgument, "Update: no resources given")
        }
        guard request.resources.typeURL.hasSuffix("LinuxResources") else {
            throw ShimError(.invalidArgument, "Update: resources of type \(request.resources.typeURL) are not OCI LinuxResources")
        }
        try await runtime.update(containerID: request.id, resourcesJSON: [UInt8](request.resources.value))
        return Google_Protobuf_Empty()
    }

    /// containerd's cgroup v2 metrics message, in an Any with the bare type name its
    /// typeurl package resolves.
    func stats(_ request: Containerd_Task_V2_StatsRequest) async throws -> Containerd_Task_V2_StatsResponse {
        _ = try await table.process(TaskTable.Key(containerID: request.id, execID: ""))
        let stats = try await runtime.stats(containerID: request.id)
        var metrics = Io_Containerd_Cgroups_V2_Metrics()
        metrics.pids.current = stats.pids
        metrics.pids.limit = stats.pidsLimit
        metrics.cpu.usageUsec = stats.cpuUsageMicroseconds
        metrics.cpu.userUsec = stats.cpuUserMicroseconds
        metrics.cpu.systemUsec = stats.cpuSystemMicroseconds
        metrics.memory.usage = stats.memoryUsageBytes
        metrics.memory.usageLimit = stats.memoryLimitBytes
        var response = Containerd_Task_V2_StatsResponse()
        response.stats.typeURL = Io_Containerd_Cgroups_V2_Metrics.protoMessageName
        response.stats.value = try metrics.serializedData()
        return response
    }

    func connect(_ request: Containerd_Task_V2_ConnectRequest) async throws -> Containerd_Task_V2_ConnectResponse {
        let process = try await table.process(TaskTable.Key(containerID: request.id, execID: ""))
        var response = Containerd_Task_V2_ConnectResponse()
        response.shimPid = shimPID
        response.taskPid = process.pid
        response.version = "kasa 0.1.0"
        return response
    }

    func shutdown(_ request: Containerd_Task_V2_ShutdownRequest) async throws -> Google_Protobuf_Empty {
        // One shim serves a pod: it stays while any container remains.
        if await table.containerCount == 0 || request.now {
            await runtime.shutdown()
            onShutdown()
        }
        return Google_Protobuf_Empty()
    }

    /// Publishes `/tasks/oom` for each OOM kill the sandbox reports, for the shim's life
    /// (it exits once its last container is gone). The first Create starts it.
    private func watchOOMKills() {
        Task { [self] in
            while true {
                do {
                    let id = try await runtime.nextOOMKill()
                    var event = Containerd_Events_TaskOOM()
                    event.containerID = id
                    await events.publish(topic: TaskTopic.oom, event: event)
                } catch {
                    try? await Task.sleep(for: .seconds(1))  // the sandbox is starting or gone
                }
            }
        }
    }

    private func describe(_ key: TaskTable.Key) -> String {
        key.execID.isEmpty ? "container \(key.containerID)" : "exec \(key.execID) of \(key.containerID)"
    }
}

extension ShimError.Kind {
    var statusCode: TTRPCStatusCode {
        switch self {
        case .notFound: .notFound
        case .alreadyExists: .alreadyExists
        case .failedPrecondition: .failedPrecondition
        case .invalidArgument: .invalidArgument
        case .unimplemented: .unimplemented
        case .internalError: .internal
        }
    }
}

/// Whether the OOM watcher was started: one per shim.
actor OOMWatch {
    private var started = false
    /// True the first time only: the caller starts the watcher.
    func begin() -> Bool {
        defer { started = true }
        return !started
    }
}
