import Foundation

/// Assembles the tiny test guests in Tests/guests with the host's gcc, once per test run.
enum GuestBuilder {
    static let sourceDirectory = URL(filePath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appending(path: "guests")
    static let outputDirectory: URL = {
        let directory = FileManager.default.temporaryDirectory.appending(path: "kasa-test-guests-\(getpid())")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Gone with the test process: every VMM that used a guest from it has ended by then.
        atexit { try? FileManager.default.removeItem(at: GuestBuilder.outputDirectory) }
        return directory
    }()

    enum Failure: Error, CustomStringConvertible {
        case toolFailed(String, String)
        var description: String {
            switch self {
            case .toolFailed(let command, let output): return "\(command) failed: \(output)"
            }
        }
    }

    /// An ELF guest linked at 1 MiB with Tests/guests/guest.ld.
    static func elf(_ name: String) throws -> String {
        let output = outputDirectory.appending(path: "\(name).elf").path
        try run("/usr/bin/gcc", ["-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments",
                                 "-Wl,-T," + sourceDirectory.appending(path: "guest.ld").path,
                                 "-o", output, sourceDirectory.appending(path: "\(name).S").path])
        return output
    }

    /// A flat binary (the bzImage guest).
    static func flat(_ name: String) throws -> String {
        let object = outputDirectory.appending(path: "\(name).o").path
        let output = outputDirectory.appending(path: "\(name).bin").path
        try run("/usr/bin/gcc", ["-c", "-o", object, sourceDirectory.appending(path: "\(name).S").path])
        try run("/usr/bin/objcopy", ["-O", "binary", "-j", ".text", object, output])
        return output
    }

    @discardableResult
    static func run(_ tool: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(filePath: tool)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw Failure.toolFailed(([tool] + arguments).joined(separator: " "), text)
        }
        return text
    }
}
