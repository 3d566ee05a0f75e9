import AgentProtocol
import Foundation
@testable import Shim
import ShimProtocol
import SwiftProtobuf
import Testing

/// A runtime whose processes exit when the test says so.
actor FakeRuntime: ShimRuntime {
    struct Call: Equatable { let name: String; let id: String; let exec: String }
    private(set) var calls: [Call] = []
    private var exits: [String: Int32] = [:]
    private var waiters: [String: [CheckedContinuation<Int32, Never>]] = [:]
    private var nextPID: UInt32 = 100
    var failCreate = false

    func setFailCreate() { failCreate = true }

    private func record(_ name: String, _ id: String, _ exec: String = "") { calls.append(Call(name: name, id: id, exec: exec)) }

    func create(_ container: ShimContainerSpec) async throws -> UInt32 {
        record("create", container.id)
        if failCreate { throw ShimError(.invalidArgument, "rootfs \(container.bundle)/rootfs does not exist") }
        nextPID += 1
        return nextPID
    }

    func start(containerID: String, execID: String) async throws -> UInt32 {
        record("start", containerID, execID)
        nextPID += 1
        return nextPID
    }

    func wait(containerID: String, execID: String) async throws -> Int32 {
        let key = containerID + "/" + execID
        if let status = exits[key] { return status }
        return await withCheckedContinuation { waiters[key, default: []].append($0) }
    }

    /// The process `containerID/execID` exits with `status`.
    func exit(_ containerID: String, _ execID: String = "", status: Int32) {
        let key = containerID + "/" + execID
        exits[key] = status
        waiters.removeValue(forKey: key)?.forEach { $0.resume(returning: status) }
    }

    func signal(containerID: String, execID: String, signal: UInt32, all: Bool) async throws {
        record("signal \(signal)\(all ? " all" : "")", containerID, execID)
        exit(containerID, execID, status: 128 + Int32(signal))
    }

    func exec(containerID: String, execID: String, processJSON: [UInt8], stdio: ShimStdio) async throws {
        record("exec " + String(decoding: processJSON, as: UTF8.self), containerID, execID)
    }

    func resizePty(containerID: String, execID: String, rows: UInt32, columns: UInt32) async throws {
        record("resize \(rows)x\(columns)", containerID, execID)
    }

    func closeStdin(containerID: String, execID: String) async throws { record("closeStdin", containerID, execID) }
    func delete(containerID: String, execID: String) async throws { record("delete", containerID, execID) }
    func shutdown() async { record("shutdown", "") }

    func setPaused(containerID: String, _ paused: Bool) async throws { record(paused ? "pause" : "resume", containerID) }
    func update(containerID: String, resourcesJSON: [UInt8]) async throws {
        record("update " + String(decoding: resourcesJSON, as: UTF8.self), containerID)
    }
    func stats(containerID: String) async throws -> ShimContainerStats {
        var stats = ShimContainerStats()
        stats.cpuUsageMicroseconds = 1500
        stats.memoryUsageBytes = 4 << 20
        stats.memoryLimitBytes = 256 << 20
        stats.pids = 2
        return stats
    }
    private var oomKills: [String] = []
    private var oomWaiters: [CheckedContinuation<String, Never>] = []
    /// The OOM killer hits `containerID`.
    func oomKill(_ containerID: String) {
        if oomWaiters.isEmpty { oomKills.append(containerID) } else { oomWaiters.removeFirst().resume(returning: containerID) }
    }
    func nextOOMKill() async throws -> String {
        if !oomKills.isEmpty { return oomKills.removeFirst() }
        return await withCheckedContinuation { oomWaiters.append($0) }
    }

    /// Guest pids: one per started process of the container that has not exited.
    func processes(containerID: String) async throws -> [UInt32] {
        let running = calls.filter { $0.name == "start" && $0.id == containerID && exits[$0.id + "/" + $0.exec] == nil }
        return running.indices.map { UInt32(1 + $0) }
    }
}

