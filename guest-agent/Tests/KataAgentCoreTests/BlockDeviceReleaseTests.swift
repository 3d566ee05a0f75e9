import Foundation
import Testing
@testable import KataAgentCore
#if canImport(Glibc)
import Glibc
#endif

/// The guard behind refilled drive slots, on a loop device: a filesystem still mounted in
/// another mount namespace (a container process that has not finished exiting) holds
/// the device, and the agent must not mount it until that mount is gone.
@Suite(.serialized)
struct BlockDeviceReleaseTests {
    /// An 8 MiB ext4 image on a loop device; detached and removed by `remove()`.
    final class LoopDevice {
        let image: String
        let device: String
        let mountPoint: String

        init() throws {
            guard getuid() == 0 else { throw Failure(description: "loop devices need root: run the agent tests as root") }
            let base = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-loop-\(UUID().uuidString)").path
            image = base + ".img"
            mountPoint = base + ".mnt"
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            _ = try run("/usr/bin/truncate", ["-s", "8M", image])
            _ = try run("/usr/sbin/mkfs.ext4", ["-q", "-F", image])
            device = try run("/usr/sbin/losetup", ["--find", "--show", image]).trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func remove() {
            umount2(mountPoint, Int32(MNT_DETACH))
            _ = try? run("/usr/sbin/losetup", ["-d", device])
            try? FileManager.default.removeItem(atPath: image)
            try? FileManager.default.removeItem(atPath: mountPoint)
        }
    }

    struct Failure: Error, CustomStringConvertible { let description: String }

    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure(description: "\(tool) \(arguments.joined(separator: " ")): \(text)") }
        return text
    }

    /// `unshare -m` holding the device mounted for `seconds`; returns once it is mounted.
    static func holdInAnotherNamespace(_ loop: LoopDevice, seconds: Double) throws -> Process {
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        holder.arguments = ["--mount", "--propagation", "private", "/bin/sh", "-c",
                            "mount -o ro \(loop.device) \(loop.mountPoint) && echo held && sleep \(seconds)"]
        let output = Pipe()
        holder.standardOutput = output
        try holder.run()
        let line = output.fileHandleForReading.availableData
        guard String(decoding: line, as: UTF8.self).hasPrefix("held") else {
            holder.terminate()
            throw Failure(description: "the holder could not mount \(loop.device)")
        }
        return holder
    }

    static func hasExited(_ process: Process) -> Bool {
        let pid = process.processIdentifier
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
    }

    @Test(.timeLimit(.minutes(1)))
    func aDeviceHeldByAnotherNamespaceIsMountedOnlyOnceReleased() throws {
        let loop = try LoopDevice()
        defer { loop.remove() }
        let holder = try Self.holdInAnotherNamespace(loop, seconds: 1.5)
        #expect(!Self.hasExited(holder))
        try BlockDeviceRelease.waitUntilReleased(loop.device, timeout: 20)
        #expect(Self.hasExited(holder), "returned while another namespace still had \(loop.device) mounted")
        // And the mount that follows works.
        try Mounter.mount(loop.device, at: loop.mountPoint, type: "ext4", options: ["ro"])
        #expect(access(loop.mountPoint + "/lost+found", F_OK) == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func aDeviceThatStaysHeldIsAClearError() throws {
        let loop = try LoopDevice()
        defer { loop.remove() }
        let holder = try Self.holdInAnotherNamespace(loop, seconds: 30)
        defer { kill(holder.processIdentifier, SIGKILL) }
        let error = #expect(throws: AgentError.self) {
            try BlockDeviceRelease.waitUntilReleased(loop.device, timeout: 0.5)
        }
        #expect(error?.message.contains(loop.device) == true, "\(String(describing: error))")
        #expect(error?.message.contains("still held") == true, "\(String(describing: error))")
    }

    /// The agent's own mount of the device is deliberate (it shares what it mounted).
    @Test(.timeLimit(.minutes(1)))
    func theAgentsOwnMountDoesNotBlock() throws {
        let loop = try LoopDevice()
        defer { loop.remove() }
        try Mounter.mount(loop.device, at: loop.mountPoint, type: "ext4", options: ["ro"])
        let started = ContinuousClock.now
        try BlockDeviceRelease.waitUntilReleased(loop.device, timeout: 10)
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test
    func deviceNumbersAreDecodedAsLinuxEncodesThem() {
        #expect(BlockDeviceRelease.majorMinor(0x0000_0000_0000_0700) == "7:0")
        #expect(BlockDeviceRelease.majorMinor(0x0000_0000_0000_fe10) == "254:16")
        // Minors above 255 spill into bits 20 and up.
        #expect(BlockDeviceRelease.majorMinor(0x0000_0000_0010_0103) == "1:259")
    }
}
