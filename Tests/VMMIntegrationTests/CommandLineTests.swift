import Foundation
import Testing

/// kasa-vmm's hand-written command-line parser (Sources/kasa-vmm/CommandLineOptions.swift),
/// through the built binary: both value forms, aliases, repeated options, and the one-line
/// `kasa-vmm: error: ...` / exit 2 for bad usage.
@Suite struct KasaVMMCommandLineTests {
    struct Outcome {
        let status: Int32
        let standardError: String
        let standardOutput: String
    }

    /// Runs kasa-vmm with exactly these arguments (no --no-stdin added) and stdin at /dev/null.
    func kasaVMM(_ arguments: [String]) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(filePath: BadInputTests.executable)
        process.arguments = arguments
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

    /// Bad usage: exit 2 and exactly one line, `kasa-vmm: error: ...`, on stderr.
    func expectUsageError(_ arguments: [String], _ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let outcome = try kasaVMM(arguments)
        #expect(outcome.status == 2, "arguments \(arguments), stderr: \(outcome.standardError)", sourceLocation: sourceLocation)
        #expect(outcome.standardError.hasPrefix("kasa-vmm: error: "), "stderr: \(outcome.standardError)", sourceLocation: sourceLocation)
        #expect(outcome.standardError.contains(text), "stderr: \(outcome.standardError)", sourceLocation: sourceLocation)
        #expect(outcome.standardError.split(separator: "\n").count == 1, "stderr: \(outcome.standardError)", sourceLocation: sourceLocation)
        #expect(outcome.standardOutput.isEmpty, "stdout: \(outcome.standardOutput)", sourceLocation: sourceLocation)
    }

    static let allOptions = [
        "--config-file", "--kernel", "--initrd", "--cmdline", "--boot-args", "--memory", "--mem-size-mib",
        "--vcpus", "--vcpu-count", "--console", "--no-stdin", "--hide-cpu-feature", "--pvm-compat",
        "--drive", "--drive-slots", "--api-socket", "--rng", "--vsock-uds", "--vsock-cid", "--no-pvh", "-v, --verbose", "-h, --help", "--version",
    ]

