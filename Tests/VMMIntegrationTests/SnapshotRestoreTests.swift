import Foundation
import Snapshot
import Testing
import VMM

/// kasa-vmm's snapshot and restore with tiny guests that compute for ever (Tests/guests/
/// snapcount*.S: state in registers, in RAM and in a step counter, one line per step):
/// snapshotted mid-computation through the control socket, then continued by new kasa-vmm
/// processes, each of which must print exactly the steps the original printed after the
/// same point.
@Suite(.serialized, .timeLimit(.minutes(10))) struct SnapshotRestoreTests {
    let directory: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appending(path: "kasa-snap-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Snapshots `guest` once it has printed some steps, at the wanted privilege level
    /// (retrying a few times: a snapshot lands wherever the vCPU happens to be); returns
    /// the original VM (still running) and the snapshot's directory.
    func snapshotWhileComputing(_ guest: String, privilegeLevel: Int, adding extra: [String] = []) throws -> (SnapshotVM, String) {
        let original = try SnapshotVM(["--kernel", try GuestBuilder.elf(guest), "--memory", "16"] + extra, name: "original", directory: directory)
        try #require(original.waitForLines(20, timeout: 120), "the guest did not start computing: \(original.errors)")
        let snapshot = directory + "/snapshot"
        for attempt in 1...20 {
            let answer = try original.ask(#"{"action":"snapshot","path":"\#(snapshot)"}"#)
            try #require(answer.hasPrefix(#"{"ok":true"#), "snapshot attempt \(attempt): \(answer)")
            let description = try MicroVM.describeSnapshot(snapshot)
            if description.vcpus.first?.privilegeLevel == privilegeLevel { return (original, snapshot) }
            usleep(7_000)
        }
        Issue.record("no snapshot of \(guest) landed at privilege level \(privilegeLevel) in 20 attempts")
        throw CancellationError()
    }

    /// The lines a restored VM printed, checked against the original's: its first complete
    /// line is a step the original printed, and from there the two agree line by line.
    func expectContinuesLikeTheOriginal(_ restored: [String], original: [String], _ what: String) {
        // The first line may be the tail of one cut by the snapshot.
        let complete = restored.drop { !$0.hasPrefix("step=") }
        guard let first = complete.first, let start = original.firstIndex(of: first) else {
            Issue.record("\(what): its first line \(restored.first ?? "(none)") is not one the original printed")
            return
        }
        let expected = original[start...].prefix(complete.count)
        #expect(Array(complete.prefix(expected.count)) == Array(expected), "\(what) diverged from the original")
    }

    @Test(arguments: [("snapcount", 0), ("snapcount-user", 3)])
    func aComputationContinuesExactlyInNewProcesses(guest: String, privilegeLevel: Int) throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (original, snapshot) = try snapshotWhileComputing(guest, privilegeLevel: privilegeLevel)
        #expect(original.waitForLines(original.lines.count + 40, timeout: 120), "the original stopped after the snapshot")
        original.stop()
        let memoryBefore = try Data(contentsOf: URL(filePath: snapshot + "/memory"))

        var outputs: [[String]] = []
        for clone in 1...3 {
            let restored = try SnapshotVM(["--restore", snapshot], name: "clone\(clone)", directory: directory)
            #expect(restored.waitForLines(12, timeout: 120), "clone \(clone) printed too little: \(restored.errors)")
            restored.stop()
            let lines = restored.lines
            expectContinuesLikeTheOriginal(lines, original: original.lines, "clone \(clone)")
            outputs.append(Array(lines.prefix(12)))
        }
        #expect(outputs.allSatisfy { $0 == outputs[0] }, "three restores of one snapshot printed different steps")
        let memoryAfter = try Data(contentsOf: URL(filePath: snapshot + "/memory"))
        #expect(memoryBefore == memoryAfter, "the clones' writes reached the snapshot's memory file")
    }

    /// A virtio-fs device its guest never mounted (a template's: the agent mounts each
    /// clone's later) is saved by its tag alone. Each clone serves a directory of its own
    /// under that tag; a clone that names none, or another tag, is refused before it runs.
    @Test func aCloneServesItsOwnSharedDirectoryUnderTheSnapshotsTag() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let exports = ["original", "clone"].map { directory + "/export-" + $0 }
        for export in exports { try FileManager.default.createDirectory(atPath: export, withIntermediateDirectories: true) }
        let (original, snapshot) = try snapshotWhileComputing(
            "snapcount", privilegeLevel: 0, adding: ["--shared-dir", "tag=kataShared,path=\(exports[0])"])
        #expect(original.waitForLines(original.lines.count + 40, timeout: 120), "the original stopped after the snapshot")
        original.stop()
        #expect(try MicroVM.describeSnapshot(snapshot).devices == ["shared-dir"])
        let clone = try SnapshotVM(["--restore", snapshot, "--shared-dir", "tag=kataShared,path=\(exports[1]),cache=never"],
                                   name: "clone", directory: directory)
        #expect(clone.waitForLines(12, timeout: 120), "the clone printed too little: \(clone.errors)")
        clone.stop()
        expectContinuesLikeTheOriginal(clone.lines, original: original.lines, "the clone with its own directory")
        let refused: [(String, [String])] = [
            ("no directory", []),
            ("another tag", ["--shared-dir", "tag=other,path=\(exports[1])"]),
            ("two directories", ["--shared-dir", "tag=kataShared,path=\(exports[1])", "--shared-dir", "tag=kataShared,path=\(exports[0])"]),
        ]
        for (what, arguments) in refused {
            let outcome = try BadInputTests().kasaVMM(["--restore", snapshot, "--console", "none"] + arguments)
            #expect(outcome.status == 2, "\(what): exit \(outcome.status)")
            #expect(outcome.standardError.contains("virtio-fs devices tagged [\"kataShared\"]"), "\(what): \(outcome.standardError)")
        }
    }

    @Test func pauseStopsTheGuestAndResumeContinuesIt() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vm = try SnapshotVM(["--kernel", try GuestBuilder.elf("snapcount"), "--memory", "16"], name: "paused", directory: directory)
        try #require(vm.waitForLines(5, timeout: 120), "the guest did not start: \(vm.errors)")
        #expect(try vm.ask(#"{"action":"pause"}"#) == #"{"ok":true}"#)
        let atPause = vm.output
        usleep(500_000)
        #expect(vm.output == atPause, "the guest printed while paused")
        #expect(try vm.ask(#"{"action":"pause"}"#) == #"{"ok":true}"#, "pausing a paused VM is not an error")
        #expect(try vm.ask(#"{"action":"resume"}"#) == #"{"ok":true}"#)
        #expect(vm.waitForLines(vm.lines.count + 5, timeout: 60), "the guest did not continue after resume")
        #expect(vm.process.isRunning)
        // A snapshot that may wait for its devices: nothing to wait for here, it is taken at once.
        let bad = try vm.ask(#"{"action":"snapshot","path":"\#(directory)/settled","settle_seconds":-1}"#)
        #expect(bad.contains(#""ok":false"#) && bad.contains("settle_seconds"), "\(bad)")
        let settled = try vm.ask(#"{"action":"snapshot","path":"\#(directory)/settled","settle_seconds":30}"#)
        #expect(settled.hasPrefix(#"{"ok":true"#), "\(settled)")
        #expect(vm.waitForLines(vm.lines.count + 3, timeout: 60), "the guest did not continue after the snapshot")
    }

    @Test func damagedOrForeignSnapshotsAreRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (original, snapshot) = try snapshotWhileComputing("snapcount", privilegeLevel: 0)
        let other = directory + "/other"
        #expect(try original.ask(#"{"action":"snapshot","path":"\#(other)"}"#).hasPrefix(#"{"ok":true"#))
        original.stop()
        let state = try Data(contentsOf: URL(filePath: snapshot + "/state"))
        let format = UInt32(state[8]) | UInt32(state[9]) << 8 | UInt32(state[10]) << 16 | UInt32(state[11]) << 24

        func variant(_ name: String, state: Data? = nil, memoryFrom: String? = nil, truncateMemory: Bool = false) throws -> String {
            let path = directory + "/" + name
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            try (state ?? Data(contentsOf: URL(filePath: snapshot + "/state"))).write(to: URL(filePath: path + "/state"))
            if let memoryFrom {
                try FileManager.default.copyItem(atPath: memoryFrom + "/memory", toPath: path + "/memory")
            }
            if truncateMemory {
                let handle = try FileHandle(forWritingTo: URL(filePath: path + "/memory"))
                try handle.truncate(atOffset: 8192)
                try handle.close()
            }
            return path
        }
        // The version string re-encoded with a valid checksum: only the version check stops it.
        let payload = try SnapshotFiles.decodeState(Array(state), path: "state", format: format)
        var renamed = payload
        let version = Array("0.1.0-dev".utf8)
        if let at = (0..<(renamed.count - version.count)).first(where: { Array(renamed[$0..<$0 + version.count]) == version }) {
            renamed.replaceSubrange(at..<at + version.count, with: Array("9.9.9-old".utf8))
        }
        // The host CPU's vendor replaced (same length): a snapshot from another CPU model.
        var otherCPU = payload
        for vendor in ["GenuineIntel", "AuthenticAMD"].map({ Array($0.utf8) }) {
            if let at = (0..<(otherCPU.count - vendor.count)).first(where: { Array(otherCPU[$0..<$0 + vendor.count]) == vendor }) {
                otherCPU.replaceSubrange(at..<at + vendor.count, with: Array("KasaTestCPU!".utf8))
            }
        }
        var flipped = state
        flipped[state.count / 2] ^= 0xFF
        let cases: [(String, String, String)] = [
            ("truncated", try variant("truncated", state: state.prefix(state.count - 100), memoryFrom: snapshot), "ends early"),
            ("flipped", try variant("flipped", state: flipped, memoryFrom: snapshot), "checksum mismatch"),
            ("foreign memory", try variant("foreign", memoryFrom: other), "written by another snapshot"),
            ("short memory", try variant("short", memoryFrom: snapshot, truncateMemory: true), "memory file"),
            ("no memory", try variant("nomemory"), "cannot open"),
            ("other version", try variant("version", state: Data(SnapshotFiles.encodeState(renamed, format: format)), memoryFrom: snapshot),
             "written by kasa-vmm 9.9.9-old"),
            ("other CPU", try variant("cpu", state: Data(SnapshotFiles.encodeState(otherCPU, format: format)), memoryFrom: snapshot),
             "was taken on a KasaTestCPU!"),
            ("other format", try variant("format", state: Data(SnapshotFiles.encodeState(payload, format: format + 1)), memoryFrom: snapshot),
             "format \(format + 1) is not supported"),
            ("not a snapshot", directory + "/missing", "is not a kasa-vmm snapshot"),
        ]
        for (what, path, message) in cases {
            let outcome = try BadInputTests().kasaVMM(["--restore", path, "--console", "none"])
            #expect(outcome.status == 2, "\(what): exit \(outcome.status)")
            #expect(outcome.standardError.contains(message), "\(what): \(outcome.standardError)")
        }
        let combined = try BadInputTests().kasaVMM(["--restore", snapshot, "--kernel", "/boot/vmlinuz", "--console", "none"])
        #expect(combined.status == 2)
        #expect(combined.standardError.contains("--kernel cannot be combined with --restore"), "\(combined.standardError)")
    }
}
