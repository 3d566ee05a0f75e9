import AgentProtocol
import ArgumentParser
import Runtime

/// `kata-runtime version`: this runtime, the agent protocol it speaks, and the VMM it
/// would start.
struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Show versions.")

    @OptionGroup var config: ConfigurationOptions

    func run() throws {
        let settings = try config.load()
        print("kata-runtime  : \(KataRuntime.version) (Kasa)")
        print("   agent protocol: \(AgentProtocolVersion.current)")
        let vmm = settings.hypervisor.path
        if HostFile.exists(vmm), let result = try? ChildProcess.run(vmm, ["--version"]), result.status == 0 {
            print("   hypervisor: \(result.output.split(separator: "\n").first.map(String.init) ?? "") (\(vmm))")
        } else {
            print("   hypervisor: not found at \(vmm)")
        }
    }
}
