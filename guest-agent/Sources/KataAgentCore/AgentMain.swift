import AgentProtocol
#if canImport(Glibc)
import Glibc
#endif

/// kata-agent's behaviour, kept here so the executable is a thin shell around it.
///   kata-agent                       as the guest's PID 1: set up, serve on vsock port 1024
///   kata-agent --listen unix:PATH    as a host process (tests): serve on a Unix socket
///   kata-agent --listen vsock:PORT
/// Options: --state-dir DIR, --cgroup-root DIR (cgroup v2), --debug-console unix:PATH|vsock:PORT,
/// --container-init-timeout SECONDS, --netns PATH (where a host-process agent's network RPCs
/// act: a namespace its test made), --version.
public enum AgentMain {
    public struct Options: Equatable, Sendable {
        public var endpoint: AgentEndpoint = .vsock(port: AgentService.vsockPort)
        public var stateDirectory = "/run/kasa-agent"
        public var cgroupRoot: String?
        public var printVersion = false
        /// A root shell for `kata-runtime exec` (DebugConsole); off unless asked for.
        public var debugConsole: AgentEndpoint?
        /// How long container set-up may take (AgentKernelParameters); nil = 30 seconds.
        public var containerInitTimeout: Duration?
        public var networkNamespace: String?
    }

    /// Parses arguments; unknown words are reported but ignored, because the kernel hands
    /// PID 1 whatever parameters it did not recognise (e.g. `noxsave`).
    public static func parse(_ arguments: [String], log: (String) -> Void) -> Options {
        var options = Options()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let value: String? = index + 1 < arguments.count ? arguments[index + 1] : nil
            switch argument {
            case "--listen":
                if let value, value.hasPrefix("unix:") {
                    options.endpoint = .unix(path: String(value.dropFirst(5)))
                } else if let value, value.hasPrefix("vsock:"), let port = UInt32(value.dropFirst(6)) {
                    options.endpoint = .vsock(port: port)
                } else {
                    log("ignoring --listen \(value ?? ""): use unix:PATH or vsock:PORT")
                }
                index += 1
            case "--state-dir":
                if let value { options.stateDirectory = value }
                index += 1
            case "--cgroup-root":
                if let value { options.cgroupRoot = value }
                index += 1
            case "--debug-console":
                if let value, value.hasPrefix("unix:") {
                    options.debugConsole = .unix(path: String(value.dropFirst(5)))
                } else if let value, value.hasPrefix("vsock:"), let port = UInt32(value.dropFirst(6)) {
                    options.debugConsole = .vsock(port: port)
                } else {
                    log("ignoring --debug-console \(value ?? ""): use unix:PATH or vsock:PORT")
                }
                index += 1
            case "--container-init-timeout":
                if let value, let timeout = AgentKernelParameters.containerInitTimeout(parsing: Substring(value)) {
                    options.containerInitTimeout = timeout
                } else {
                    log("ignoring --container-init-timeout \(value ?? ""): \(AgentKernelParameters.containerInitTimeoutRule)")
                }
                index += 1
            case "--netns":
                if let value { options.networkNamespace = value }
                index += 1
            case "--version":
                options.printVersion = true
            default:
                log("ignoring argument '\(argument)'")
            }
            index += 1
        }
        return options
    }

    public static func run(arguments: [String]) -> Never {
        let log: @Sendable (String) -> Void = { message in
            let line = "kata-agent: \(message)\n"
            _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
        }
        var options = parse(arguments, log: log)
        if options.printVersion {
            print("kata-agent \(AgentVersion.current) (protocol \(AgentProtocolVersion.current))")
            exit(0)
        }
        // Before any thread exists, so that every thread inherits it.
        SignalForwarder.setMask()
        let isInit = getpid() == 1
        if isInit {
            // Before any thread exists: a root containers can pivot from, the kernel
            // filesystems, then the cgroup root for containers.
            GuestSystemSetup.leaveInitramfsRoot(log: log)
            GuestSystemSetup.mountKernelFilesystems(log: log)
            GuestSystemSetup.bringLoopbackUp(log: log)
            options.cgroupRoot = options.cgroupRoot ?? GuestSystemSetup.cgroupRoot
        } else {
            GuestSystemSetup.becomeSubreaper()
        }
        signal(SIGPIPE, SIG_IGN)
        let configuration = AgentConfiguration(ownsTheMachine: isInit, stateDirectory: options.stateDirectory,
                                               cgroupRoot: options.cgroupRoot, networkNamespace: options.networkNamespace)
        if isInit, let commandLine = FileManagerLite.read("/proc/cmdline") {
            // As PID 1 the agent gets no arguments (docs/performance.md): the host's
            // wishes come on the kernel command line.
            options.debugConsole = options.debugConsole ?? DebugConsole.endpoint(fromKernelCommandLine: commandLine)
            options.containerInitTimeout = options.containerInitTimeout
                ?? AgentKernelParameters.containerInitTimeout(fromKernelCommandLine: commandLine)
            if options.containerInitTimeout == nil && commandLine.contains(AgentKernelParameters.containerInitTimeoutKey + "=") {
                log("ignoring \(AgentKernelParameters.containerInitTimeoutKey): \(AgentKernelParameters.containerInitTimeoutRule)")
            }
        }
        let standby = ContainerInitStandby(log: log)
        let launcher = ContainerProcessLauncher(timeout: options.containerInitTimeout ?? .seconds(30), standby: standby)
        let handler = AgentServiceHandler(configuration: configuration, launcher: launcher, log: log)
        SignalForwarder.start(sandbox: handler.sandbox, isInit: isInit, log: log)
        // Before serving: the first new container finds its init ready, and a VM template
        // (snapshotted once the agent answers) holds it for every clone.
        if !standby.start(waitingUpTo: 60) { log("no standby container init yet: containers start without one") }
        if options.containerInitTimeout != nil { log("container set-up may take \(launcher.timeout)") }
        if let endpoint = options.debugConsole {
            DebugConsole.start(endpoint, log: log)
        }
        while true {
            do {
                let listener = try AgentListener(options.endpoint)
                log("serving on \(options.endpoint)")
                TTRPCServer(handler: handler, log: log).serve(listener)
                log("listener closed; listening again")
            } catch {
                // PID 1 never exits: report, wait, retry (the vsock driver may come up late).
                log("cannot listen on \(options.endpoint): \(error)")
                sleep(1)
            }
        }
    }
}
