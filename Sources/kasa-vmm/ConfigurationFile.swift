import KasaJSON
import VMM
import Virtio
#if canImport(Glibc)
import Glibc
#endif

/// The JSON form of the VM settings, shaped like Firecracker's --config-file so its users
/// can reuse what they have. Unknown keys are an error rather than silently ignored.
///
/// Read with KasaJSON rather than Foundation's JSONDecoder: linking FoundationEssentials
/// for this one file cost ~2 MiB of resident memory on every start (docs/performance.md).
/// A key whose value is `null` counts as absent, as it did with JSONDecoder's
/// `decodeIfPresent`.
struct ConfigurationFile {
    struct BootSource {
        var kernelImagePath: String?
        var initrdPath: String?
        var bootArgs: String?

        static let keys = ["kernel_image_path", "initrd_path", "boot_args"]

        init(_ section: Section) throws {
            kernelImagePath = try section.string("kernel_image_path")
            initrdPath = try section.string("initrd_path")
            bootArgs = try section.string("boot_args")
        }
    }

    struct MachineConfig {
        var vcpuCount: Int?
        var memSizeMib: UInt64?

        static let keys = ["vcpu_count", "mem_size_mib", "smt"]

        init(_ section: Section) throws {
            vcpuCount = try section.integer("vcpu_count", as: Int.self)
            memSizeMib = try section.integer("mem_size_mib", as: UInt64.self)
            if try section.bool("smt") == true {
                throw ConfigurationFileError.unsupported("machine-config.smt = true (each vCPU is one core)")
            }
        }
    }

    struct Drive {
        var configuration: DriveConfiguration

        static let keys = ["drive_id", "path_on_host", "is_root_device", "is_read_only"]

        init(_ section: Section) throws {
            configuration = DriveConfiguration(
                path: try section.required(section.string("path_on_host"), "path_on_host"),
                readOnly: try section.bool("is_read_only") ?? false,
                isRoot: try section.bool("is_root_device") ?? false,
                identifier: try section.string("drive_id"))
        }
    }

    struct Vsock {
        var guestCID: UInt64
        var udsPath: String

        // vsock_id is Firecracker's name for the device; accepted and not needed.
        static let keys = ["guest_cid", "uds_path", "vsock_id"]

        init(_ section: Section) throws {
            guestCID = try section.required(section.integer("guest_cid", as: UInt64.self), "guest_cid")
            udsPath = try section.required(section.string("uds_path"), "uds_path")
        }
    }

    /// Firecracker's network interface; `mtu` is Kasa's (Firecracker takes the TAP's).
    struct NetworkInterface {
        var configuration: NetworkInterfaceConfiguration

        static let keys = ["iface_id", "host_dev_name", "guest_mac", "mtu"]

        init(_ section: Section) throws {
            let name = try section.required(section.string("host_dev_name"), "host_dev_name")
            var configuration = NetworkInterfaceConfiguration(backend: .tapName(name))
            if let text = try section.string("guest_mac") {
                guard let mac = MACAddress(text) else {
                    throw VMMError.deviceSetupFailed("network-interfaces: guest_mac '\(text)' is not a MAC address (02:42:ac:11:00:02)")
                }
                configuration.mac = mac
            }
            if let mtu = try section.integer("mtu", as: UInt16.self) {
                guard mtu >= 68 else { throw VMMError.deviceSetupFailed("network-interfaces: mtu \(mtu) is below 68") }
                configuration.mtu = mtu
            }
            self.configuration = configuration
        }
    }

    /// Firecracker's "entropy" object may carry a "rate_limiter"; its members are not
    /// checked (as before), only that it is an object.
    struct Entropy {}

    var bootSource: BootSource?
    var drives: [Drive]?
    var vsock: Vsock?
    var entropy: Entropy?
    var networkInterfaces: [NetworkInterface]?
    var machineConfig: MachineConfig?
    var console: String?
    var hiddenCPUFeatures: [String]?
    var pvmCompatibility: String?

    static let keys = ["boot-source", "machine-config", "console", "hide-cpu-features", "pvm-compat", "drives", "vsock", "entropy",
                       "network-interfaces"]

    init(_ document: JSONValue) throws {
        let top = try Section(document, path: "", section: "top level", known: ConfigurationFile.keys)
        bootSource = try top.section("boot-source", known: BootSource.keys).map(BootSource.init)
        machineConfig = try top.section("machine-config", known: MachineConfig.keys).map(MachineConfig.init)
        console = try top.string("console")
        hiddenCPUFeatures = try top.strings("hide-cpu-features")
        pvmCompatibility = try top.string("pvm-compat")
        drives = try top.sections("drives", known: Drive.keys)?.map(Drive.init)
        vsock = try top.section("vsock", known: Vsock.keys).map(Vsock.init)
        entropy = try top.section("entropy", known: nil).map { _ in Entropy() }
        networkInterfaces = try top.sections("network-interfaces", known: NetworkInterface.keys)?.map(NetworkInterface.init)
    }

