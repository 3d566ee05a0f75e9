#if canImport(Glibc)
import Glibc
#endif

/// This process as the host sees it.
enum HostProcess {
    /// Its pid in the host's PID namespace: the first of /proc/self/status's NSpid (read
    /// while /proc is still the host's: before the jail). In a PID namespace of its own
    /// getpid() is 1 for every VMM, no name to tell their files apart by.
    static var outermostPID: Int32 {
        let own = getpid()
        guard own == 1, let file = fopen("/proc/self/status", "r") else { return own }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let text = line.map({ String(cString: $0) }) {
            guard text.hasPrefix("NSpid:") else { continue }
            let fields = text.dropFirst("NSpid:".count).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
            return fields.first.flatMap { Int32($0) } ?? own
        }
        return own
    }
}
