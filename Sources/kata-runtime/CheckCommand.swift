import ArgumentParser
import Runtime

/// `kata-runtime check`: can this host run Kasa sandboxes? One line per requirement.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check that this host can run Kasa sandboxes (exit 1 if it cannot).")

    @OptionGroup var config: ConfigurationOptions

    func run() throws {
        let configuration = try config.load()
        let results = HostCheck.run(configuration: configuration)
        for result in results {
            var line = "\(result.verdict.rawValue)  \(result.subject): \(result.detail)"
            if let fix = result.fix { line += "\n      fix: \(fix)" }
            print(line)
        }
        let failures = results.filter { $0.verdict == .fail }.count
        print(failures == 0 ? "This host can run Kasa sandboxes." : "\(failures) check(s) failed: this host cannot run Kasa sandboxes yet.")
        if failures > 0 { throw ExitCode(1) }
    }
}