    static func load(path: String) throws -> ConfigurationFile {
        let bytes = try readFile(path)
        let document: JSONValue
        do {
            document = try JSONValue(parsing: bytes)
        } catch {
            throw ConfigurationFileError.invalid(path: path, reason: "not valid JSON (\(error))")
        }
        do {
            return try ConfigurationFile(document)
        } catch let error as ConfigurationFileError {
            throw ConfigurationFileError.invalid(path: path, reason: error.description)
        }
    }

    /// Configuration files are small; anything bigger than this is a mistake.
    static let maximumFileSize = 1 << 20

    /// The whole file, read with plain open/read (no Foundation).
    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ConfigurationFileError.unreadable(path: path, reason: errorText(errno)) }
        defer { close(fd) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ConfigurationFileError.unreadable(path: path, reason: errorText(errno))
            }
            if count == 0 { return contents }
            contents.append(contentsOf: chunk[0..<count])
            if contents.count > maximumFileSize {
                throw ConfigurationFileError.unreadable(path: path, reason: "larger than \(maximumFileSize >> 20) MiB")
            }
        }
    }

    static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}

/// One JSON object of the configuration, with typed, path-named access to its members.
struct Section {
    let object: JSONObject
    /// Where the object is, for messages: "" (top level), "boot-source", "drives[0]".
    let path: String

    /// Checks that `value` is an object and, when `known` is given, that it has no other keys.
    init(_ value: JSONValue, path: String, section: String, known: [String]?) throws {
        guard case .object(let object) = value else {
            throw ConfigurationFileError.shape("\(path.isEmpty ? "the top level" : path): expected an object, found \(value.kindDescription)")
        }
        if let known, let unknown = object.keys.first(where: { !known.contains($0) }) {
            throw ConfigurationFileError.unknownKey(unknown, section: section)
        }
        self.object = object
        self.path = path
    }

    func location(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// The member's value; nil when the key is absent or its value is null.
    func value(_ key: String) -> JSONValue? {
        guard let value = object[key], !value.isNull else { return nil }
        return value
    }

    func mismatch(_ where: String, expected: String, found value: JSONValue) -> ConfigurationFileError {
        .shape("\(`where`): expected \(expected), found \(value.kindDescription)")
    }

    func string(_ key: String) throws -> String? {
        guard let value = value(key) else { return nil }
        guard case .string(let text) = value else { throw mismatch(location(key), expected: "a string", found: value) }
        return text
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = value(key) else { return nil }
        guard case .bool(let flag) = value else { throw mismatch(location(key), expected: "true or false", found: value) }
        return flag
    }

    func integer<T: FixedWidthInteger>(_ key: String, as type: T.Type) throws -> T? {
        guard let value = value(key) else { return nil }
        guard case .number(let number) = value else { throw mismatch(location(key), expected: "an integer", found: value) }
        guard number.isIntegral else {
            throw ConfigurationFileError.shape("\(location(key)): expected an integer, found \(number)")
        }
        guard let integer = number.integer(as: T.self) else {
            throw ConfigurationFileError.shape("\(location(key)): \(number) is out of range (\(T.min) to \(T.max))")
        }
        return integer
    }

    func strings(_ key: String) throws -> [String]? {
        guard let value = value(key) else { return nil }
        guard case .array(let elements) = value else { throw mismatch(location(key), expected: "an array of strings", found: value) }
        return try elements.enumerated().map { index, element in
            guard case .string(let text) = element else {
                throw mismatch("\(location(key))[\(index)]", expected: "a string", found: element)
            }
            return text
        }
    }

    /// The member as an object (section name = its key, for unknown-key messages).
    func section(_ key: String, known: [String]?) throws -> Section? {
        guard let value = value(key) else { return nil }
        return try Section(value, path: location(key), section: key, known: known)
    }

    /// The member as an array of objects, each checked against `known`.
    func sections(_ key: String, known: [String]?) throws -> [Section]? {
        guard let value = value(key) else { return nil }
        guard case .array(let elements) = value else { throw mismatch(location(key), expected: "an array", found: value) }
        return try elements.enumerated().map { index, element in
            try Section(element, path: "\(location(key))[\(index)]", section: key, known: known)
        }
    }

    /// `value`, or the error for a required key that is missing or null.
    func required<T>(_ value: T?, _ key: String) throws -> T {
        if let value { return value }
        if object[key] != nil { throw ConfigurationFileError.shape("\(location(key)): must not be null") }
        throw ConfigurationFileError.shape("\(path.isEmpty ? "the top level" : path): missing key '\(key)'")
    }
}

enum ConfigurationFileError: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case unknownKey(String, section: String)
    case unsupported(String)
    /// Valid JSON, but a value of the wrong type or range, or a required key missing.
    case shape(String)
    case invalid(path: String, reason: String)

    var description: String {
        switch self {
        case .unreadable(let path, let reason): return "cannot read configuration file '\(path)': \(reason)"
        case .unknownKey(let key, let section): return "unknown key '\(key)' in \(section)"
        case .unsupported(let what): return "unsupported setting: \(what)"
        case .shape(let what): return "not valid JSON of the expected shape (\(what))"
        case .invalid(let path, let reason): return "invalid configuration file '\(path)': \(reason)"
        }
    }
}
