import CLinux
import Foundation
import Testing

/// `kasa-vmm --user UID:GID`: after its jail and set-up the whole VMM runs as that user with
/// no supplementary groups, so a thread a guest subverts has neither root's uid nor its
/// capabilities: it cannot open root's files. Drives for slots then come from the runtime
/// as descriptors (SCM_RIGHTS); the same file by path is refused.
@Suite(.timeLimit(.minutes(20))) struct VMMUserTests {
    /// nobody/nogroup on Debian: a user the test need not create.
    static let uid: UInt32 = 65534, gid: UInt32 = 65534

    @Test func aVMMGivenAUserRunsEveryThreadAsItAndTakesDrivesAsDescriptors() throws {
        let directory = try VMMSeccompTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let boot = directory + "/boot.img", image = directory + "/app.img", socket = directory + "/api.sock"
        try FileManager.default.createDirectory(atPath: directory + "/jail", withIntermediateDirectories: false)
        for path in [boot, image] {
            try Data(count: 8 * 512).write(to: URL(filePath: path))
            // Root's alone, as the runtime's image cache keeps its files.
            chmod(path, 0o600)
        }
        let vmm = try VMMSeccompTests.VMMProcess(
            ["--kernel", try GuestBuilder.elf("echo"), "--vcpus", "2", "--drive", "path=\(boot),readonly=on", "--drive-slots", "1",
             "--api-socket", socket, "--jail", directory + "/jail", "--user", "\(Self.uid):\(Self.gid)"],
            directory: directory, name: "echo")
        defer { vmm.stop() }
        try #require(vmm.waitFor("ready"), "the guest never started: \(vmm.log)")
        let pid = vmm.process.processIdentifier
        var statuses: [(thread: String, fields: [String: String])] = []
        let deadline = Date().addingTimeInterval(10)
        repeat {
            statuses = try VMMSeccompTests.threadStatuses(pid)
            if statuses.allSatisfy({ $0.fields["Seccomp"] == "2" }) { break }
            usleep(50_000)
        } while Date() < deadline
        let names = Set(statuses.map(\.thread))
        #expect(names.isSuperset(of: ["kasa-vcpu0", "kasa-vcpu1", "kasa-events", "kasa-api"]), "threads: \(names)")
        let user = Array(repeating: String(Self.uid), count: 4).joined(separator: "\t")
        let group = Array(repeating: String(Self.gid), count: 4).joined(separator: "\t")
        for status in statuses {
            #expect(status.fields["Uid"] == user, "thread \(status.thread): Uid \(status.fields["Uid"] ?? "?")")
            #expect(status.fields["Gid"] == group, "thread \(status.thread): Gid \(status.fields["Gid"] ?? "?")")
            #expect(status.fields["Groups"] == "", "thread \(status.thread) keeps supplementary groups \(status.fields["Groups"] ?? "?")")
            #expect(status.fields["CapEff"] == "0000000000000000", "thread \(status.thread) keeps capabilities")
            #expect(status.fields["Seccomp"] == "2", "thread \(status.thread) has no seccomp filter")
        }
        // What it made at set-up is its user's: the runtime (root) still reaches it.
        let owner = try FileManager.default.attributesOfItem(atPath: socket)[.ownerAccountID] as? UInt
        #expect(owner == UInt(Self.uid), "the control socket belongs to \(owner.map(String.init) ?? "?")")

        let client = try UnixSocketClient.connect(socket)
        defer { client.close() }
        func ask(_ request: String, sending descriptor: Int32? = nil) throws -> String {
            let line = Array((request + "\n").utf8)
            if let descriptor {
                let sent = line.withUnsafeBytes { clinux_send_with_descriptor(client.descriptor, $0.baseAddress, UInt($0.count), descriptor) }
                try #require(sent == line.count, "sendmsg: \(String(cString: strerror(errno)))")
            } else {
                try client.write(line)
            }
            return try client.readLine(timeout: 30).trimmingCharacters(in: .newlines)
        }
        #expect(try ask(#"{"action":"attach-drive","path":"\#(image)"}"#).contains("Permission denied"),
                "a VMM running as \(Self.uid) opened root's 0600 image by itself")
        #expect(try ask(#"{"action":"attach-drive","path":"\#(image)","descriptor":true}"#).contains("no descriptor came"))
        let opened = open(image, O_RDONLY | O_CLOEXEC)
        try #require(opened >= 0)
        defer { close(opened) }
        #expect(try ask(#"{"action":"attach-drive","path":"\#(image)","descriptor":true}"#, sending: opened)
            == #"{"ok":true,"index":1,"device":"/dev/vdb"}"#)
        #expect(vmm.process.isRunning, "kasa-vmm stopped: \(vmm.log)")
    }

    /// Refused as usage errors, before anything else is looked at; so is a user without the
    /// capability drop (`--seccomp off`), which would leave every thread root's capabilities.
    @Test func aUserOfRootOrNotANumberOrWithoutTheFiltersIsRefused() throws {
        let cases: [([String], String)] = ["0:0", "1000", "kasa:kasa", "1000:0", ":1"].map {
            (["--user", $0], "invalid value '\($0)' for --user")
        } + [(["--user", "1000:1000", "--seccomp", "off"], "--user cannot be combined with --seccomp off")]
        for (arguments, message) in cases {
            let process = Process()
            process.executableURL = URL(filePath: BadInputTests.executable)
            // A kernel that is not there: an option let through fails on it instead, quickly.
            process.arguments = ["--kernel", "/nonexistent"] + arguments
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 2 && text.contains(message), "\(arguments): status \(process.terminationStatus), \(text)")
        }
    }
}
