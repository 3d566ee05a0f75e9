import Foundation
import KVM
import Testing
import VMM

/// What a user sees when the input is wrong: one line on stderr, a non-zero exit.
@Suite struct BadInputTests {
    static let executable: String = {
        // The test bundle sits beside the products it was built with.
        let bundle = URL(filePath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "")
        return bundle.deletingLastPathComponent().appending(path: "kasa-vmm").path
    }()

    struct Outcome {
        let status: Int32
        let standardError: String
        let standardOutput: String
    }

    func kasaVMM(_ arguments: [String]) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(filePath: BadInputTests.executable)
        process.arguments = arguments + ["--no-stdin"]
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus,
                       standardError: String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                       standardOutput: String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    func expectOneLineError(_ outcome: Outcome, containing text: String) {
        #expect(outcome.status != 0)
        #expect(outcome.standardError.contains(text), "stderr: \(outcome.standardError)")
        #expect(outcome.standardError.split(separator: "\n").count == 1, "stderr: \(outcome.standardError)")
    }

    @Test func executableExists() {
        #expect(FileManager.default.isExecutableFile(atPath: BadInputTests.executable), "not found: \(BadInputTests.executable)")
    }

    @Test func missingKernel() throws {
        expectOneLineError(try kasaVMM(["--kernel", "/nonexistent/vmlinux"]), containing: "kernel '/nonexistent/vmlinux' does not exist")
    }

    @Test func noKernelAtAll() throws {
        expectOneLineError(try kasaVMM([]), containing: "kernel")
    }

    @Test func kernelThatIsADirectory() throws {
        expectOneLineError(try kasaVMM(["--kernel", "/tmp"]), containing: "it is a directory")
    }

    @Test func kernelInAnUnknownFormat() throws {
        let path = GuestBuilder.outputDirectory.appending(path: "not-a-kernel").path
        try Data("#!/bin/sh\necho hi\n".utf8).write(to: URL(filePath: path))
        expectOneLineError(try kasaVMM(["--kernel", path]), containing: "neither an x86-64 ELF vmlinux nor a bzImage")
    }

    @Test func thirtyTwoBitELFIsRejected() throws {
        let path = GuestBuilder.outputDirectory.appending(path: "elf32").path
        var header = [UInt8](repeating: 0, count: 64)
        header[0...5] = [0x7f, 0x45, 0x4c, 0x46, 1, 1]
        try Data(header).write(to: URL(filePath: path))
        expectOneLineError(try kasaVMM(["--kernel", path]), containing: "not a 64-bit ELF")
    }

    @Test func zeroAndAbsurdMemory() throws {
        let kernel = try GuestBuilder.elf("long64")
        expectOneLineError(try kasaVMM(["--kernel", kernel, "--memory", "0"]), containing: "at least 1 MiB")
        expectOneLineError(try kasaVMM(["--kernel", kernel, "--memory", "1"]), containing: "too small")
        expectOneLineError(try kasaVMM(["--kernel", kernel, "--memory", "99999999"]), containing: "more than this host has")
    }

    @Test func impossibleVCPUCounts() throws {
        let kernel = try GuestBuilder.elf("long64")
        expectOneLineError(try kasaVMM(["--kernel", kernel, "--vcpus", "0"]), containing: "vCPUs requested")
        expectOneLineError(try kasaVMM(["--kernel", kernel, "--vcpus", "1000"]), containing: "vCPUs requested")
    }

    @Test func unknownCPUFeature() throws {
        let kernel = try GuestBuilder.elf("long64")
        expectOneLineError(try kasaVMM(["--kernel", kernel, "--hide-cpu-feature", "warp"]), containing: "unknown CPU feature 'warp'")
    }

    @Test func configurationFileWithUnknownKey() throws {
        let path = GuestBuilder.outputDirectory.appending(path: "bad.json").path
        try Data(#"{"boot-source": {"kernel_image_path": "/x", "kernel_args": "y"}}"#.utf8).write(to: URL(filePath: path))
        expectOneLineError(try kasaVMM(["--config-file", path]), containing: "unknown key 'kernel_args' in boot-source")
    }

    @Test func configurationFileBootsTheGuest() throws {
        let kernel = try GuestBuilder.elf("long64")
        let path = GuestBuilder.outputDirectory.appending(path: "good.json").path
        let json = #"{"boot-source": {"kernel_image_path": "\#(kernel)", "boot_args": "from json"}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 32}, "pvm-compat": "off"}"#
        try Data(json.utf8).write(to: URL(filePath: path))
        let outcome = try kasaVMM(["--config-file", path])
        #expect(outcome.status == 0, "stderr: \(outcome.standardError)")
        #expect(outcome.standardOutput.contains("cmdline=from json\n"), "stdout: \(outcome.standardOutput)")
    }

    @Test func missingKVMDeviceIsExplained() throws {
        let kernel = try GuestBuilder.elf("long64")
        let error = #expect(throws: KVMUnavailable.deviceMissing(path: "/nonexistent/kvm")) {
            try MicroVM(configuration: VMConfiguration(kernelPath: kernel, memoryMiB: 16, console: .discard, kvmPath: "/nonexistent/kvm"))
        }
        #expect(error?.description.contains("KVM is not available") == true)
    }
}

