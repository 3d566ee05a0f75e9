import SharedFileSystem
import VMM

/// Parses `--shared-dir tag=TAG,path=DIR[,readonly=on|off][,cache=never|auto|always]`.
enum SharedDirectorySpecification {
    static func parse(_ text: String) throws -> SharedDirectoryConfiguration {
        var tag: String?
        var path: String?
        var readOnly = false
        var cache = SharedFileSystemCache.auto
        for field in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = field.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw invalid(text, "'\(field)' is not key=value") }
            switch parts[0] {
            case "tag":
                guard !parts[1].isEmpty, parts[1].utf8.count <= 36 else { throw invalid(text, "the tag must be 1 to 36 bytes") }
                tag = parts[1]
            case "path":
                guard parts[1].hasPrefix("/") else { throw invalid(text, "path=\(parts[1]) is not an absolute path") }
                path = parts[1]
            case "readonly":
                guard parts[1] == "on" || parts[1] == "off" else { throw invalid(text, "readonly=\(parts[1]): use on or off") }
                readOnly = parts[1] == "on"
            case "cache":
                guard let choice = SharedFileSystemCache(rawValue: parts[1]) else {
                    throw invalid(text, "cache=\(parts[1]): use never, auto or always")
                }
                cache = choice
            default:
                throw invalid(text, "unknown key '\(parts[0])' (use tag, path, readonly, cache)")
            }
        }
        guard let tag, let path else { throw invalid(text, "tag= and path= are required") }
        return SharedDirectoryConfiguration(tag: tag, path: path, readOnly: readOnly, cache: cache)
    }

    static func invalid(_ text: String, _ reason: String) -> VMMError {
        .deviceSetupFailed("invalid --shared-dir '\(text)': \(reason)")
    }
}
