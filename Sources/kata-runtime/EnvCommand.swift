import ArgumentParser
import KVM
import KasaJSON
import KasaTOML
import Runtime

/// `kata-runtime env`: the effective settings, where they came from, and the host.
struct EnvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env",
        abstract: "Show the effective settings (TOML, or JSON with --json).")

    @OptionGroup var config: ConfigurationOptions

    @Flag(help: "Print JSON instead of TOML.")
    var json = false

    func run() throws {
        let settings = try config.load()
        let onPVMHost = KVMSystem.isPVMHost
        let dialTimeout = settings.effectiveDialTimeout(onPVMHost: onPVMHost)
        let sections: [(String, [(String, TOMLValue)])] = [
            ("hypervisor.kasa", [
                ("path", .string(settings.hypervisor.path)),
                ("kernel", .string(settings.hypervisor.kernel)),
                ("image", .string(settings.hypervisor.image)),
                ("initrd", .string(settings.hypervisor.initrd)),
                ("kernel_params", .string(settings.hypervisor.kernelParams)),
                ("default_vcpus", .integer(Int64(settings.hypervisor.defaultVCPUs))),
                ("default_memory", .integer(Int64(settings.hypervisor.defaultMemoryMiB))),
                ("default_maxvcpus", .integer(Int64(settings.hypervisor.defaultMaxVCPUs))),
                ("default_maxmemory", .integer(Int64(settings.hypervisor.defaultMaxMemoryMiB))),
                ("shared_fs", .string(settings.hypervisor.sharedFileSystem.rawValue)),
                ("virtio_fs_cache", .string(settings.hypervisor.virtioFSCache)),
                ("disable_seccomp", .boolean(settings.hypervisor.disableSeccomp)),
                ("enable_jail", .boolean(settings.hypervisor.enableJail)),
            ]),
            ("agent.kata", [
                ("dial_timeout", .integer(Int64(dialTimeout))),
                ("debug_console_enabled", .boolean(settings.agent.debugConsoleEnabled)),
            ]),
            ("runtime", [
                ("enable_debug", .boolean(settings.runtime.enableDebug)),
                ("state_dir", .string(settings.runtime.stateDirectory)),
                ("image_cache_dir", .string(settings.runtime.imageCacheDirectory)),
                ("internetworking_model", .string(settings.runtime.internetworkingModel.rawValue)),
                ("static_sandbox_resource_mgmt", .boolean(settings.runtime.staticSandboxResourceManagement)),
                ("disable_guest_seccomp", .boolean(settings.runtime.disableGuestSeccomp)),
                ("sandbox_cgroup_only", .boolean(settings.runtime.sandboxCgroupOnly)),
            ]),
            ("factory", [
                ("enable_template", .boolean(settings.factory.enableTemplate)),
                ("template_path", .string(settings.factory.templatePath)),
            ]),
        ]
        let source = settings.sourcePath ?? "built-in defaults (no configuration.toml found)"
        let host = onPVMHost ? "kvm_pvm" : "hardware"
        if json {
            var root = JSONObject()
            root["source"] = .string(source)
            for (name, entries) in sections {
                root[name] = .object(JSONObject(entries.map { ($0.0, Self.json($0.1)) }))
            }
            root["host"] = .object(JSONObject([("kvm", .string(host)), ("runtime_version", .string(KataRuntime.version))]))
            print(JSONValue.object(root).jsonText)
            return
        }
        print("# kata-runtime env: effective settings")
        print("# source: \(source)")
        for (name, entries) in sections {
            print("\n[\(name)]")
            for (key, value) in entries {
                var line = "\(key) = \(value)"
                if key == "dial_timeout" && settings.agent.dialTimeoutSeconds == nil {
                    line += "  # default for \(onPVMHost ? "a kvm_pvm host (guest kernel emulated)" : "hardware KVM")"
                }
                print(line)
            }
        }
        print("\n# host: KVM \(host); kata-runtime \(KataRuntime.version)")
    }

    static func json(_ value: TOMLValue) -> JSONValue {
        switch value {
        case .string(let text): .string(text)
        case .integer(let number): .number(JSONNumber(number))
        case .float(let number): .number(JSONNumber(literal: String(number)) ?? JSONNumber(0))
        case .boolean(let flag): .bool(flag)
        case .array(let items): .array(items.map(json))
        }
    }
}
