import AgentProtocol
import CAgentLinux
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// A root shell for whoever connects to the debug port (`kata-runtime exec SANDBOX`),
/// enabled only when the host asks for it: `agent.debug_console` on the guest's kernel
/// command line (Kata's parameter; `agent.debug_console_vport=N` moves it from port
/// 1026), or `--debug-console unix:PATH` for a host-process agent.
///
/// Each connection gets /bin/sh on a fresh pty, in its own session with the pty as its
/// controlling terminal (job control, Ctrl-C). The guest image must carry a shell:
/// images/build-agent-image.sh --with-shell (or build-agent-initrd.sh --with-shell) adds
/// a static busybox.
public enum DebugConsole {
    static let shell = "/bin/sh"

    /// The endpoint the kernel command line asks for, if any.
    public static func endpoint(fromKernelCommandLine commandLine: String) -> AgentEndpoint? {
        let words = commandLine.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        guard words.contains(where: { $0 == "agent.debug_console" || $0 == "agent.debug_console=1" || $0 == "agent.debug_console=true" }) else {
            return nil
        }
        for word in words where word.hasPrefix("agent.debug_console_vport=") {
            if let port = UInt32(word.dropFirst("agent.debug_console_vport=".count)) { return .vsock(port: port) }
        }
        return .vsock(port: AgentService.debugConsoleVsockPort)
    }

    /// Listens on `endpoint` on a thread of its own; never returns an error to the caller
    /// (the console is a debugging aid, the agent serves without it).
    public static func start(_ endpoint: AgentEndpoint, log: @escaping @Sendable (String) -> Void) {
        DetachedThread.start {
            while true {
                do {
                    let listener = try AgentListener(endpoint)
                    log("debug console on \(endpoint)")
                    while let connection = listener.accept() {
                        DetachedThread.start { serve(connection, log: log) }
                    }
                    listener.close()
                } catch {
                    log("debug console: cannot listen on \(endpoint): \(error)")
                }
                sleep(1)
            }
        }
    }

    static func serve(_ connection: Int32, log: @Sendable (String) -> Void) {
        defer { close(connection) }
        guard access(shell, X_OK) == 0 else {
            DescriptorIO.writeAll(connection, Array("kata-agent: no \(shell) in this guest: boot an agent image built with images/build-agent-image.sh --with-shell\n".utf8))
            return
        }
        var master: Int32 = -1, slave: Int32 = -1
        guard kasa_open_pty(&master, &slave) == 0 else {
            DescriptorIO.writeAll(connection, Array("kata-agent: cannot open a pty: \(String(cString: strerror(errno)))\n".utf8))
            return
        }
        defer { close(master) }
        guard let pid = spawnShell(on: slave) else {
            close(slave)
            DescriptorIO.writeAll(connection, Array("kata-agent: cannot start \(shell): \(String(cString: strerror(errno)))\n".utf8))
            return
        }
        close(slave)
        let terminal = master
        log("debug console: shell \(pid) started")
        // Connection -> pty on its own thread; pty -> connection here until the shell's
        // side closes (it exited). The reaper collects the shell.
        DetachedThread.start {
            while true {
                let bytes = DescriptorIO.readSome(connection)
                if bytes.isEmpty { break }
                if !DescriptorIO.writeAll(terminal, bytes) { break }
            }
            // The user went away: hang up the shell's terminal.
            kill(-pid, SIGHUP)
        }
        while true {
            let bytes = DescriptorIO.readSome(master)
            if bytes.isEmpty { break }
            if !DescriptorIO.writeAll(connection, bytes) { break }
        }
        shutdown(connection, Int32(SHUT_RDWR))
        log("debug console: shell \(pid) ended")
    }

    /// /bin/sh -i in a new session whose controlling terminal is the pty: glibc's
    /// posix_spawn runs setsid before the file actions, so opening the slave by name
    /// (no O_NOCTTY) makes it the session's terminal.
    private static func spawnShell(on slave: Int32) -> pid_t? {
        guard let path = readLink("/proc/self/fd/\(slave)") else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, path, O_RDWR, 0)
        posix_spawn_file_actions_adddup2(&actions, 0, 1)
        posix_spawn_file_actions_adddup2(&actions, 0, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        let setsid: Int32 = 0x80  // POSIX_SPAWN_SETSID (glibc 2.26+; hidden behind _GNU_SOURCE)
        posix_spawnattr_setflags(&attributes, Int16(Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) | setsid))
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(shell), strdup("-i"), nil]
        defer { argv.forEach { free($0) } }
        let environment = InheritedEnvironment.adding(to: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm", "HOME=/", "PS1=kasa-debug# "])
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, shell, &actions, &attributes, argv, envp)
        guard result == 0 else {
            errno = result
            return nil
        }
        ChildReaper.shared.childStarted()
        return pid
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
