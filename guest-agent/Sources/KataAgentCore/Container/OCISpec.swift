#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The subset of an OCI runtime-spec config.json (v1.x) the agent acts on. Keys it does not
/// know (annotations, hooks, linux.devices' node list...) are ignored. `parse` decodes and validates;
/// `launchSpec` turns it into what `ContainerLauncher` runs.
public struct OCISpec: Codable, Sendable, Equatable {
    public var ociVersion: String
    public var process: Process?
    public var root: Root?
    public var hostname: String?
    public var mounts: [Mount]?
    public var linux: Linux?

    public init(ociVersion: String = "1.1.0", process: Process? = nil, root: Root? = nil, hostname: String? = nil,
                mounts: [Mount]? = nil, linux: Linux? = nil) {
        self.ociVersion = ociVersion
        self.process = process
        self.root = root
        self.hostname = hostname
        self.mounts = mounts
        self.linux = linux
    }

    public struct Process: Codable, Sendable, Equatable {
        public var terminal: Bool?
        public var user: User?
        public var args: [String]?
        public var env: [String]?
        public var cwd: String?
        public var capabilities: Capabilities?
        public var rlimits: [Rlimit]?
        public var noNewPrivileges: Bool?

        public init(terminal: Bool? = nil, user: User? = nil, args: [String]? = nil, env: [String]? = nil,
                    cwd: String? = nil, capabilities: Capabilities? = nil, rlimits: [Rlimit]? = nil,
                    noNewPrivileges: Bool? = nil) {
            self.terminal = terminal
            self.user = user
            self.args = args
            self.env = env
            self.cwd = cwd
            self.capabilities = capabilities
            self.rlimits = rlimits
            self.noNewPrivileges = noNewPrivileges
        }
    }

    public struct User: Codable, Sendable, Equatable {
        public var uid: UInt32
        public var gid: UInt32
        public var additionalGids: [UInt32]?

        public init(uid: UInt32, gid: UInt32, additionalGids: [UInt32]? = nil) {
            self.uid = uid
            self.gid = gid
            self.additionalGids = additionalGids
        }