actor RecordingPublisher: EventPublisher {
    private(set) var topics: [String] = []
    private(set) var exits: [Containerd_Events_TaskExit] = []
    private(set) var ooms: [String] = []

    func publish(topic: String, event: any SwiftProtobuf.Message) async {
        topics.append(topic)
        if let exit = event as? Containerd_Events_TaskExit { exits.append(exit) }
        if let oom = event as? Containerd_Events_TaskOOM { ooms.append(oom.containerID) }
    }
}

final class ShutdownFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

@Suite(.timeLimit(.minutes(1)))
struct TaskServiceTests {
    let runtime = FakeRuntime()
    let events = RecordingPublisher()
    let shutdown = ShutdownFlag()
    let service: TaskService

    init() {
        let flag = shutdown
        service = TaskService(runtime: runtime, events: events, shimPID: 4242, onShutdown: { flag.set() })
    }

    func call<Response: SwiftProtobuf.Message>(_ method: String, _ message: some SwiftProtobuf.Message,
                                                 _ type: Response.Type = Google_Protobuf_Empty.self) async throws -> Response {
        var request = TTRPCRequest()
        request.service = TaskService.serviceName
        request.method = method
        request.payload = try message.serializedData()
        let response = await service.handle(request)
        guard response.status.statusCode == .ok else {
            throw TTRPCCallError(code: response.status.statusCode, message: response.status.message)
        }
        return try Response(serializedBytes: [UInt8](response.payload))
    }

    func createRequest(_ id: String) -> Containerd_Task_V2_CreateTaskRequest {
        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = id
        create.bundle = "/run/containerd/bundles/" + id
        create.stdout = "/fifo/out"
        return create
    }

    /// `ctr run`: Create, Wait (before Start, and it must not block Start), Start, the
    /// exit, Delete, Shutdown; events in containerd's order.
    @Test func aContainerLifecycleInCtrRunsOrder() async throws {
        var create = createRequest("t1")
        create.terminal = true
        let created = try await call("Create", create, Containerd_Task_V2_CreateTaskResponse.self)
        #expect(created.pid > 0)

        var waitRequest = Containerd_Task_V2_WaitRequest()
        waitRequest.id = "t1"
        let waiting = Task { try await call("Wait", waitRequest, Containerd_Task_V2_WaitResponse.self) }

        var start = Containerd_Task_V2_StartRequest()
        start.id = "t1"
        let started = try await call("Start", start, Containerd_Task_V2_StartResponse.self)
        var stateRequest = Containerd_Task_V2_StateRequest()
        stateRequest.id = "t1"
        let running = try await call("State", stateRequest, Containerd_Task_V2_StateResponse.self)
        #expect(running.status == .running)
        #expect(running.pid == started.pid)
        #expect(running.terminal)
        #expect(running.stdout == "/fifo/out")

        await runtime.exit("t1", status: 3)
        let waited = try await waiting.value
        #expect(waited.exitStatus == 3)
        #expect(waited.exitedAt.seconds > 0)
        // The exit event is published by the task that saw the exit; let it finish.
        for _ in 0..<100 where await events.topics.count < 3 { try await Task.sleep(for: .milliseconds(10)) }
        let stopped = try await call("State", stateRequest, Containerd_Task_V2_StateResponse.self)
        #expect(stopped.status == .stopped)
        #expect(stopped.exitStatus == 3)

        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = "t1"
        let deleted = try await call("Delete", delete, Containerd_Task_V2_DeleteResponse.self)
        #expect(deleted.exitStatus == 3)
        #expect(deleted.pid == started.pid)
        #expect(await events.topics == [TaskTopic.create, TaskTopic.start, TaskTopic.exit, TaskTopic.delete])
        let exit = try #require(await events.exits.first)
        #expect(exit.containerID == "t1" && exit.id == "t1" && exit.exitStatus == 3 && exit.pid == started.pid)

        var shutdownRequest = Containerd_Task_V2_ShutdownRequest()
        shutdownRequest.id = "t1"
        _ = try await call("Shutdown", shutdownRequest)
        #expect(shutdown.isSet)
        #expect(await runtime.calls.last == FakeRuntime.Call(name: "shutdown", id: "", exec: ""))
    }

