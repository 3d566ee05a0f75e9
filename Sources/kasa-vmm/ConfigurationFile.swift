import FoundationEssentials
import VMM

/// The JSON form of the VM settings, shaped like Firecracker's --config-file so its users
/// can reuse what they have. Unknown keys are an error rather than silently ignored.
struct ConfigurationFile: Decodable {
    struct BootSource: Decodable {
        var kernelImagePath: String?
        var initrdPath: String?
        var bootArgs: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case kernelImagePath = "kernel_image_path", initrdPath = "initrd_path", bootArgs = "boot_args"
        }

        init(from decoder: any Decoder) throws {
            try ConfigurationFile.rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "boot-source")
            let container = try decoder.container(keyedBy: CodingKeys.self)
            kernelImagePath = try container.decodeIfPresent(String.self, forKey: .kernelImagePath)
            initrdPath = try container.decodeIfPresent(String.self, forKey: .initrdPath)
            bootArgs = try container.decodeIfPresent(String.self, forKey: .bootArgs)
        }
    }

    struct MachineConfig: Decodable {
        var vcpuCount: Int?
        var memSizeMib: UInt64?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case vcpuCount = "vcpu_count", memSizeMib = "mem_size_mib", smt
        }

        init(from decoder: any Decoder) throws {
            try ConfigurationFile.rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "machine-config")
            let container = try decoder.container(keyedBy: CodingKeys.self)
            vcpuCount = try container.decodeIfPresent(Int.self, forKey: .vcpuCount)
            memSizeMib = try container.decodeIfPresent(UInt64.self, forKey: .memSizeMib)
            if try container.decodeIfPresent(Bool.self, forKey: .smt) == true {
                throw ConfigurationFileError.unsupported("machine-config.smt = true (each vCPU is one core)")
            }
        }
    }

    struct Drive: Decodable {
        var configuration: DriveConfiguration

        enum CodingKeys: String, CodingKey, CaseIterable {
            case driveID = "drive_id", pathOnHost = "path_on_host", isRootDevice = "is_root_device", isReadOnly = "is_read_only"
        }

        init(from decoder: any Decoder) throws {
            try ConfigurationFile.rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "drives")
            let container = try decoder.container(keyedBy: CodingKeys.self)
            configuration = DriveConfiguration(
                path: try container.decode(String.self, forKey: .pathOnHost),
                readOnly: try container.decodeIfPresent(Bool.self, forKey: .isReadOnly) ?? false,
                isRoot: try container.decodeIfPresent(Bool.self, forKey: .isRootDevice) ?? false,
                identifier: try container.decodeIfPresent(String.self, forKey: .driveID))
        }
    }

    struct Vsock: Decodable {
        var guestCID: UInt64
        var udsPath: String

        enum CodingKeys: String, CodingKey, CaseIterable {
            case guestCID = "guest_cid", udsPath = "uds_path", vsockID = "vsock_id"
        }

        init(from decoder: any Decoder) throws {
            try ConfigurationFile.rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "vsock")
            let container = try decoder.container(keyedBy: CodingKeys.self)
            guestCID = try container.decode(UInt64.self, forKey: .guestCID)
            udsPath = try container.decode(String.self, forKey: .udsPath)
        }
    }

    struct Entropy: Decodable {}

    var bootSource: BootSource?
    var drives: [Drive]?
    var vsock: Vsock?
    var entropy: Entropy?
    var machineConfig: MachineConfig?
    var console: String?
    var hiddenCPUFeatures: [String]?
    var pvmCompatibility: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case bootSource = "boot-source", machineConfig = "machine-config", console
        case hiddenCPUFeatures = "hide-cpu-features", pvmCompatibility = "pvm-compat"
        case drives, vsock, entropy
    }

    init(from decoder: any Decoder) throws {
        try ConfigurationFile.rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "top level")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        bootSource = try container.decodeIfPresent(BootSource.self, forKey: .bootSource)
        machineConfig = try container.decodeIfPresent(MachineConfig.self, forKey: .machineConfig)
        console = try container.decodeIfPresent(String.self, forKey: .console)
        hiddenCPUFeatures = try container.decodeIfPresent([String].self, forKey: .hiddenCPUFeatures)
        pvmCompatibility = try container.decodeIfPresent(String.self, forKey: .pvmCompatibility)
        drives = try container.decodeIfPresent([Drive].self, forKey: .drives)
        vsock = try container.decodeIfPresent(Vsock.self, forKey: .vsock)
        entropy = try container.decodeIfPresent(Entropy.self, forKey: .entropy)
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    static func rejectUnknownKeys(_ decoder: any Decoder, known: [String], section: String) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        if let unknown = container.allKeys.map(\.stringValue).first(where: { !known.contains($0) }) {
            throw ConfigurationFileError.unknownKey(unknown, section: section)
        }
    }

    static func load(path: String) throws -> ConfigurationFile {
        let data: Data
        do {
            data = try Data(contentsOf: URL(filePath: path))
        } catch {
            throw ConfigurationFileError.unreadable(path: path)
        }
        do {
            return try JSONDecoder().decode(ConfigurationFile.self, from: data)
        } catch let error as ConfigurationFileError {
            throw ConfigurationFileError.invalid(path: path, reason: error.description)
        } catch {
            throw ConfigurationFileError.invalid(path: path, reason: "not valid JSON of the expected shape (\(error))")
        }
    }
}

enum ConfigurationFileError: Error, CustomStringConvertible {
    case unreadable(path: String)
    case unknownKey(String, section: String)
    case unsupported(String)
    case invalid(path: String, reason: String)

    var description: String {
        switch self {
        case .unreadable(let path): return "cannot read configuration file '\(path)'"
        case .unknownKey(let key, let section): return "unknown key '\(key)' in \(section)"
        case .unsupported(let what): return "unsupported setting: \(what)"
        case .invalid(let path, let reason): return "invalid configuration file '\(path)': \(reason)"
        }
    }
}
