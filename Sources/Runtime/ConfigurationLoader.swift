import MachineSize
import KasaTOML
#if canImport(Glibc)
import Glibc
#endif

/// Finds and reads configuration.toml the way Kata users expect: `--config PATH`, then
/// $KATA_CONF_FILE, then /etc/kata-containers/configuration.toml, then
/// /usr/share/defaults/kata-containers/configuration.toml; with none, the built-in
/// defaults. Keys Kasa does not use are reported in `warnings`, never silently dropped;
/// a value of the wrong type or a syntax error is an error.
public enum ConfigurationLoader {
    public static let searchPaths = [
        "/etc/kata-containers/configuration.toml",
        "/usr/share/defaults/kata-containers/configuration.toml",
    ]

    public struct Loaded: Sendable {
        public var configuration: RuntimeConfiguration
        public var warnings: [String]
    }

    public static func load(explicitPath: String?, environment: [String: String] = ProcessEnvironment.current) throws(RuntimeError) -> Loaded {
        if let path = explicitPath ?? environment["KATA_CONF_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            guard let text = HostFile.readText(path) else {
                throw RuntimeError.configuration("cannot read configuration file \(path): \(HostFile.lastErrorDescription())")
            }
            return try parse(text, path: path)
        }
        for path in searchPaths where access(path, F_OK) == 0 {
            guard let text = HostFile.readText(path) else {
                throw RuntimeError.configuration("cannot read configuration file \(path): \(HostFile.lastErrorDescription())")
            }
            return try parse(text, path: path)
        }
        return Loaded(configuration: .defaults, warnings: [])
    }

    /// Settings from a file's text; `path` names it in messages.
    public static func parse(_ text: String, path: String) throws(RuntimeError) -> Loaded {
        let document: TOMLDocument
        do {
            document = try TOMLDocument(parsing: text)
        } catch {
            throw RuntimeError.configuration("\(path): \(error)")
        }
        var configuration = RuntimeConfiguration.defaults
        configuration.sourcePath = path
        var warnings: [String] = []
        // A file naming only one of image/initrd means that one: the other's built-in
        // default does not apply (Kata's rule: one boot medium).
        let kasaTable = document["hypervisor.kasa"]
        if kasaTable?["initrd"] != nil && kasaTable?["image"] == nil { configuration.hypervisor.image = "" }
        if kasaTable?["image"] != nil && kasaTable?["initrd"] == nil { configuration.hypervisor.initrd = "" }
        for table in document.tables {
            for entry in table.entries {
                let place = "\(path):\(entry.line): [\(table.path)] \(entry.key)"
                switch try apply(entry, table: table.path, to: &configuration, place: place) {
                case .used: break
                case .unknownKey: warnings.append("\(place): unknown key, ignored")
                case .unknownTable: warnings.append("\(place): Kasa does not use the [\(table.path)] table, ignored")
                }
            }
        }
        try validate(configuration, path: path)
        return Loaded(configuration: configuration, warnings: warnings)
    }

    private enum Applied { case used, unknownKey, unknownTable }

    private static func apply(_ entry: TOMLEntry, table: String, to configuration: inout RuntimeConfiguration,
                              place: String) throws(RuntimeError) -> Applied {
        switch table {
        case "hypervisor.kasa":
            switch entry.key {
            case "path": configuration.hypervisor.path = try string(entry, place)
            case "kernel": configuration.hypervisor.kernel = try string(entry, place)
            case "initrd": configuration.hypervisor.initrd = try string(entry, place)
            case "image": configuration.hypervisor.image = try string(entry, place)
            case "kernel_params": configuration.hypervisor.kernelParams = try string(entry, place)
            case "default_vcpus": configuration.hypervisor.defaultVCPUs = try integer(entry, place, in: MachineSize.vcpuCounts)
            case "default_memory": configuration.hypervisor.defaultMemoryMiB = try integer(entry, place, in: MachineSize.sandboxMemoryMiB)
            case "default_maxvcpus": configuration.hypervisor.defaultMaxVCPUs = try integer(entry, place, in: 0...MachineSize.vcpuCounts.upperBound)
            case "default_maxmemory": configuration.hypervisor.defaultMaxMemoryMiB = try integer(entry, place, in: 0...MachineSize.sandboxMemoryMiB.upperBound)
            case "shared_fs":
                let text = try string(entry, place)
                guard let choice = RuntimeConfiguration.SharedFileSystemChoice(rawValue: text) else {
                    throw RuntimeError.configuration("\(place): \"\(text)\" is not a shared file system Kasa has (virtio-fs or none)")
                }
                configuration.hypervisor.sharedFileSystem = choice
            case "disable_seccomp": configuration.hypervisor.disableSeccomp = try boolean(entry, place)
            case "enable_jail": configuration.hypervisor.enableJail = try boolean(entry, place)
            case "vmm_user":
                let name = try string(entry, place)
                guard VMMUser.isPlausibleName(name) else {
                    throw RuntimeError.configuration("\(place): \"\(name)\" is not a user name (\"root\" keeps kasa-vmm root)")
                }
                configuration.hypervisor.vmmUser = name
            case "virtio_fs_cache":
                let text = try string(entry, place)
                // Kata spells "never" also "none".
                let mode = text == "none" ? "never" : text
                guard ["never", "auto", "always"].contains(mode) else {
                    throw RuntimeError.configuration("\(place): \"\(text)\" is not a virtio-fs cache mode (never, auto or always)")
                }
                configuration.hypervisor.virtioFSCache = mode
            default: return .unknownKey
            }
        case "agent.kata":
            switch entry.key {
            case "dial_timeout": configuration.agent.dialTimeoutSeconds = try integer(entry, place, in: 1...86_400)
            case "debug_console_enabled": configuration.agent.debugConsoleEnabled = try boolean(entry, place)
            default: return .unknownKey
            }
        case "runtime":
            switch entry.key {
            case "enable_debug": configuration.runtime.enableDebug = try boolean(entry, place)
            case "state_dir": configuration.runtime.stateDirectory = try string(entry, place)
            case "image_cache_dir": configuration.runtime.imageCacheDirectory = try string(entry, place)
            case "internetworking_model":
                let text = try string(entry, place)
                guard let model = RuntimeConfiguration.InternetworkingModel(rawValue: text) else {
                    throw RuntimeError.configuration("\(place): \"\(text)\" is not a networking model Kasa has (tcfilter or none)")
                }
                configuration.runtime.internetworkingModel = model
            case "disable_new_netns": configuration.runtime.disableNewNetworkNamespace = try boolean(entry, place)
            case "static_sandbox_resource_mgmt": configuration.runtime.staticSandboxResourceManagement = try boolean(entry, place)
            case "disable_guest_seccomp": configuration.runtime.disableGuestSeccomp = try boolean(entry, place)
            case "sandbox_cgroup_only": configuration.runtime.sandboxCgroupOnly = try boolean(entry, place)
            default: return .unknownKey
            }
        case "factory":
            switch entry.key {
            case "enable_template": configuration.factory.enableTemplate = try boolean(entry, place)
            case "template_path":
                let path = try string(entry, place)
                guard path.hasPrefix("/"), path.count > 1 else {
                    throw RuntimeError.configuration("\(place): \"\(path)\" is not an absolute directory path")
                }
                configuration.factory.templatePath = path
            default: return .unknownKey
            }
        default:
            return .unknownTable
        }
        return .used
    }

    private static func validate(_ configuration: RuntimeConfiguration, path: String) throws(RuntimeError) {
        let hypervisor = configuration.hypervisor
        if !hypervisor.image.isEmpty && !hypervisor.initrd.isEmpty {
            throw RuntimeError.configuration("\(path): [hypervisor.kasa] sets both image and initrd: the guest boots one of them")
        }
        if hypervisor.image.isEmpty && hypervisor.initrd.isEmpty {
            throw RuntimeError.configuration("\(path): [hypervisor.kasa] needs image (or initrd): what the guest boots")
        }
        let paths = [("[hypervisor.kasa] path", configuration.hypervisor.path),
                     ("[hypervisor.kasa] kernel", configuration.hypervisor.kernel),
                     ("[hypervisor.kasa] " + (hypervisor.image.isEmpty ? "initrd" : "image"),
                      hypervisor.image.isEmpty ? hypervisor.initrd : hypervisor.image),
                     ("[runtime] state_dir", configuration.runtime.stateDirectory),
                     ("[runtime] image_cache_dir", configuration.runtime.imageCacheDirectory)]
        for (name, value) in paths where !value.hasPrefix("/") {
            throw RuntimeError.configuration("\(path): \(name) must be an absolute path, not \"\(value)\"")
        }
        if let problem = configuration.runtime.socketPathProblem {
            throw RuntimeError.configuration("\(path): \(problem)")
        }
    }

    private static func string(_ entry: TOMLEntry, _ place: String) throws(RuntimeError) -> String {
        guard case .string(let text) = entry.value else { throw mismatch(entry, place, expected: "a string") }
        return text
    }

    private static func boolean(_ entry: TOMLEntry, _ place: String) throws(RuntimeError) -> Bool {
        guard case .boolean(let flag) = entry.value else { throw mismatch(entry, place, expected: "true or false") }
        return flag
    }

    private static func integer(_ entry: TOMLEntry, _ place: String, in range: ClosedRange<Int>) throws(RuntimeError) -> Int {
        guard case .integer(let number) = entry.value else { throw mismatch(entry, place, expected: "an integer") }
        guard let value = Int(exactly: number), range.contains(value) else {
            throw RuntimeError.configuration("\(place): \(number) is out of range (\(range.lowerBound)...\(range.upperBound))")
        }
        return value
    }

    private static func mismatch(_ entry: TOMLEntry, _ place: String, expected: String) -> RuntimeError {
        RuntimeError.configuration("\(place): expected \(expected), found \(entry.value.kindDescription) (\(entry.value))")
    }
}