    /// `ctr task exec`: Exec (its spec JSON reaches the runtime), Start, exit; Kill.
    @Test func execKillAndPids() async throws {
        _ = try await call("Create", createRequest("t2"), Containerd_Task_V2_CreateTaskResponse.self)
        var start = Containerd_Task_V2_StartRequest()
        start.id = "t2"
        _ = try await call("Start", start, Containerd_Task_V2_StartResponse.self)

        var exec = Containerd_Task_V2_ExecProcessRequest()
        exec.id = "t2"
        exec.execID = "e1"
        exec.spec.typeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
        exec.spec.value = Data(#"{"args":["ls"]}"#.utf8)
        _ = try await call("Exec", exec)
        var startExec = Containerd_Task_V2_StartRequest()
        startExec.id = "t2"
        startExec.execID = "e1"
        _ = try await call("Start", startExec, Containerd_Task_V2_StartResponse.self)
        var pidsRequest = Containerd_Task_V2_PidsRequest()
        pidsRequest.id = "t2"
        #expect(try await call("Pids", pidsRequest, Containerd_Task_V2_PidsResponse.self).processes.count == 2)

        await runtime.exit("t2", "e1", status: 0)
        var waitExec = Containerd_Task_V2_WaitRequest()
        waitExec.id = "t2"
        waitExec.execID = "e1"
        #expect(try await call("Wait", waitExec, Containerd_Task_V2_WaitResponse.self).exitStatus == 0)

        var kill = Containerd_Task_V2_KillRequest()
        kill.id = "t2"
        kill.signal = 9
        kill.all = true
        _ = try await call("Kill", kill)
        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = "t2"
        #expect(try await call("Wait", wait, Containerd_Task_V2_WaitResponse.self).exitStatus == 137)
        let calls = await runtime.calls.map(\.name)
        #expect(calls.contains(#"exec {"args":["ls"]}"#))
        #expect(calls.contains("signal 9 all"))
        for _ in 0..<100 where await events.topics.count < 6 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(await events.topics == [TaskTopic.create, TaskTopic.start, TaskTopic.execAdded, TaskTopic.execStarted,
                                        TaskTopic.exit, TaskTopic.exit])
    }

    /// `ctr task pause/resume/update/metrics`: the runtime is asked, State follows, the
    /// paused and resumed events are published, and Stats answers with containerd's
    /// cgroup v2 metrics message under its bare type name. An OOM kill the runtime
    /// reports becomes a /tasks/oom event.
    @Test func pauseResumeUpdateAndStats() async throws {
        _ = try await call("Create", createRequest("t5"), Containerd_Task_V2_CreateTaskResponse.self)
        var pause = Containerd_Task_V2_PauseRequest()
        pause.id = "t5"
        let notStarted = await #expect(throws: TTRPCCallError.self) { _ = try await call("Pause", pause) }
        #expect(notStarted?.code == .failedPrecondition)
        var start = Containerd_Task_V2_StartRequest()
        start.id = "t5"
        _ = try await call("Start", start, Containerd_Task_V2_StartResponse.self)
        _ = try await call("Pause", pause)
        var stateRequest = Containerd_Task_V2_StateRequest()
        stateRequest.id = "t5"
        #expect(try await call("State", stateRequest, Containerd_Task_V2_StateResponse.self).status == .paused)
        let twice = await #expect(throws: TTRPCCallError.self) { _ = try await call("Pause", pause) }
        #expect(twice?.code == .failedPrecondition)
        var resume = Containerd_Task_V2_ResumeRequest()
        resume.id = "t5"
        _ = try await call("Resume", resume)
        #expect(try await call("State", stateRequest, Containerd_Task_V2_StateResponse.self).status == .running)

        var update = Containerd_Task_V2_UpdateTaskRequest()
        update.id = "t5"
        update.resources.typeURL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
        update.resources.value = Data(#"{"memory":{"limit":268435456}}"#.utf8)
        _ = try await call("Update", update)
        update.resources.typeURL = "types.containerd.io/opencontainers/runtime-spec/1/WindowsResources"
        let windows = await #expect(throws: TTRPCCallError.self) { _ = try await call("Update", update) }
        #expect(windows?.code == .invalidArgument)

        var statsRequest = Containerd_Task_V2_StatsRequest()
        statsRequest.id = "t5"
        let stats = try await call("Stats", statsRequest, Containerd_Task_V2_StatsResponse.self).stats
        #expect(stats.typeURL == "io.containerd.cgroups.v2.Metrics")
        let metrics = try Io_Containerd_Cgroups_V2_Metrics(serializedBytes: [UInt8](stats.value))
        #expect(metrics.memory.usage == 4 << 20 && metrics.memory.usageLimit == 256 << 20)
        #expect(metrics.cpu.usageUsec == 1500 && metrics.pids.current == 2)

        await runtime.oomKill("t5")
        for _ in 0..<100 where await events.topics.count < 5 { try await Task.sleep(for: .milliseconds(10)) }
        let calls = await runtime.calls.map(\.name)
        #expect(calls.contains("pause") && calls.contains("resume"))
        #expect(calls.contains(#"update {"memory":{"limit":268435456}}"#))
        #expect(await events.topics == [TaskTopic.create, TaskTopic.start, TaskTopic.paused, TaskTopic.resumed, TaskTopic.oom])
        #expect(await events.ooms == ["t5"])
    }

    @Test func badRequestsGetTheRightStatus() async throws {
        _ = try await call("Create", createRequest("t3"), Containerd_Task_V2_CreateTaskResponse.self)
        let duplicate = await #expect(throws: TTRPCCallError.self) {
            _ = try await call("Create", createRequest("t3"), Containerd_Task_V2_CreateTaskResponse.self)
        }
        #expect(duplicate?.code == .alreadyExists)
        var state = Containerd_Task_V2_StateRequest()
        state.id = "nope"
        let missing = await #expect(throws: TTRPCCallError.self) {
            _ = try await call("State", state, Containerd_Task_V2_StateResponse.self)
        }
        #expect(missing?.code == .notFound)
        var start = Containerd_Task_V2_StartRequest()
        start.id = "t3"
        _ = try await call("Start", start, Containerd_Task_V2_StartResponse.self)
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = "t3"
        let running = await #expect(throws: TTRPCCallError.self) {
            _ = try await call("Delete", delete, Containerd_Task_V2_DeleteResponse.self)
        }
        #expect(running?.code == .failedPrecondition)
        let unimplemented = await #expect(throws: TTRPCCallError.self) {
            _ = try await call("Checkpoint", Containerd_Task_V2_CheckpointTaskRequest())
        }
        #expect(unimplemented?.code == .unimplemented)

        var garbage = TTRPCRequest()
        garbage.service = TaskService.serviceName
        garbage.method = "Create"
        garbage.payload = Data([0xff, 0xff, 0xff])
        #expect(await service.handle(garbage).status.statusCode == .invalidArgument)

        await runtime.setFailCreate()
        let failed = await #expect(throws: TTRPCCallError.self) {
            _ = try await call("Create", createRequest("t4"), Containerd_Task_V2_CreateTaskResponse.self)
        }
        #expect(failed?.code == .invalidArgument)
        #expect(failed?.message.contains("does not exist") == true)
        state.id = "t4"
        let gone = await #expect(throws: TTRPCCallError.self) { _ = try await call("State", state, Containerd_Task_V2_StateResponse.self) }
        #expect(gone?.code == .notFound, "a failed Create leaves no task behind")
    }
}