        enum CodingKeys: String, CodingKey { case uid, gid, additionalGids }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            uid = try container.decodeUnsigned(UInt32.self, forKey: .uid)
            gid = try container.decodeUnsigned(UInt32.self, forKey: .gid)
            additionalGids = try container.decodeUnsignedArrayIfPresent(UInt32.self, forKey: .additionalGids)
        }
    }

    public struct Capabilities: Codable, Sendable, Equatable {
        public var bounding: [String]?
        public var effective: [String]?
        public var inheritable: [String]?
        public var permitted: [String]?
        public var ambient: [String]?

        public init(bounding: [String]? = nil, effective: [String]? = nil, inheritable: [String]? = nil,
                    permitted: [String]? = nil, ambient: [String]? = nil) {
            self.bounding = bounding
            self.effective = effective
            self.inheritable = inheritable
            self.permitted = permitted
            self.ambient = ambient
        }
    }

    public struct Rlimit: Codable, Sendable, Equatable {
        public var type: String
        public var hard: UInt64
        public var soft: UInt64

        public init(type: String, hard: UInt64, soft: UInt64) {
            self.type = type
            self.hard = hard
            self.soft = soft
        }

        enum CodingKeys: String, CodingKey { case type, hard, soft }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            type = try container.decode(String.self, forKey: .type)
            hard = try container.decodeUnsigned(UInt64.self, forKey: .hard)
            soft = try container.decodeUnsigned(UInt64.self, forKey: .soft)
        }
    }

    public struct Root: Codable, Sendable, Equatable {
        public var path: String
        public var readonly: Bool?

        public init(path: String, readonly: Bool? = nil) {
            self.path = path
            self.readonly = readonly
        }
    }

    public struct Mount: Codable, Sendable, Equatable {
        public var destination: String
        public var type: String?
        public var source: String?
        public var options: [String]?

        public init(destination: String, type: String? = nil, source: String? = nil, options: [String]? = nil) {
            self.destination = destination
            self.type = type
            self.source = source
            self.options = options
        }
    }

    public struct Linux: Codable, Sendable, Equatable {
        public var namespaces: [Namespace]?
        public var resources: Resources?
        public var maskedPaths: [String]?
        public var readonlyPaths: [String]?
        public var cgroupsPath: String?
        public var seccomp: SeccompProfile?

        public init(namespaces: [Namespace]? = nil, resources: Resources? = nil, maskedPaths: [String]? = nil,
                    readonlyPaths: [String]? = nil, cgroupsPath: String? = nil, seccomp: SeccompProfile? = nil) {
            self.seccomp = seccomp
            self.namespaces = namespaces
            self.resources = resources
            self.maskedPaths = maskedPaths
            self.readonlyPaths = readonlyPaths
            self.cgroupsPath = cgroupsPath
        }
    }

    public struct Namespace: Codable, Sendable, Equatable {
        /// pid, network, mount, ipc, uts, user, cgroup or time.
        public var type: String
        public var path: String?

        public init(type: String, path: String? = nil) {
            self.type = type
            self.path = path
        }
    }

    public struct Resources: Codable, Sendable, Equatable {
        public var memory: Memory?
        public var cpu: CPU?
        public var pids: Pids?
        /// The device cgroup rules, in order: the last one that matches decides.
        public var devices: [DeviceRule]?

        public init(memory: Memory? = nil, cpu: CPU? = nil, pids: Pids? = nil, devices: [DeviceRule]? = nil) {
            self.memory = memory
            self.cpu = cpu
            self.pids = pids
            self.devices = devices
        }

        /// `linux.resources.devices[]`: which device nodes the container may create (m),
        /// read (r) and write (w). A missing type, major or minor matches any.
        public struct DeviceRule: Codable, Sendable, Equatable {
            public var allow: Bool
            /// "a" (all), "c" (char) or "b" (block).
            public var type: String?
            public var major: Int64?
            public var minor: Int64?
            /// A subset of "rwm"; missing means all three.
            public var access: String?

            public init(allow: Bool, type: String? = nil, major: Int64? = nil, minor: Int64? = nil, access: String? = nil) {
                self.allow = allow
                self.type = type
                self.major = major
                self.minor = minor
                self.access = access
            }
        }

        public struct Memory: Codable, Sendable, Equatable {
            /// Bytes; -1 = unlimited.
            public var limit: Int64?
            public init(limit: Int64? = nil) { self.limit = limit }
        }

        public struct CPU: Codable, Sendable, Equatable {
            public var shares: UInt64?
            /// Microseconds per period; -1 = unlimited.
            public var quota: Int64?
            public var period: UInt64?
            public init(shares: UInt64? = nil, quota: Int64? = nil, period: UInt64? = nil) {
                self.shares = shares
                self.quota = quota
                self.period = period
            }

            enum CodingKeys: String, CodingKey { case shares, quota, period }

            public init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                shares = try container.decodeUnsignedIfPresent(UInt64.self, forKey: .shares)
                quota = try container.decodeIfPresent(Int64.self, forKey: .quota)
                period = try container.decodeUnsignedIfPresent(UInt64.self, forKey: .period)
            }
        }

        public struct Pids: Codable, Sendable, Equatable {
            /// 0 or -1 = unlimited.
            public var limit: Int64
            public init(limit: Int64) { self.limit = limit }
        }
    }
}

/// Why a config.json (or an exec's process JSON) is unusable. `description` names the
/// field, e.g. "process.cwd: must be an absolute path, got \"tmp\"".
public struct OCISpecError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension OCISpec {
    public static let namespaceTypes: Set<String> = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"]

    /// Decodes and validates a config.json.
    public static func parse(_ json: [UInt8]) throws(OCISpecError) -> OCISpec {
        let spec = try decode(OCISpec.self, from: json, what: "config.json")
        try spec.validate()
        return spec
    }

