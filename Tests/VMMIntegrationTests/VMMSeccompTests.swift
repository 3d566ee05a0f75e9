import Foundation
import Testing

/// kasa-vmm's confinement seen from outside, as an operator would check it: every thread of
/// a running VMM has a seccomp filter, no_new_privs and no capabilities, and a system call
/// the guest provokes outside the filter ends that VMM (only that one) or, in log mode, is
/// named and refused.
// The limit is generous on purpose: a synchronous test waits for a cooperative-pool thread,
// and on a 2-core machine the real-kernel tests hold both for minutes (a full suite run
// timed all of these out, waiting, after 300 s). Every wait inside is bounded on its own
// (a minute at most), so a hang still fails with its own message.
@Suite(.timeLimit(.minutes(20))) struct VMMSeccompTests {
    final class VMMProcess {
        let process = Process()
        let logPath: String

        init(_ arguments: [String], hook: Bool = false, directory: String, name: String) throws {
            logPath = directory + "/\(name).log"
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            process.executableURL = URL(filePath: BadInputTests.executable)
            process.arguments = arguments + ["--no-stdin"]
            var environment = ProcessInfo.processInfo.environment
            environment["KASA_VMM_TEST_HOOK"] = hook ? "forbidden-syscall" : nil
            process.environment = environment
            process.standardOutput = try FileHandle(forWritingTo: URL(filePath: logPath))
            process.standardError = process.standardOutput
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

        /// Waits up to `seconds` for `text` in the output (console and stderr share the file).
        func waitFor(_ text: String, seconds: Double = 60) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if log.contains(text) { return true }
                if !process.isRunning { return log.contains(text) }
                usleep(20_000)
            }
            return false
        }

        func stop() {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
    }

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appending(path: "kasa-seccomp-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// "Name:\tvalue" lines of /proc/<pid>/task/<tid>/status for every thread.
    static func threadStatuses(_ pid: Int32) throws -> [(thread: String, fields: [String: String])] {
        let tasks = "/proc/\(pid)/task"
        return try FileManager.default.contentsOfDirectory(atPath: tasks).sorted().map { tid in
            let text = try String(contentsOfFile: "\(tasks)/\(tid)/status", encoding: .utf8)
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            return (fields["Name"] ?? tid, fields)
        }
    }

    @Test func everyThreadIsFilteredWithoutPrivileges() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Two vCPUs, the control socket and the event loop: every kind of thread a VM without
        // virtio-fs has once it runs (echo waits on its console).
        let vmm = try VMMProcess(["--kernel", try GuestBuilder.elf("echo"), "--vcpus", "2",
                                  "--api-socket", directory + "/api.sock"], directory: directory, name: "echo")
        defer { vmm.stop() }
        try #require(vmm.waitFor("ready"), "the guest never started: \(vmm.log)")
        // The main thread loads its filter just after starting the rest; give it a moment.
        var statuses: [(thread: String, fields: [String: String])] = []
        let deadline = Date().addingTimeInterval(10)
        repeat {
            statuses = try Self.threadStatuses(vmm.process.processIdentifier)
            if statuses.allSatisfy({ $0.fields["Seccomp"] == "2" }) { break }
            usleep(50_000)
        } while Date() < deadline
        // Namespaces of its own for IPC and the host name; the rest are still the host's.
        let own = getpid()
        for namespace in ["ipc", "uts"] {
            let vmmNamespace = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(vmm.process.processIdentifier)/ns/\(namespace)")
            let testNamespace = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(own)/ns/\(namespace)")
            #expect(vmmNamespace != testNamespace, "kasa-vmm shares the \(namespace) namespace")
        }
        let limits = try String(contentsOfFile: "/proc/\(vmm.process.processIdentifier)/limits", encoding: .utf8)
        let core = limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") }
        #expect(core?.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).prefix(2) == ["0", "0"],
                "kasa-vmm may write core files: \(core ?? "")")
        let names = Set(statuses.map(\.thread))
        #expect(names.isSuperset(of: ["kasa-vcpu0", "kasa-vcpu1", "kasa-events", "kasa-api"]), "threads: \(names)")
        for status in statuses {
            #expect(status.fields["Seccomp"] == "2", "thread \(status.thread) has no seccomp filter")
            #expect(status.fields["NoNewPrivs"] == "1", "thread \(status.thread) may gain privileges")
            #expect(status.fields["CapEff"] == "0000000000000000", "thread \(status.thread) keeps capabilities")
            #expect(status.fields["CapPrm"] == "0000000000000000", "thread \(status.thread) could take capabilities back")
        }
    }

    @Test func aForbiddenCallKillsOnlyThatVMM() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bystander = try VMMProcess(["--kernel", try GuestBuilder.elf("echo")], directory: directory, name: "bystander")
        defer { bystander.stop() }
        let offender = try VMMProcess(["--kernel", try GuestBuilder.elf("forbidden")], hook: true, directory: directory, name: "offender")
        defer { offender.stop() }
        // Bounded: a VMM the filter failed to kill must fail the test, not hang it.
        let deadline = Date().addingTimeInterval(60)
        while offender.process.isRunning && Date() < deadline { usleep(20_000) }
        try #require(!offender.process.isRunning, "the forbidden call did not end kasa-vmm: \(offender.log)")
        #expect(offender.process.terminationReason == .uncaughtSignal && offender.process.terminationStatus == SIGSYS,
                "kasa-vmm should die of SIGSYS; it ended with \(offender.process.terminationStatus): \(offender.log)")
        #expect(offender.log.contains("calling the hook"))
        #expect(!offender.log.contains("still running"), "the guest went on after the forbidden call")
        #expect(!offender.log.contains("opened an IPv4 socket"))
        #expect(bystander.waitFor("ready") && bystander.process.isRunning, "the other VMM must not be touched: \(bystander.log)")
    }

    @Test func logModeNamesTheCallAndRefusesIt() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vmm = try VMMProcess(["--kernel", try GuestBuilder.elf("forbidden"), "--seccomp", "log"], hook: true,
                                 directory: directory, name: "log")
        defer { vmm.stop() }
        #expect(vmm.waitFor("still running"), "the guest should go on in log mode: \(vmm.log)")
        #expect(vmm.log.contains("kasa-vmm: seccomp: thread kasa-vcpu0 made system call socket (41)"), "\(vmm.log)")
        #expect(vmm.log.contains("socket(AF_INET) failed: Function not implemented"), "\(vmm.log)")
        #expect(vmm.process.isRunning)
    }

    @Test func offLeavesTheThreadsUnfiltered() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vmm = try VMMProcess(["--kernel", try GuestBuilder.elf("forbidden"), "--seccomp", "off"], hook: true,
                                 directory: directory, name: "off")
        defer { vmm.stop() }
        #expect(vmm.waitFor("still running"), "\(vmm.log)")
        #expect(vmm.log.contains("opened an IPv4 socket"), "\(vmm.log)")
        #expect(try Self.threadStatuses(vmm.process.processIdentifier).allSatisfy { $0.fields["Seccomp"] == "0" })
    }
}
