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
        var output: [Int32] = [-1, -1], errors: [Int32] = [-1, -1], ready: [Int32] = [-1, -1]
        defer { (output + errors + ready).filter { $0 >= 0 }.forEach { close($0) } }
        do {
            for index in 0..<3 {
                let pipe = try ChildProcess.closeOnExecPipe()
                switch index {
                case 0: output = [pipe.read, pipe.write]
                case 1: errors = [pipe.read, pipe.write]
                default: ready = [pipe.read, pipe.write]
                }
            }
        } catch {
            throw ShimError(.internalError, "pipes for the stdio logger: \(error)")
        }
        let environment = ProcessInfo.processInfo.environment
            .filter { $0.key != "CONTAINER_ID" && $0.key != "CONTAINER_NAMESPACE" }
            .map { "\($0.key)=\($0.value)" } + ["CONTAINER_ID=\(containerID)", "CONTAINER_NAMESPACE=\(namespace)"]
        let process: ChildProcess
        do {
            process = try ChildProcess(path, arguments, stdin: .null, stdout: .null, stderr: .inherit,
                                       passing: [output[0], errors[0], ready[1]], environment: environment)
        } catch {
            throw ShimError(.internalError, "stdio logger \(path): \(error)")
        }
        close(ready[1]); ready[1] = -1
        // Ready is the logger closing its end: end of file here (or its exit).
        var poller = pollfd(fd: ready[0], events: Int16(POLLIN), revents: 0)
        let deadline = Date().addingTimeInterval(readyTimeout)
        var signalled = false
        while !signalled, Date() < deadline {
            let waited = poll(&poller, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000)))
            if waited < 0 && errno == EINTR { continue }
            guard waited > 0 else { break }
            var scratch = [UInt8](repeating: 0, count: 64)
            signalled = read(ready[0], &scratch, scratch.count) <= 0
        }
        guard signalled else {
            process.terminate(grace: 1)
            throw ShimError(.internalError, "stdio logger \(path) did not signal ready (close descriptor 5) within \(Int(readyTimeout)) s")
        }
        if let status = process.wait(timeout: 0), status != 0 {
            throw ShimError(.internalError, "stdio logger \(path) \(ChildProcess.describe(waitStatus: status)) before the container started")
        }
        let logger = BinaryLogger(stdout: output[1], stderr: errors[1], process: process)
        output[1] = -1  // now the caller's
        errors[1] = -1
        return logger
    }
}