    /// Checks what the launcher relies on: a process with args and an absolute cwd,
    /// KEY=VALUE env, known and unique rlimits with soft <= hard, known capabilities,
    /// absolute mount destinations and paths, mount types, known namespace types.
    public func validate() throws(OCISpecError) {
        if ociVersion.isEmpty { throw OCISpecError("ociVersion: must not be empty") }
        guard let process else { throw OCISpecError("process: required to start a container") }
        try process.validate(path: "process")
        if let root, root.path.isEmpty { throw OCISpecError("root.path: must not be empty") }
        for (index, mount) in (mounts ?? []).enumerated() {
            let path = "mounts[\(index)]"
            try Self.requireAbsolute(mount.destination, "\(path).destination")
            let options = MountOptions(parsing: mount.options ?? [])
            if (mount.type ?? "").isEmpty && !options.isBind {
                throw OCISpecError("\(path).type: required unless the options include bind or rbind")
            }
            if mount.type == "bind" || options.isBind, (mount.source ?? "").isEmpty {
                throw OCISpecError("\(path).source: a bind mount needs a source")
            }
        }
        if let linux {
            var seen: Set<String> = []
            for (index, namespace) in (linux.namespaces ?? []).enumerated() {
                guard Self.namespaceTypes.contains(namespace.type) else {
                    throw OCISpecError("linux.namespaces[\(index)].type: unknown namespace type \"\(namespace.type)\"")
                }
                guard seen.insert(namespace.type).inserted else {
                    throw OCISpecError("linux.namespaces[\(index)].type: \"\(namespace.type)\" appears twice")
                }
                if let path = namespace.path, !path.isEmpty {
                    try Self.requireAbsolute(path, "linux.namespaces[\(index)].path")
                }
            }
            for (index, path) in (linux.maskedPaths ?? []).enumerated() {
                try Self.requireAbsolute(path, "linux.maskedPaths[\(index)]")
            }
            for (index, path) in (linux.readonlyPaths ?? []).enumerated() {
                try Self.requireAbsolute(path, "linux.readonlyPaths[\(index)]")
            }
        }
    }

    /// The launch spec for this container with its root at `rootfs` (an absolute path the
    /// agent prepared; root.path is not consulted). Relative bind-mount sources are
    /// resolved against `bundle`, and are an error without one.
    public func launchSpec(rootfs: String, bundle: String? = nil,
                           namespaces: ContainerLaunchSpec.Namespaces = .create,
                           cgroupPath: String? = nil) throws(OCISpecError) -> ContainerLaunchSpec {
        try validate()
        try Self.requireAbsolute(rootfs, "rootfs")
        guard let process else { throw OCISpecError("process: required to start a container") }
        var spec = try process.launchSpec(rootfs: rootfs, namespaces: namespaces, cgroupPath: cgroupPath)
        spec.readonlyRootfs = root?.readonly ?? false
        spec.hostname = hostname
        spec.maskedPaths = linux?.maskedPaths ?? []
        spec.readonlyPaths = linux?.readonlyPaths ?? []
        spec.seccomp = linux?.seccomp
        spec.mounts = try (mounts ?? []).enumerated().map { (index, mount) throws(OCISpecError) in
            let options = mount.options ?? []
            let isBind = mount.type == "bind" || MountOptions(parsing: options).isBind
            var source = mount.source ?? ""
            if isBind && !source.hasPrefix("/") {
                guard let bundle else {
                    throw OCISpecError("mounts[\(index)].source: relative bind source \"\(source)\" needs a bundle directory")
                }
                source = Self.resolve(source, against: bundle)
            }
            let type = (mount.type ?? "").isEmpty ? "bind" : mount.type!
            return ContainerLaunchSpec.Mount(destination: mount.destination, type: type, source: source, options: options)
        }
        return spec
    }

    /// The launch spec with the root taken from root.path, resolved against `bundle`
    /// when relative (as runc does with the bundle directory).
    public func launchSpec(bundle: String, namespaces: ContainerLaunchSpec.Namespaces = .create,
                           cgroupPath: String? = nil) throws(OCISpecError) -> ContainerLaunchSpec {
        guard let root else { throw OCISpecError("root: required to find the container's root filesystem") }
        try Self.requireAbsolute(bundle, "bundle")
        return try launchSpec(rootfs: Self.resolve(root.path, against: bundle), bundle: bundle,
                              namespaces: namespaces, cgroupPath: cgroupPath)
    }

