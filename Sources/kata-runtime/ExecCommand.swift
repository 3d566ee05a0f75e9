import ArgumentParser
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `kata-runtime exec SANDBOX`: the guest's debug console (a root shell next to the
/// agent), as Kata's `kata-runtime exec` gives.
struct ExecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Open a shell in a running sandbox's VM (its debug console).",
        discussion: """
            The sandbox must have been started with debug_console_enabled = true ([agent.kata]) \
            and an agent image that has a shell (images/build-agent-image.sh --with-shell). \
            Name sandboxes with `kata-runtime run --id NAME`. The shell runs in the guest, \
            outside the container; exit it (or close stdin) to leave.
            """)

    @OptionGroup var config: ConfigurationOptions

    @Argument(help: "The sandbox id.")
    var sandbox: String

    func run() throws {
        let configuration = try config.load()
        let console: Int32
        do {
            try SandboxIdentifier.validate(sandbox)
            console = try DebugConsoleClient.connect(sandboxID: sandbox, configuration: configuration)
        } catch {
            throw Console.fail(error)
        }
        signal(SIGPIPE, SIG_IGN)
        // The guest's pty does the line editing and echo.
        let terminal = RawTerminal(descriptor: STDIN_FILENO)
        DebugConsoleClient.bridge(console, input: STDIN_FILENO, output: STDOUT_FILENO)
        terminal?.restore()
        close(console)
    }
}
