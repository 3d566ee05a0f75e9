import ArgumentParser
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// kata-runtime: Kasa's command line for operators (docs/kata-runtime.md).
@main
struct KataRuntime: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "kata-runtime",
        abstract: "Run containers in Kasa microVMs, and check the host for them.",
        discussion: """
            Settings come from configuration.toml: --config PATH, then $KATA_CONF_FILE, then \
            /etc/kata-containers/configuration.toml, then /usr/share/defaults/kata-containers/configuration.toml.
            """,
        subcommands: [RunCommand.self, ExecCommand.self, CheckCommand.self, EnvCommand.self, FactoryCommand.self, VersionCommand.self]
    )

    /// Kata's spelling puts --config before the verb (`kata-runtime --config F check`);
    /// each verb takes it, so it is moved after the verb.
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.count >= 3, arguments[0] == "--config" {
            let option = Array(arguments[0...1])
            arguments.removeFirst(2)
            arguments.insert(contentsOf: option, at: 1)
        } else if let first = arguments.first, first.hasPrefix("--config=") {
            arguments.removeFirst()
            arguments.insert(first, at: min(1, arguments.count))
        }
        main(arguments)
    }
}

/// --config, shared by every verb.
struct ConfigurationOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: "The configuration.toml to use instead of the usual places.")
    var path: String?

    /// The settings, with warnings (unknown keys) printed; bad files end the command.
    func load(failureStatus: Int32? = nil) throws -> RuntimeConfiguration {
        do {
            let loaded = try ConfigurationLoader.load(explicitPath: path)
            for warning in loaded.warnings { Console.warn(warning) }
            return loaded.configuration
        } catch {
            throw Console.fail(error, status: failureStatus)
        }
    }
}

/// Messages on stderr in one shape: `kata-runtime: error: ...`.
enum Console {
    static func warn(_ message: String) { writeError("kata-runtime: warning: \(message)\n") }

    /// Prints the error and returns the exit that ends the command with its status.
    static func fail(_ error: RuntimeError, status: Int32? = nil) -> ExitCode {
        if case .interrupted = error {} else { writeError("kata-runtime: error: \(error)\n") }
        return ExitCode(status ?? error.exitStatus)
    }

    static func writeError(_ text: String) {
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