    static func resolve(_ path: String, against directory: String) -> String {
        if path.hasPrefix("/") { return path }
        var relative = Substring(path)
        while relative.hasPrefix("./") { relative = relative.dropFirst(2) }
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        return relative.isEmpty || relative == "." ? base : base + "/" + relative
    }

    static func requireAbsolute(_ path: String, _ field: String) throws(OCISpecError) {
        guard path.hasPrefix("/") else {
            throw OCISpecError("\(field): must be an absolute path, got \"\(path)\"")
        }
    }

    /// JSONDecoder with errors that name the field ("process.user.uid: expected UInt32").
    static func decode<T: Decodable>(_ type: T.Type, from json: [UInt8], what: String) throws(OCISpecError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(json))
        } catch let error as DecodingError {
            throw OCISpecError(describe(error, what: what))
        } catch {
            throw OCISpecError("\(what): \(error)")
        }
    }

    static func describe(_ error: DecodingError, what: String) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            var text = ""
            for key in keys {
                if let index = key.intValue, key.stringValue == "Index \(index)" || Int(key.stringValue) == index {
                    text += "[\(index)]"
                } else {
                    text += (text.isEmpty ? "" : ".") + key.stringValue
                }
            }
            return text
        }
        func located(_ keys: [any CodingKey]) -> String {
            let p = path(keys)
            return p.isEmpty ? what : p
        }
        switch error {
        case let .keyNotFound(key, context):
            return "\(located(context.codingPath + [key])): required field missing"
        case let .typeMismatch(type, context):
            return "\(located(context.codingPath)): expected \(Self.jsonKind(type))"
        case let .valueNotFound(type, context):
            return "\(located(context.codingPath)): null where \(Self.jsonKind(type)) is expected"
        case let .dataCorrupted(context):
            if context.codingPath.isEmpty {
                return "\(what): invalid JSON (\(context.debugDescription))"
            }
            return "\(located(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(what): \(error)"
        }
    }

    static func jsonKind(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is UInt32.Type: "an unsigned 32-bit integer"
        case is UInt64.Type: "an unsigned 64-bit integer"
        case is Int64.Type, is Int.Type: "an integer"
        default:
            String(describing: type).hasPrefix("Array") ? "an array" : "an object"
        }
    }
}

extension OCISpec.Process {
    /// Decodes and validates an exec's process JSON (the "process" object alone).
    public static func parse(_ json: [UInt8]) throws(OCISpecError) -> OCISpec.Process {
        let process = try OCISpec.decode(OCISpec.Process.self, from: json, what: "process")
        try process.validate(path: "process")
        return process
    }

    public func validate(path: String) throws(OCISpecError) {
        guard let args, !args.isEmpty, !args[0].isEmpty else {
            throw OCISpecError("\(path).args: must name the program to run")
        }
        guard let cwd, !cwd.isEmpty else { throw OCISpecError("\(path).cwd: required") }
        try OCISpec.requireAbsolute(cwd, "\(path).cwd")
        for (index, variable) in (env ?? []).enumerated() where !variable.contains("=") || variable.hasPrefix("=") {
            throw OCISpecError("\(path).env[\(index)]: \"\(variable)\" is not KEY=VALUE")
        }
        var seen: Set<String> = []
        for (index, limit) in (rlimits ?? []).enumerated() {
            guard LinuxResourceLimits.number(of: limit.type) != nil else {
                throw OCISpecError("\(path).rlimits[\(index)].type: unknown rlimit \"\(limit.type)\"")
            }
            guard seen.insert(limit.type).inserted else {
                throw OCISpecError("\(path).rlimits[\(index)].type: \(limit.type) appears twice")
            }
            guard limit.soft <= limit.hard else {
                throw OCISpecError("\(path).rlimits[\(index)]: soft limit \(limit.soft) exceeds hard limit \(limit.hard)")
            }
        }
        if let capabilities {
            let sets: [(String, [String]?)] = [
                ("bounding", capabilities.bounding), ("effective", capabilities.effective),
                ("inheritable", capabilities.inheritable), ("permitted", capabilities.permitted),
                ("ambient", capabilities.ambient),
            ]
            for (name, list) in sets {
                let unknown = LinuxCapabilities.mask(of: list ?? []).unknown
                if let first = unknown.first {
                    throw OCISpecError("\(path).capabilities.\(name): unknown capability \"\(first)\"")
                }
            }
        }
    }

