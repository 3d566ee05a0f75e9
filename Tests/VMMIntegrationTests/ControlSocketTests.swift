import Foundation
import Testing

/// kasa-vmm's `--api-socket` with `--drive-slots`, through the binary with a tiny guest
/// (echo, which waits on its console): images go into empty slots and come out again,
/// and every bad request gets `{"ok":false,...}` while the VM keeps running.
@Suite(.timeLimit(.minutes(20))) struct ControlSocketTests {
    @Test func drivesGoIntoSlotsAndBadRequestsAreAnswered() throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "kasa-api-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let boot = directory + "/boot.img", image = directory + "/app.img", odd = directory + "/odd.img"
        for path in [boot, image] { try Data(count: 8 * 512).write(to: URL(filePath: path)) }
        try Data(count: 700).write(to: URL(filePath: odd))
        let socket = directory + "/api.sock"

        let process = Process()
        process.executableURL = URL(filePath: BadInputTests.executable)
        process.arguments = ["--kernel", try GuestBuilder.elf("echo"), "--no-stdin", "--console", "none",
                             "--drive", "path=\(boot),readonly=on", "--drive-slots", "2", "--api-socket", socket]
        let errorLog = directory + "/kasa-vmm.log"
        _ = FileManager.default.createFile(atPath: errorLog, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(filePath: errorLog))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer {
            // SIGTERM works although this thread blocks it: kasa-vmm clears its inherited mask.
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: socket) && process.isRunning && Date() < deadline { usleep(20_000) }
        // (Never read a pipe in a message: Swift Testing evaluates it, and a pipe blocks.)
        let log = { (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? "" }
        try #require(process.isRunning && FileManager.default.fileExists(atPath: socket), "kasa-vmm: \(log())")
        let mode = try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? Int
        #expect(mode == 0o600, "the control socket is only for the VMM's user")

        let client = try UnixSocketClient.connect(socket)
        defer { client.close() }
        func ask(_ request: String) throws -> String {
            try client.write(Array((request + "\n").utf8))
            return try client.readLine(timeout: 30).trimmingCharacters(in: .newlines)
        }
        // The boot drive is vda; the slots follow it.
        #expect(try ask(#"{"action":"attach-drive","path":"\#(image)"}"#) == #"{"ok":true,"index":1,"device":"/dev/vdb"}"#)
        #expect(try ask(#"{"action":"attach-drive","path":"\#(image)"}"#) == #"{"ok":true,"index":2,"device":"/dev/vdc"}"#)
        #expect(try ask(#"{"action":"attach-drive","path":"\#(image)"}"#).contains("all 2 drive slots are in use"))
        #expect(try ask(#"{"action":"detach-drive","index":1}"#) == #"{"ok":true}"#)
        #expect(try ask(#"{"action":"attach-drive","path":"\#(image)"}"#).contains(#""index":1"#), "an emptied slot is reused")
        #expect(try ask(#"{"action":"detach-drive","index":0}"#).contains("drive 0 is not a drive slot"))
        #expect(try ask(#"{"action":"detach-drive","index":1}"#) == #"{"ok":true}"#)
        #expect(try ask(#"{"action":"attach-drive","path":"\#(directory)/missing.img"}"#).contains("cannot open drive"))
        #expect(try ask(#"{"action":"attach-drive","path":"\#(odd)"}"#).contains("not a multiple of 512"))
        #expect(try ask(#"{"action":"attach-drive"}"#).contains(#"needs \"path\""#))
        #expect(try ask(#"{"action":"eject-everything"}"#).contains("unknown action"))
        #expect(try ask("not json").hasPrefix(#"{"ok":false,"error":"not a JSON object"#))
        #expect(try ask(#"{"action":"attach-drive","path":"\#(image)"}"#).contains(#""index":1"#), "a failed attach leaves the slot free")
        #expect(process.isRunning, "bad requests must not stop the VM")

        // A client that hangs up before its answer costs nothing (no SIGPIPE ends the VM),
        // and the next client after it is served.
        client.close()
        let rude = try UnixSocketClient.connect(socket)
        try rude.write(Array(#"{"action":"detach-drive","index":2}"#.utf8) + [10])
        rude.close()
        usleep(200_000)
        #expect(process.isRunning, "a client that left before its answer stopped the VM")
        let again = try UnixSocketClient.connect(socket)
        defer { again.close() }
        try again.write(Array(#"{"action":"attach-drive","path":"\#(image)"}"#.utf8) + [10])
        #expect(try again.readLine(timeout: 30) == #"{"ok":true,"index":2,"device":"/dev/vdc"}"# + "\n",
                "the departed client's detach of slot 2 was still carried out")
    }

    @Test func slotsNeedTheSocket() throws {
        let process = Process()
        process.executableURL = URL(filePath: BadInputTests.executable)
        process.arguments = ["--kernel", try GuestBuilder.elf("echo"), "--no-stdin", "--drive-slots", "2"]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 2)
        #expect(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            == "kasa-vmm: error: --drive-slots needs --api-socket (the slots are filled through it)\n")
    }
}