    @Test func helpListsEveryOptionAndTheExitCodes() throws {
        for spelling in ["--help", "-h"] {
            let outcome = try kasaVMM([spelling])
            #expect(outcome.status == 0)
            #expect(outcome.standardError.isEmpty, "stderr: \(outcome.standardError)")
            let help = outcome.standardOutput
            #expect(help.hasPrefix("OVERVIEW: Boot a Linux kernel in a KVM microVM."))
            #expect(help.contains("USAGE: kasa-vmm"))
            for option in Self.allOptions {
                #expect(help.contains(" \(option) ") || help.contains(" \(option),") || help.contains(" \(option)\n"),
                        "\(option) missing from --help")
            }
            #expect(help.contains("kernel_image_path"), "the JSON example is missing")
            #expect(help.contains("EXIT STATUS"))
            #expect(help.contains("0  the guest reset"))
            #expect(help.contains("1  the VM failed"))
            #expect(help.contains("2  bad input"))
            for line in help.split(separator: "\n") {
                #expect(line.count <= 80, "help line over 80 columns: \(line)")
            }
        }
    }

    @Test func helpWinsOverOtherArgumentsEvenWrongOnes() throws {
        for arguments in [["--bogus", "--help"], ["--memory", "abc", "-h"], ["-vh"], ["--kernel", "/nonexistent", "--help"]] {
            let outcome = try kasaVMM(arguments)
            #expect(outcome.status == 0, "arguments \(arguments), stderr: \(outcome.standardError)")
            #expect(outcome.standardOutput.hasPrefix("OVERVIEW:"), "arguments \(arguments)")
        }
    }

    @Test func version() throws {
        let outcome = try kasaVMM(["--version"])
        #expect(outcome.status == 0)
        #expect(outcome.standardOutput.hasPrefix("kasa-vmm "), "stdout: \(outcome.standardOutput)")
        #expect(outcome.standardOutput.split(separator: "\n").count == 1)
        #expect(outcome.standardError.isEmpty)
    }

    @Test func unknownOptions() throws {
        try expectUsageError(["--bogus"], "unknown option '--bogus'")
        try expectUsageError(["--kernl", "/x"], "unknown option '--kernl'; did you mean '--kernel'?")
        try expectUsageError(["--Kernel", "/x"], "did you mean '--kernel'?")
        try expectUsageError(["-x"], "unknown option '-x'")
        try expectUsageError(["-vx"], "unknown option '-x' in '-vx'")
    }

    @Test func missingValues() throws {
        try expectUsageError(["--kernel"], "missing value for --kernel <path>")
        try expectUsageError(["--kernel", "--memory", "16"], "missing value for --kernel <path>")
        try expectUsageError(["--memory="], "missing value for --memory <MiB>")
        // A value that begins with '-' must be joined with '='; the error says so.
        try expectUsageError(["--cmdline", "-s"], "write --cmdline=-s for a value that begins with '-'")
    }

    @Test func badValues() throws {
        try expectUsageError(["--memory", "abc"], "invalid value 'abc' for --memory <MiB>: not a decimal number")
        try expectUsageError(["--mem-size-mib=0x10"], "invalid value '0x10' for --memory <MiB>: not a decimal number")
        try expectUsageError(["--vcpus", "99999999999999999999"], "invalid value '99999999999999999999' for --vcpus <n>: out of range")
        try expectUsageError(["--memory=18446744073709551616"], "out of range")
        try expectUsageError(["--memory=-5"], "invalid value '-5' for --memory <MiB>: must not be negative")
        try expectUsageError(["--vsock-cid", "three"], "invalid value 'three' for --vsock-cid <cid>")
        try expectUsageError(["--pvm-compat", "maybe"], "invalid value 'maybe' for --pvm-compat <auto|on|off>: use auto, on or off")
        try expectUsageError(["--rng=on"], "--rng does not take a value")
        try expectUsageError(["--no-stdin=yes"], "--no-stdin does not take a value")
    }

    @Test func argumentsThatAreNotOptions() throws {
        try expectUsageError(["vmlinux"], "unexpected argument 'vmlinux'")
        try expectUsageError(["--kernel", "/x", "--", "--memory"], "unexpected argument '--memory'")
    }

    @Test func theLastValueOfAnOptionCounts() throws {
        let outcome = try kasaVMM(["--kernel", "/nonexistent/first", "--kernel=/nonexistent/second", "--no-stdin"])
        #expect(outcome.status == 2)
        #expect(outcome.standardError.contains("kernel '/nonexistent/second' does not exist"), "stderr: \(outcome.standardError)")
    }

    @Test func repeatableOptionsCollectEveryValue() throws {
        let kernel = try GuestBuilder.elf("long64")
        // Both forms, both values reach the VM: whichever is bad is reported.
        for (arguments, bad) in [(["--hide-cpu-feature", "warp", "--hide-cpu-feature=avx512f"], "warp"),
                                 (["--hide-cpu-feature=avx512f", "--hide-cpu-feature", "impulse"], "impulse")] {
            let outcome = try kasaVMM(["--kernel", kernel, "--no-stdin", "--pvm-compat=off"] + arguments)
            #expect(outcome.status == 2)
            #expect(outcome.standardError.contains("unknown CPU feature '\(bad)'"), "stderr: \(outcome.standardError)")
        }
        let outcome = try kasaVMM(["--kernel", kernel, "--drive", "path=/nonexistent/a", "--drive=bogus"])
        #expect(outcome.status == 2)
        #expect(outcome.standardError.contains("invalid --drive 'bogus'"), "stderr: \(outcome.standardError)")
    }

    @Test func badInputBeyondTheCommandLineExitsTwo() throws {
        let path = GuestBuilder.outputDirectory.appending(path: "not-a-kernel-either").path
        try Data("just text\n".utf8).write(to: URL(filePath: path))
        try expectUsageError(["--kernel", path, "--no-stdin"], "neither an x86-64 ELF vmlinux nor a bzImage")
        try expectUsageError(["--kernel", try GuestBuilder.elf("long64"), "--no-stdin", "--hide-cpu-feature", "warp"],
                             "unknown CPU feature 'warp'")
    }

    @Test func equalsFormAndAliasesBootTheGuest() throws {
        let kernel = try GuestBuilder.elf("long64")
        let outcome = try kasaVMM(["--kernel=\(kernel)", "--boot-args=-from-the-equals-form", "--mem-size-mib=32",
                                   "--vcpu-count=1", "--pvm-compat=off", "--console=stdout", "--no-stdin", "-v"])
        #expect(outcome.status == 0, "stderr: \(outcome.standardError)")
        #expect(outcome.standardOutput.contains("cmdline=-from-the-equals-form\n"), "stdout: \(outcome.standardOutput)")
        #expect(outcome.standardError.contains("kasa-vmm: memory: 32 MiB, vCPUs: 1"), "stderr: \(outcome.standardError)")
    }

    @Test func spaceFormAndAliasesBootTheGuest() throws {
        let kernel = try GuestBuilder.elf("long64")
        let outcome = try kasaVMM(["--kernel", kernel, "--cmdline", "from the space form", "--memory", "24",
                                   "--vcpus", "1", "--pvm-compat", "off", "--console", "-", "--no-stdin", "--verbose"])
        #expect(outcome.status == 0, "stderr: \(outcome.standardError)")
        #expect(outcome.standardOutput.contains("cmdline=from the space form\n"), "stdout: \(outcome.standardOutput)")
        #expect(outcome.standardError.contains("kasa-vmm: memory: 24 MiB, vCPUs: 1"), "stderr: \(outcome.standardError)")
    }
}
