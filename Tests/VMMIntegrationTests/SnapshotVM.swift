import Foundation

/// A kasa-vmm process for the snapshot tests: the console goes to a file the test reads,
/// the control socket is served, and the process is stopped (and reaped) by `stop`.
final class SnapshotVM {
    let process = Process()
    let console: String
    let errorLog: String
    let apiSocket: String

    /// `arguments` choose the machine (`--kernel ...` or `--restore DIR`); `name` names its files in `directory`.
    init(_ arguments: [String], name: String, directory: String) throws {
        console = directory + "/\(name).console"
        errorLog = directory + "/\(name).err"
        apiSocket = directory + "/\(name).api"
        _ = FileManager.default.createFile(atPath: errorLog, contents: nil)
        process.executableURL = URL(filePath: BadInputTests.executable)
        process.arguments = arguments + ["--no-stdin", "--console", console, "--api-socket", apiSocket]
        process.standardError = try FileHandle(forWritingTo: URL(filePath: errorLog))
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit { stop() }

    func stop() {
        // SIGTERM works although this thread blocks it: kasa-vmm clears its inherited mask.
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    var errors: String { (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? "" }
    var output: String { (try? String(contentsOfFile: console, encoding: .utf8)) ?? "" }

    /// The complete lines printed so far (the last, unfinished one left out).
    var lines: [String] {
        var all = output.components(separatedBy: "\n")
        all.removeLast()
        return all
    }

    /// Waits until `count` complete lines were printed; false if the process ended or time ran out.
    func waitForLines(_ count: Int, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && process.isRunning {
            if lines.count >= count { return true }
            usleep(20_000)
        }
        return lines.count >= count
    }

    /// One request on the control socket; the answer line.
    func ask(_ request: String, timeout: Double = 60) throws -> String {
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: apiSocket) && process.isRunning && Date() < deadline { usleep(20_000) }
        let client = try UnixSocketClient.connect(apiSocket)
        defer { client.close() }
        try client.write(Array((request + "\n").utf8))
        return try client.readLine(timeout: timeout).trimmingCharacters(in: .newlines)
    }
}