    /// This process as a launch spec, with everything container-wide left empty.
    public func launchSpec(rootfs: String, namespaces: ContainerLaunchSpec.Namespaces,
                           cgroupPath: String? = nil) throws(OCISpecError) -> ContainerLaunchSpec {
        try validate(path: "process")
        var spec = ContainerLaunchSpec(rootfs: rootfs, args: args ?? [], env: env ?? [], cwd: cwd ?? "/",
                                       uid: user?.uid ?? 0, gid: user?.gid ?? 0,
                                       additionalGids: user?.additionalGids ?? [],
                                       noNewPrivileges: noNewPrivileges ?? false,
                                       rlimits: (rlimits ?? []).map {
                                           ContainerLaunchSpec.ResourceLimit(type: $0.type, soft: $0.soft, hard: $0.hard)
                                       },
                                       namespaces: namespaces, cgroupPath: cgroupPath, terminal: terminal ?? false)
        if let capabilities {
            spec.capabilitySets = ContainerLaunchSpec.CapabilitySets(
                bounding: capabilities.bounding ?? [], effective: capabilities.effective ?? [],
                permitted: capabilities.permitted ?? [], inheritable: capabilities.inheritable ?? [],
                ambient: capabilities.ambient ?? [])
            spec.capabilities = capabilities.bounding ?? []
        }
        return spec
    }

    /// An exec into a running container: this process, joining the namespaces of
    /// `pid` (the container's first process) and the container's cgroup.
    /// An exec is filtered by the container's seccomp profile, as with runc.
    public func launchSpec(joining container: ContainerLaunchSpec, pid: Int32) throws(OCISpecError) -> ContainerLaunchSpec {
        var spec = try launchSpec(rootfs: container.rootfs, namespaces: .join(pid: pid), cgroupPath: container.cgroupPath)
        spec.seccomp = container.seccomp
        return spec
    }
}

/// Unsigned fields with a clear error for negative or too large numbers (JSONDecoder
/// reports those as "not valid JSON" with no field).
extension KeyedDecodingContainer {
    func decodeUnsigned<T: FixedWidthInteger & UnsignedInteger & Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        do {
            return try decode(type, forKey: key)
        } catch {
            throw outOfRange(type, forKey: key, error)
        }
    }

    func decodeUnsignedIfPresent<T: FixedWidthInteger & UnsignedInteger & Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeUnsigned(type, forKey: key)
    }

    func decodeUnsignedArrayIfPresent<T: FixedWidthInteger & UnsignedInteger & Decodable>(_ type: T.Type, forKey key: Key) throws -> [T]? {
        do {
            return try decodeIfPresent([T].self, forKey: key)
        } catch {
            if let numbers = try? decode([Int64].self, forKey: key),
               let bad = numbers.first(where: { $0 < 0 || UInt64($0) > UInt64(T.max) }) {
                throw DecodingError.dataCorruptedError(forKey: key, in: self,
                                                       debugDescription: "\(bad) is not an integer from 0 to \(T.max)")
            }
            throw error
        }
    }

    private func outOfRange<T: FixedWidthInteger & UnsignedInteger>(_ type: T.Type, forKey key: Key, _ error: any Error) -> any Error {
        if let number = try? decode(Int64.self, forKey: key), number < 0 || UInt64(number) > UInt64(T.max) {
            return DecodingError.dataCorruptedError(forKey: key, in: self,
                                                    debugDescription: "must be an integer from 0 to \(T.max), got \(number)")
        }
        if let number = try? decode(Double.self, forKey: key) {
            return DecodingError.dataCorruptedError(forKey: key, in: self,
                                                    debugDescription: "must be an integer from 0 to \(T.max), got \(number)")
        }
        return error
    }
}
