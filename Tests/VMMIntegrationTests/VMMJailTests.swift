import Foundation
import Testing

/// `kasa-vmm --jail DIR`: the VMM's root holds only what its VM uses, in a mount namespace
/// of its own, and nothing of the jail shows on the host.
// The limit is generous on purpose: a synchronous test waits for a cooperative-pool thread,
// and on a 2-core machine the real-kernel tests hold both for minutes (a full suite run
// timed all of these out, waiting, after 300 s). Every wait inside is bounded on its own
// (a minute at most), so a hang still fails with its own message.
@Suite(.timeLimit(.minutes(20))) struct VMMJailTests {
    @Test func theJailHoldsOnlyWhatTheVMUses() throws {
        let directory = try VMMSeccompTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let jail = directory + "/jail", unrelated = directory + "/unrelated"
        for path in [jail, unrelated] { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false) }
        let kernel = try GuestBuilder.elf("echo")
        let socket = directory + "/run/api.sock"
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: false)
        let vmm = try VMMSeccompTests.VMMProcess(["--kernel", kernel, "--jail", jail, "--api-socket", socket],
                                                 directory: directory, name: "jailed")
        defer { vmm.stop() }
        try #require(vmm.waitFor("ready"), "the jailed guest never started: \(vmm.log)")
        let pid = vmm.process.processIdentifier
        // Its root, as the host sees it through /proc: the kept paths' first components, dev, proc.
        let root = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root").sorted()
        let top = { (path: String) in String(path.split(separator: "/").first!) }
        #expect(Set(root) == Set(["dev", "proc", top(kernel), top(directory)]), "the jail's root holds \(root)")
        let devices = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root/dev").sorted()
        #expect(devices.contains("kvm") && devices.contains("null") && !devices.contains("sda") && !devices.contains("mem"),
                "/dev in the jail: \(devices)")
        #expect(FileManager.default.fileExists(atPath: "/proc/\(pid)/root\(kernel)"))
        #expect(!FileManager.default.fileExists(atPath: "/proc/\(pid)/root\(unrelated)"), "a path the VM does not use is visible")
        #expect(!FileManager.default.fileExists(atPath: "/proc/\(pid)/root/etc/passwd"))
        // The control socket the VMM made inside is the host's file.
        #expect(FileManager.default.fileExists(atPath: socket))
        let vmmNamespace = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/mnt")
        #expect(vmmNamespace != (try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt")))
        // Its open-file limit, soft and hard, is what a VM without shared directories needs:
        // a guest cannot grow the VMM's descriptor table past it.
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let openFiles = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }?
            .split(separator: " ").compactMap { Int($0) }
        #expect(openFiles == [4096, 4096], "the jailed VMM's open-file limits: \(String(describing: openFiles))")
        // The jail's tmpfs is the VMM's alone: the host still sees an empty directory.
        #expect(try FileManager.default.contentsOfDirectory(atPath: jail).isEmpty)
        // readToEnd reads until end of file: a table read short would pass this check.
        let table = try #require(FileHandle(forReadingAtPath: "/proc/self/mountinfo"), "the mount table cannot be read")
        let mounts = String(decoding: try table.readToEnd() ?? Data(), as: UTF8.self)
        #expect(mounts.contains(" / / "), "the mount table has the root mount: \(mounts.prefix(200))")
        #expect(!mounts.contains(jail), "the jail's mounts reached the host")
    }

    @Test func aJailThatCannotBeMadeStopsTheVMM() throws {
        let directory = try VMMSeccompTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vmm = try VMMSeccompTests.VMMProcess(["--kernel", try GuestBuilder.elf("echo"), "--jail", directory + "/missing"],
                                                 directory: directory, name: "nojail")
        defer { vmm.stop() }
        let deadline = Date().addingTimeInterval(30)
        while vmm.process.isRunning && Date() < deadline { usleep(20_000) }
        try #require(!vmm.process.isRunning, "kasa-vmm ran without its jail: \(vmm.log)")
        #expect(vmm.process.terminationStatus == 1)
        #expect(vmm.log.contains("error: jail: \(directory)/missing: No such file or directory"), "\(vmm.log)")
        #expect(!vmm.log.contains("ready"))
    }
}
