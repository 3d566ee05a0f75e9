import Foundation
@testable import Runtime

/// Fixtures for the runtime tests: a busybox rootfs directory, the kata-agent binary,
/// temporary directories, and what a run left on the host.
enum RuntimeTestSupport {
    static let packageRoot = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Missing: Error, CustomStringConvertible { let description: String }

    /// The static kata-agent (scripts/test.sh builds it for the agent initrd and exports
    /// KASA_TEST_AGENT), else whatever images/build-agent.sh has cached.
    static func agentExecutable() throws -> String {
        if let path = ProcessInfo.processInfo.environment["KASA_TEST_AGENT"], !path.isEmpty { return path }
        return try artifact(script: "images/build-agent.sh", what: "kata-agent")
    }

    static func artifact(_ variable: String? = nil, script: String, arguments: [String] = [], what: String) throws -> String {
        if let variable, let path = ProcessInfo.processInfo.environment[variable], !path.isEmpty { return path }
        let process = Process()
        process.executableURL = URL(filePath: "/bin/bash")
        process.arguments = [packageRoot.appending(path: script).path, "--print-path"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0, let path = output.split(separator: "\n").last.map(String.init), !path.isEmpty else {
            throw Missing(description: "\(what) has not been built: run `bash \(([script] + arguments).joined(separator: " "))` (scripts/test.sh does)")
        }
        return path
    }

    static func temporaryDirectory(_ prefix: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appending(path: "\(prefix)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A directory with a static busybox and its applets, /etc/passwd, and empty mount points.
    static func busyboxRootfs() throws -> String {
        let candidates: [String] = ["/bin/busybox", "/usr/bin/busybox"]
        guard let busybox = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw Missing(description: "busybox is not installed (scripts/install-deps.sh installs busybox-static)")
        }
        let root = try temporaryDirectory("kasa-runtime-rootfs")
        let fm = FileManager.default
        for directory in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
            try fm.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true)
        }
        try fm.copyItem(atPath: busybox, toPath: root + "/bin/busybox")
        for applet in ["sh", "echo", "cat", "sleep", "ls", "tty", "stty", "true", "false", "id", "hostname", "rm", "env", "test", "["] {
            try fm.createSymbolicLink(atPath: root + "/bin/" + applet, withDestinationPath: "busybox")
        }
        try "root:x:0:0:root:/root:/bin/sh\n".write(toFile: root + "/etc/passwd", atomically: true, encoding: .utf8)
        try "root:x:0:\n".write(toFile: root + "/etc/group", atomically: true, encoding: .utf8)
        try "data\n".write(toFile: root + "/etc/kasa-test", atomically: true, encoding: .utf8)
        return root
    }

    /// Processes whose command line mentions `text` (leftover agents or VMMs).
    static func processes(mentioning text: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid -> String? in
            guard Int(pid) != nil, Int32(pid) != getpid(),
                  let bytes = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !bytes.isEmpty else { return nil }
            let command = String(decoding: bytes.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return command.contains(text) ? "\(pid): \(command)" : nil
        }
    }
}

/// Host descriptors for a run's stdio, and what the workload wrote to them.
final class CapturedStdio: @unchecked Sendable {
    let input = Pipe()
    let output = Pipe()
    let error = Pipe()
    private let lock = NSLock()
    private var outputBytes = Data()
    private var errorBytes = Data()
    private let group = DispatchGroup()

    init(stdin text: String? = nil) {
        if let text { input.fileHandleForWriting.write(Data(text.utf8)) }
        try? input.fileHandleForWriting.close()
        for (pipe, isOutput) in [(output, true), (error, false)] {
            group.enter()
            // Read as it comes, so that a test can wait for what the workload says.
            Thread.detachNewThread { [self] in
                while true {
                    let data = pipe.fileHandleForReading.availableData
                    if data.isEmpty { break }
                    lock.withLock { if isOutput { outputBytes += data } else { errorBytes += data } }
                }
                group.leave()
            }
        }
    }

    var stdio: ContainerRun.Stdio {
        ContainerRun.Stdio(input: input.fileHandleForReading.fileDescriptor, output: output.fileHandleForWriting.fileDescriptor,
                           error: error.fileHandleForWriting.fileDescriptor)
    }

    /// Waits until the workload's stdout contains `text`; false if it did not within `timeout`.
    func waitForOutput(_ text: String, timeout: TimeInterval = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if lock.withLock({ String(decoding: outputBytes, as: UTF8.self).contains(text) }) { return true }
            usleep(20_000)
        }
        return false
    }

    /// Closes the write ends and returns everything written.
    func finish() -> (stdout: String, stderr: String) {
        try? output.fileHandleForWriting.close()
        try? error.fileHandleForWriting.close()
        group.wait()
        return lock.withLock { (String(decoding: outputBytes, as: UTF8.self), String(decoding: errorBytes, as: UTF8.self)) }
    }
}

/// Results gathered from several threads.
final class LockedArray<Element>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Element] = []
    func append(_ item: Element) { lock.lock(); items.append(item); lock.unlock() }
    var values: [Element] { lock.lock(); defer { lock.unlock() }; return items }
}
