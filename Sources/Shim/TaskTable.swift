import Foundation
import ShimProtocol

/// The shim's record of every process it manages: status, pid, exit, and who waits for
/// the exit. An actor: requests arrive concurrently.
actor TaskTable {
    struct Key: Hashable, Sendable {
        let containerID: String
        /// "" for the container's init process.
        let execID: String
    }

    struct Process: Sendable {
        var bundle: String
        var stdio: ShimStdio
        var pid: UInt32 = 0
        var status: Containerd_V1_Types_Status = .unknown
        var exitStatus: UInt32 = 0
        var exitedAt: Date?
    }

    private var processes: [Key: Process] = [:]
    private var exitWaiters: [Key: [CheckedContinuation<Void, Never>]] = [:]

    func add(_ key: Key, _ process: Process) throws(ShimError) {
        guard processes[key] == nil else {
            throw ShimError(.alreadyExists, key.execID.isEmpty ? "container \(key.containerID) already exists"
                                                               : "exec \(key.execID) already exists in \(key.containerID)")
        }
        if !key.execID.isEmpty && processes[Key(containerID: key.containerID, execID: "")] == nil {
            throw ShimError(.notFound, "container \(key.containerID) not found")
        }
        processes[key] = process
    }

    func process(_ key: Key) throws(ShimError) -> Process {
        guard let process = processes[key] else { throw Self.missing(key) }
        return process
    }

    func update(_ key: Key, _ change: (inout Process) -> Void) throws(ShimError) {
        guard var process = processes[key] else { throw Self.missing(key) }
        change(&process)
        processes[key] = process
    }

    /// Records an exit and wakes every Wait on it.
    func exited(_ key: Key, status: Int32, at date: Date) {
        guard var process = processes[key] else { return }
        process.status = .stopped
        process.exitStatus = UInt32(bitPattern: status)
        process.exitedAt = date
        processes[key] = process
        exitWaiters.removeValue(forKey: key)?.forEach { $0.resume() }
    }

    /// Returns once the process has exited (at once if it has).
    func waitForExit(_ key: Key) async throws(ShimError) -> Process {
        guard let process = processes[key] else { throw Self.missing(key) }
        if process.status == .stopped { return process }
        await withCheckedContinuation { exitWaiters[key, default: []].append($0) }
        return processes[key] ?? process
    }

    func remove(_ key: Key) -> Process? {
        exitWaiters.removeValue(forKey: key)?.forEach { $0.resume() }
        return processes.removeValue(forKey: key)
    }

    func keys(of containerID: String) -> [Key] {
        processes.keys.filter { $0.containerID == containerID }.sorted { $0.execID < $1.execID }
    }

    var containerCount: Int { processes.keys.filter { $0.execID.isEmpty }.count }

    static func missing(_ key: Key) -> ShimError {
        ShimError(.notFound, key.execID.isEmpty ? "container \(key.containerID) not found"
                                                : "exec \(key.execID) not found in \(key.containerID)")
    }
}
