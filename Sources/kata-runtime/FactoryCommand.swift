import ArgumentParser
import Runtime

/// `kata-runtime factory init | status | destroy`: the VM template (Kata's command names).
struct FactoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "factory",
        abstract: "Manage the VM template that sandboxes are restored from ([factory] enable_template).",
        subcommands: [Initialize.self, Status.self, Destroy.self])

    /// The template of the configuration (`[factory] template_path`, with `-virtio-fs` for
    /// virtio-fs: `RuntimeConfiguration.templateDirectory`), and a sandbox's settings (what
    /// the template is built for).
    static func template(_ configuration: RuntimeConfiguration) -> (VMTemplate, MicroVMBackend.Settings) {
        let settings = MicroVMBackend.Settings(configuration: configuration, sandboxID: "template")
        return (VMTemplate(path: configuration.templateDirectory), settings)
    }

    struct Initialize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init", abstract: "Boot the template VM and save it (again, if it is stale or --force).")
        @OptionGroup var config: ConfigurationOptions
        @Flag(help: "Rebuild even if the template matches the configuration.")
        var force = false

        func run() throws {
            let settings = try config.load()
            let (template, sandbox) = FactoryCommand.template(settings)
            if !settings.factory.enableTemplate {
                Console.warn("[factory] enable_template is false: sandboxes will not use this template until it is true")
            }
            do {
                if force { try template.destroy() }
                _ = try template.ensure(for: sandbox)
            } catch {
                throw Console.fail(error)
            }
            print("template ready at \(template.path)")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status", abstract: "Say whether the template exists, matches the configuration, and what it was built from.")
        @OptionGroup var config: ConfigurationOptions

        func run() throws {
            let settings = try config.load()
            let (template, sandbox) = FactoryCommand.template(settings)
            print("vm factory: \(settings.factory.enableTemplate ? "on" : "off") ([factory] enable_template)")
            print("template: \(template.path)")
            switch template.status(for: sandbox) {
            case .absent:
                print("state: absent (built on first use, or by kata-runtime factory init)")
            case .ready(let inputs):
                print("state: ready")
                for line in inputs { print("  \(line)") }
            case .stale(let inputs, let changed):
                print("state: stale (rebuilt on next use): the configuration changed \(changed.joined(separator: ", "))")
                for line in inputs { print("  \(line)") }
            }
        }
    }

    struct Destroy: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "destroy", abstract: "Remove the template.")
        @OptionGroup var config: ConfigurationOptions

        func run() throws {
            let settings = try config.load()
            do {
                try FactoryCommand.template(settings).0.destroy()
            } catch {
                throw Console.fail(error)
            }
            print("template removed from \(settings.templateDirectory)")
        }
    }
}
