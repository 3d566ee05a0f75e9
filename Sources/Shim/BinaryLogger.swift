import Foundation
import Runtime

/// A containerd `binary://` stdio logger: the program the URI names runs beside the
/// container, reading its stdout on descriptor 3 and its stderr on descriptor 4 (pipes),
/// with CONTAINER_ID and CONTAINER_NAMESPACE in its environment; it closes descriptor 5
/// when it is ready, and the container starts only after that. The URI's query
/// parameters are its arguments, each name followed by its value when it has one
/// (`binary:///usr/bin/logger?--tag=web&-v` runs `logger --tag web -v`).
struct BinaryLogger {
    /// Our ends: the container's output is written here.
    let stdout: Int32
    let stderr: Int32
    let process: ChildProcess

    static func isLogger(_ uri: String) -> Bool { uri.hasPrefix("binary://") }

    static func start(uri: String, containerID: String, namespace: String, readyTimeout: Double = 10) throws -> BinaryLogger {
        guard let components = URLComponents(string: uri), components.scheme == "binary",
              components.path.hasPrefix("/") else {
            throw ShimError(.invalidArgument, "stdio URI \(uri): want binary:///absolute/path[?arguments]")
        }
        let path = components.path
        guard access(path, X_OK) == 0 else {
            throw ShimError(.invalidArgument, "stdio logger \(path) is not an executable file: \(String(cString: strerror(errno)))")
        }
        let arguments = (components.queryItems ?? []).flatMap { item -> [String] in
            guard let value = item.value, !value.isEmpty else { return [item.name] }
            return [item.name, value]
        }
        // Every descriptor made here is closed on the way out except the two write ends
        // handed to the caller.
        var owned: [Int32] = []
        defer { owned.forEach { close($0) } }
        func makePipe() throws -> (read: Int32, write: Int32) {
            do {
                let pipe = try ChildProcess.closeOnExecPipe()
                owned += [pipe.read, pipe.write]
                return pipe
            } catch {
                throw ShimError(.internalError, "pipes for the stdio logger: \(error)")
            }
        }
        let output = try makePipe(), errors = try makePipe(), ready = try makePipe()
        let environment = ProcessInfo.processInfo.environment
            .filter { $0.key != "CONTAINER_ID" && $0.key != "CONTAINER_NAMESPACE" }
            .map { "\($0.key)=\($0.value)" } + ["CONTAINER_ID=\(containerID)", "CONTAINER_NAMESPACE=\(namespace)"]
        let process: ChildProcess
        do {
            process = try ChildProcess(path, arguments, stdin: .null, stdout: .null, stderr: .inherit,
                                       passing: [output.read, errors.read, ready.write], environment: environment)
        } catch {
            throw ShimError(.internalError, "stdio logger \(path): \(error)")
        }
        // Only the logger may hold the ready pipe's write end: its closing is the signal.
        close(ready.write)
        owned.removeAll { $0 == ready.write }
        // Ready is the logger closing its end: end of file here (or its exit).
        var poller = pollfd(fd: ready.read, events: Int16(POLLIN), revents: 0)
        let deadline = Date().addingTimeInterval(readyTimeout)
        var signalled = false
        while !signalled, Date() < deadline {
            let waited = poll(&poller, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000)))
            if waited < 0 && errno == EINTR { continue }
            guard waited > 0 else { break }
            var scratch = [UInt8](repeating: 0, count: 64)
            signalled = read(ready.read, &scratch, scratch.count) <= 0
        }
        guard signalled else {
            process.terminate(grace: 1)
            throw ShimError(.internalError, "stdio logger \(path) did not signal ready (close descriptor 5) within \(Int(readyTimeout)) s")
        }
        if let status = process.wait(timeout: 0), status != 0 {
            throw ShimError(.internalError, "stdio logger \(path) \(ChildProcess.describe(waitStatus: status)) before the container started")
        }
        owned.removeAll { $0 == output.write || $0 == errors.write }  // now the caller's
        return BinaryLogger(stdout: output.write, stderr: errors.write, process: process)
    }
}
