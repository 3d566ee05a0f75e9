import Foundation
import Testing

/// `kasa-vmm --profile`: where the guest's time goes, by privilege level and kernel address.
@Suite(.timeLimit(.minutes(5))) struct GuestProfilerTests {
    /// Runs `guest` for a while with the profiler on and returns the profile's lines.
    func profile(_ guest: String) throws -> [(count: Int, kind: String, address: UInt64)] {
        let directory = FileManager.default.temporaryDirectory.appending(path: "kasa-profile-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let output = directory + "/profile"
        let vm = try SnapshotVM(["--kernel", try GuestBuilder.elf(guest), "--memory", "16", "--profile", output,
                                 "--profile-interval-us", "500"], name: "profiled", directory: directory)
        try #require(vm.waitForLines(30, timeout: 120), "the guest did not run: \(vm.errors)")
        usleep(1_500_000)
        vm.stop()
        let text = try String(contentsOfFile: output, encoding: .utf8)
        return text.split(separator: "\n").map { line in
            let fields = line.split(separator: " ")
            return (Int(fields[0]) ?? -1, String(fields[1]), UInt64(fields[2], radix: 16) ?? .max)
        }
    }

    @Test func ringZeroTimeIsAttributedToKernelAddresses() throws {
        let samples = try profile("snapcount")
        let total = samples.reduce(0) { $0 + $1.count }
        #expect(total >= 100, "too few samples: \(total)")
        #expect(samples.allSatisfy { $0.kind == "kernel" }, "a ring-0 guest was sampled in user space")
        // The guest is linked at 1 MiB (Tests/guests/guest.ld) and is a few KiB long.
        #expect(samples.allSatisfy { $0.address >= 0x100000 && $0.address < 0x110000 }, "\(samples.prefix(5))")
    }

    @Test func ringThreeTimeIsAttributedToUserSpace() throws {
        let samples = try profile("snapcount-user")
        let user = samples.filter { $0.kind == "user" }.reduce(0) { $0 + $1.count }
        let kernel = samples.filter { $0.kind == "kernel" }.reduce(0) { $0 + $1.count }
        #expect(user > kernel, "the ring-3 loop should dominate: user \(user), kernel \(kernel)")
    }
}
