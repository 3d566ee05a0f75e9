import VMM
#if canImport(Glibc)
import Glibc
#endif

enum ConsoleChoice {
    static func parse(_ text: String) throws -> ConsoleOutput {
        switch text {
        case "stdout", "-": return .standardOutput
        case "none", "off": return .discard
        case "": throw VMMError.consoleFileUnwritable(path: "", reason: "empty console destination")
        default: return .file(path: text)
        }
    }

    /// Standard input is worth forwarding when it is a terminal, pipe or file — not /dev/null.
    static var standardInputIsReadable: Bool {
        var status = stat()
        guard fstat(STDIN_FILENO, &status) == 0 else { return false }
        let kind = status.st_mode & S_IFMT
        return kind == S_IFIFO || kind == S_IFREG || kind == S_IFSOCK
    }
}
