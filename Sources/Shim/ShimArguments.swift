/// The shim's command line as containerd writes it, Go `flag` style:
///   containerd-shim-kata-v2 -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] start
///   containerd-shim-kata-v2 -namespace NS -address ADDR -publish-binary BIN -id ID -bundle B delete
/// Flags take `-name value`, `-name=value` or `--name`; -debug is a boolean.
public struct ShimArguments: Sendable, Equatable {
    public enum Action: String, Sendable { case start, delete, serve }

    public var namespace = ""
    public var address = ""
    public var publishBinary = ""
    public var id = ""
    public var bundle: String?
    public var debug = false
    /// A configuration.toml from the runtime options containerd passed (CRI), for `serve`.
    public var configPath: String?
    public var action: Action

    static let valueFlags: Set<String> = ["namespace", "address", "publish-binary", "id", "bundle", "config", "socket"]

    public init(namespace: String = "", address: String = "", publishBinary: String = "", id: String = "",
                bundle: String? = nil, debug: Bool = false, configPath: String? = nil, action: Action) {
        self.namespace = namespace
        self.address = address
        self.publishBinary = publishBinary
        self.id = id
        self.bundle = bundle
        self.debug = debug
        self.configPath = configPath
        self.action = action
    }

    public init(parsing arguments: [String]) throws(ShimError) {
        var values: [String: String] = [:]
        var debug = false
        var positional: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-"), argument != "-" else { positional.append(argument); continue }
            var name = String(argument.drop { $0 == "-" })
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if name == "debug" || name == "v" {
                debug = value.map { $0 == "true" || $0 == "1" } ?? true
                continue
            }
            guard Self.valueFlags.contains(name) else { throw ShimError(.invalidArgument, "flag provided but not defined: -\(name)") }
            if value == nil {
                guard index < arguments.count else { throw ShimError(.invalidArgument, "flag needs an argument: -\(name)") }
                value = arguments[index]
                index += 1
            }
            values[name] = value
        }
        guard let word = positional.first, let action = Action(rawValue: word), positional.count == 1 else {
            throw ShimError(.invalidArgument, "usage: containerd-shim-kata-v2 [flags] start|delete (got \(positional))")
        }
        self.init(namespace: values["namespace"] ?? "", address: values["address"] ?? "",
                  publishBinary: values["publish-binary"] ?? "", id: values["id"] ?? "", bundle: values["bundle"],
                  debug: debug, configPath: values["config"], action: action)
        guard !id.isEmpty else { throw ShimError(.invalidArgument, "-id is required") }
        guard !namespace.isEmpty else { throw ShimError(.invalidArgument, "-namespace is required") }
    }

    /// The flags again (for the daemon the `start` command spawns).
    public func flags() -> [String] {
        var words = ["-namespace", namespace, "-address", address, "-publish-binary", publishBinary, "-id", id]
        if let bundle { words += ["-bundle", bundle] }
        if let configPath { words += ["-config", configPath] }
        if debug { words.append("-debug") }
        return words
    }
}
