import AgentProtocol
import CLinux
import Foundation
import KVM
import Runtime
import Shim
import ShimProtocol
import SwiftProtobuf
import TTRPCNIO
import HostOS

/// containerd-shim-kata-v2: containerd's runtime v2 shim for Kasa (docs/containerd.md).
///   start   (run by containerd, cwd = bundle) listen, spawn the daemon, print the address
///   serve   (the daemon) serve containerd.task.v2.Task on the listener (fd 3)
///   delete  (run by containerd after a shim died) clean up, print a DeleteResponse
@main
enum ShimMain {
    static func main() async {
        let arguments: ShimArguments
        do {
            arguments = try ShimArguments(parsing: Array(CommandLine.arguments.dropFirst()))
        } catch {
            fail("\(error)")
        }
        switch arguments.action {
        case .start: start(arguments)
        case .delete: delete(arguments)
        case .serve: await serve(arguments)
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("containerd-shim-kata-v2: \(message)\n".utf8))
        exit(1)
    }

    // MARK: start

    static func start(_ arguments: ShimArguments) {
        let bundle = FileManager.default.currentDirectoryPath
        var arguments = arguments
        arguments.configPath = runtimeOptionsConfigPath()
        let group = ShimSocket.group(bundle: bundle, id: arguments.id)
        let path = ShimSocket.path(containerdAddress: arguments.address, namespace: arguments.namespace, group: group)
        let address = "unix://" + path
        try? FileManager.default.createDirectory(atPath: ShimSocket.directory, withIntermediateDirectories: true)
        if group != arguments.id, canConnect(path) {
            // The pod's shim is already serving: this container goes to it.
            writeAddress(address, bundle: bundle)
            print(address, terminator: "")
            exit(0)
        }
        let listener = listen(path)
        writeAddress(address, bundle: bundle)
        guard let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
            fail("cannot find my own executable")
        }
        var serve = arguments
        serve.action = .serve
        spawnDaemon(executable, serve.flags() + ["serve"], listener: listener)
        print(address, terminator: "")
        exit(0)
    }

    /// CRI passes runtime options (a protobuf Any holding runtimeoptions.v1.Options) on
    /// stdin; their config_path selects a configuration.toml.
    static func runtimeOptionsConfigPath() -> String? {
        guard isatty(0) == 0 else { return nil }
        let data = FileHandle.standardInput.readDataToEndOfFile()
        guard !data.isEmpty, let any = try? Google_Protobuf_Any(serializedBytes: [UInt8](data)),
              let options = try? Runtimeoptions_V1_Options(serializedBytes: [UInt8](any.value)),
              !options.configPath.isEmpty else { return nil }
        return options.configPath
    }

    static func writeAddress(_ address: String, bundle: String) {
        try? Data(address.utf8).write(to: URL(fileURLWithPath: bundle + "/address"))
    }

    static func canConnect(_ path: String) -> Bool {
        guard case .success(let descriptor) = UnixStream.connect(path) else { return false }
        close(descriptor)
        return true
    }

    /// The shim's socket (mode 0600: containerd runs as root), handed to the daemon as fd 3
    /// (dup2 there clears close-on-exec).
    static func listen(_ path: String) -> Int32 {
        do {
            return try UnixSocket.listen(path, mode: 0o600, backlog: 64)
        } catch {
            fail("listen on \(path): \(error)")
        }
    }

    /// The daemon: the listener as fd 3, stdio on /dev/null (an inherited pipe would keep
    /// containerd waiting for EOF), its own session so containerd's signals miss it.
    static func spawnDaemon(_ executable: String, _ arguments: [String], listener: Int32) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, listener, 3)
        for target: Int32 in [0, 1, 2] {
            posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        let setsid: Int32 = 0x80  // POSIX_SPAWN_SETSID (glibc 2.26+; hidden behind _GNU_SOURCE)
        posix_spawnattr_setflags(&attributes, Int16(setsid))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else { fail("cannot start the shim daemon: \(String(cString: strerror(result)))") }
    }

    // MARK: serve

    static func serve(_ arguments: ShimArguments) async {
        _ = clinux_become_subreaper()
        signal(SIGPIPE, SIG_IGN)
        // containerd reads the shim's log from the bundle's `log` FIFO.
        let logDescriptor = open("log", O_RDWR | O_CLOEXEC)
        if logDescriptor >= 0 { dup2(logDescriptor, 2) }
        let log: @Sendable (String) -> Void = { message in
            FileHandle.standardError.write(Data("kasa-shim[\(arguments.id)]: \(message)\n".utf8))
        }
        let configuration: RuntimeConfiguration
        do {
            let loaded = try ConfigurationLoader.load(explicitPath: arguments.configPath)
            loaded.warnings.forEach { log("configuration: \($0)") }
            configuration = loaded.configuration
        } catch {
            log("\(error)")
            exit(1)
        }
        let runtime = KasaShimRuntime(configuration: configuration, onPVMHost: KVMSystem.isPVMHost,
                                      namespace: arguments.namespace.isEmpty ? "default" : arguments.namespace, log: log)
        let ttrpcAddress = ProcessInfo.processInfo.environment["TTRPC_ADDRESS"] ?? (arguments.address + ".ttrpc")
        let events = ContainerdEventPublisher(address: ttrpcAddress, namespace: arguments.namespace, log: log)
        let socketPath = (try? String(contentsOfFile: "address", encoding: .utf8)).map { String($0.dropFirst("unix://".count)) }
        let service = TaskService(runtime: runtime, events: events, shimPID: UInt32(getpid()), onShutdown: {
            // Answer Shutdown first, then go.
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) {
                if let socketPath { unlink(socketPath) }
                exit(0)
            }
        })
        do {
            let server = try await TTRPCUnixServer.adopt(listeningDescriptor: 3, service: service, log: log)
            log("serving")
            try await server.run()
        } catch {
            log("ttrpc server: \(error)")
            exit(1)
        }
    }

    // MARK: delete

    /// containerd's cleanup when a shim is gone: kill the sandbox's VMM, unmount the
    /// rootfs, remove state; stdout carries only the DeleteResponse.
    static func delete(_ arguments: ShimArguments) {
        let bundle = arguments.bundle ?? FileManager.default.currentDirectoryPath
        let configuration = (try? ConfigurationLoader.load(explicitPath: arguments.configPath))?.configuration ?? .defaults
        MicroVMBackend.cleanUpAbandoned(stateDirectory: configuration.runtime.sandboxDirectory(for: arguments.id),
                                        sandboxID: arguments.id)
        // The pod's TAP and tc filters, if this was a sandbox whose shim died (its namespace
        // still exists: CRI removes it after this).
        if let workload = try? WorkloadSpec.forBundle(bundle, command: [], terminal: false),
           let namespace = workload.networkNamespacePath, ShimSocket.group(bundle: bundle, id: arguments.id) == arguments.id {
            PodNetwork.tearDown(namespacePath: namespace)
        }
        _ = umount2(bundle + "/rootfs", Int32(MNT_DETACH))
        let group = ShimSocket.group(bundle: bundle, id: arguments.id)
        if group == arguments.id {
            unlink(ShimSocket.path(containerdAddress: arguments.address, namespace: arguments.namespace, group: group))
        }
        var response = Containerd_Task_V2_DeleteResponse()
        response.exitStatus = 137
        response.exitedAt = Google_Protobuf_Timestamp(date: Date())
        let bytes = (try? response.serializedData()) ?? Data()
        FileHandle.standardOutput.write(bytes)
        exit(0)
    }
}
