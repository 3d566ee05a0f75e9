import Confinement
import SharedFileSystem
import VMM

/// What a jailed kasa-vmm (`--jail DIR`) keeps of the host: every path its configuration
/// names, read-only unless the VMM writes it, plus `--jail-path` (read-only) and
/// `--jail-path-writable` (directories a runtime will name later: the image cache for
/// drive slots, a template's directory for snapshots). Files the VMM creates (sockets, the
/// console log, a profile) keep their directory. Paths under /dev and /proc are the
/// jail's own. A restore passes the configuration the snapshot's state file describes
/// (`MicroVM.configuration(restoring:settings:)`): its kernel path is the snapshot's
/// directory, and its drives are the ones the snapshot's VM had.
enum JailPlan {
    static func paths(for configuration: VMConfiguration, apiSocket: String?, extra: [JailPath]) -> [JailPath] {
        var paths = [JailPath(configuration.kernelPath, writable: false)]
        if let initrd = configuration.initrdPath { paths.append(JailPath(initrd, writable: false)) }
        paths += configuration.drives.map { JailPath($0.path, writable: !$0.readOnly) }
        paths += configuration.sharedDirectories.map { JailPath($0.path, writable: !$0.readOnly) }
        paths += createdFiles(vsock: configuration.vsock?.udsPath, apiSocket: apiSocket, console: configuration.console,
                              profile: configuration.profilePath)
        return (paths + extra).filter { !isJailsOwn($0.path) }
    }

    /// The jailed VMM's open-file limit (soft and hard): what its own work takes (devices'
    /// event descriptors, vsock connections: a guest opening connections without end meets
    /// it and is refused, the VMM goes on) plus, for each shared directory, every node and
    /// handle its tables allow a guest (`SharedDirectoryOptions`) and room for the workers.
    static func openFileLimit(for configuration: VMConfiguration) -> Int {
        let table = SharedDirectoryOptions()
        return baseOpenFiles + configuration.sharedDirectories.count * (table.maximumNodes + table.maximumHandles + 1024)
    }

    static let baseOpenFiles = 4096

    private static func createdFiles(vsock: String?, apiSocket: String?, console: ConsoleOutput, profile: String?) -> [JailPath] {
        var files = [vsock, apiSocket, profile].compactMap { $0 }
        if case .file(let path) = console { files.append(path) }
        return files.map { JailPath(directory(of: $0), writable: true) }
    }

    /// The directory holding `path` ("." for a bare name: the working directory).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func isJailsOwn(_ path: String) -> Bool {
        path == "/dev" || path.hasPrefix("/dev/") || path == "/proc" || path.hasPrefix("/proc/")
    }
}
