import VMM

/// Parses `--drive path=FILE,readonly=on,root=on,id=NAME` (QEMU/Cloud Hypervisor style).
enum DriveSpecification {
    static func parse(_ text: String) throws -> DriveConfiguration {
        var drive = DriveConfiguration(path: "")
        for field in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = field.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw invalid(text, "'\(field)' is not key=value") }
            switch parts[0] {
            case "path": drive.path = parts[1]
            case "readonly": drive.readOnly = try flag(parts[1], in: text)
            case "root": drive.isRoot = try flag(parts[1], in: text)
            case "id": drive.identifier = parts[1]
            default: throw invalid(text, "unknown key '\(parts[0])' (use path, readonly, root, id)")
            }
        }
        guard !drive.path.isEmpty else { throw invalid(text, "path= is required") }
        return drive
    }

    static func flag(_ value: String, in text: String) throws -> Bool {
        switch value {
        case "on", "true", "yes": return true
        case "off", "false", "no": return false
        default: throw invalid(text, "'\(value)' is not on or off")
        }
    }

    static func invalid(_ text: String, _ reason: String) -> VMMError {
        .deviceSetupFailed("invalid --drive '\(text)': \(reason)")
    }
}
