import MachineSize
import ArgumentParser
import KVM
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `kata-runtime run`: one container in its own microVM; the workload's output streams
/// live and its exit status becomes ours.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command in a container inside its own microVM.",
        discussion: """
            Exit status: the workload's (128+N when killed by signal N); 125 when kata-runtime \
            itself fails (bad input, configuration, the VM); 126/127 when the command cannot be run \
            (as Docker and Podman do).
            Ctrl-C is passed to the workload; a second one (or 10 s) tears the sandbox down.
            """
    )

    @OptionGroup var config: ConfigurationOptions

    @Option(help: "The container's root filesystem (a directory).")
    var rootfs: String?

    @Option(help: "An OCI bundle (a directory with config.json).")
    var bundle: String?

    @Flag(name: [.short, .customLong("tty")], help: "Give the workload a terminal (pty).")
    var tty = false

    @Option(help: "Guest memory in MiB (default: [hypervisor.kasa] default_memory).")
    var memory: Int?

    @Option(help: "Guest vCPUs (default: [hypervisor.kasa] default_vcpus).")
    var vcpus: Int?

    @Option(name: [.short, .customLong("env")], help: "KEY=VALUE for the workload (repeatable).")
    var environment: [String] = []

    @Option(help: "The sandbox id (default: a random one).")
    var id: String?

    @Flag(help: "Show the VM's console (kernel and agent) on stderr.")
    var debug = false

    @Option(help: "The VM's network: none (no NIC; the default), or netns:PATH to give the VM the interfaces, addresses and routes of the network namespace at PATH (a TAP per interface, joined by tc).")
    var net = "none"

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.")
    var command: [String] = []

    func run() throws {
        var configuration = try config.load(failureStatus: 125)
        if debug { configuration.runtime.enableDebug = true }
        let sandboxID = id ?? SandboxIdentifier.random()
        let workload: WorkloadSpec
        let arguments = command.first == "--" ? Array(command.dropFirst()) : command
        do throws(RuntimeError) {
            try SandboxIdentifier.validate(sandboxID)
            if let memory, let problem = MachineSize.sandboxMemoryProblem(memory, what: "--memory") { throw RuntimeError.invalidInput(problem) }
            if let vcpus, let problem = MachineSize.vcpuProblem(vcpus, what: "--vcpus") { throw RuntimeError.invalidInput(problem) }
            if let bad = environment.first(where: { !$0.contains("=") || $0.hasPrefix("=") }) {
                throw RuntimeError.invalidInput("--env \(bad): use KEY=VALUE")
            }
            switch (rootfs, bundle) {
            case (let directory?, nil):
                workload = try WorkloadSpec.forRootfs(HostFile.absolute(directory), command: arguments, terminal: tty,
                                                      hostname: sandboxID, environment: environment)
            case (nil, let directory?):
                var spec = try WorkloadSpec.forBundle(HostFile.absolute(directory), command: arguments, terminal: tty)
                spec.addEnvironment(environment)
                workload = spec
            case (nil, nil):
                throw RuntimeError.invalidInput("give the container's root filesystem: --rootfs DIR or --bundle DIR")
            case (_?, _?):
                throw RuntimeError.invalidInput("--rootfs and --bundle exclude each other")
            }
            if !HostFile.isDirectory(workload.rootfs) {
                throw RuntimeError.invalidInput(HostFile.exists(workload.rootfs) ? "rootfs \(workload.rootfs) is not a directory"
                                                                                 : "rootfs \(workload.rootfs) does not exist")
            }
        } catch {
            throw Console.fail(error, status: 125)
        }
        var network: PodNetwork?
        do throws(RuntimeError) {
            network = try RunCommand.network(net)
        } catch {
            throw Console.fail(error, status: 125)
        }

        let onPVMHost = KVMSystem.isPVMHost
        let callTimeout = RuntimeConfiguration.agentCallTimeout(onPVMHost: onPVMHost)
        var settings = MicroVMBackend.Settings(configuration: configuration, sandboxID: sandboxID, memoryMiB: memory, vcpus: vcpus)
        settings.containerInitTimeout = MicroVMBackend.Settings.containerInitTimeout(forCallTimeout: callTimeout)
        settings.network = network
        let backend = MicroVMBackend(settings: settings)
        let run = ContainerRun(sandboxID: sandboxID, backend: backend, workload: workload.forGuest(configuration),
                               dialTimeout: Double(configuration.effectiveDialTimeout(onPVMHost: onPVMHost)),
                               callTimeout: callTimeout)
        if configuration.runtime.enableDebug {
            let start = MonotonicClock.now
            run.progress = { step in
                Console.writeError("kata-runtime: \(step) after \(Int((MonotonicClock.now - start) * 1000)) ms\n")
            }
        }
        let signals = SignalRelay.start(for: run)
        let terminal = tty ? RawTerminal(descriptor: STDIN_FILENO) : nil
        let status: Int32
        do {
            status = try run.run(stdio: .init(input: STDIN_FILENO, output: STDOUT_FILENO, error: STDERR_FILENO))
        } catch {
            terminal?.restore()
            signals.stop()
            throw Console.fail(error, status: RunCommand.exitStatus(for: error))
        }
        terminal?.restore()
        signals.stop()
        if status != 0 { throw ExitCode(status) }
    }
}

extension RunCommand {
    /// `--net none` or `--net netns:PATH`.
    static func network(_ choice: String) throws(RuntimeError) -> PodNetwork? {
        if choice == "none" { return nil }
        guard choice.hasPrefix("netns:"), choice.count > 6 else {
            throw RuntimeError.invalidInput("--net \(choice): use none or netns:PATH")
        }
        return try PodNetwork.setUp(namespacePath: String(choice.dropFirst(6))) { Console.writeError("kata-runtime: \($0)\n") }
    }

    /// The workload's own statuses pass through; the runtime's failures are 125.
    static func exitStatus(for error: RuntimeError) -> Int32 {
        switch error {
        case .workload, .interrupted: error.exitStatus
        default: 125
        }
    }
}

extension WorkloadSpec {
    mutating func addEnvironment(_ pairs: [String]) {
        guard !pairs.isEmpty, var process = ociSpec["process"]?.objectValue else { return }
        let existing = process["env"]?.arrayValue ?? []
        process["env"] = .array(existing + pairs.map { .string($0) })
        ociSpec["process"] = .object(process)
    }
}
