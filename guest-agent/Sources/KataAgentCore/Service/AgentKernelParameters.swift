/// The host's wishes for the agent as PID 1, which gets no arguments of its own: words
/// of the guest kernel's command line, in Kata's `agent.` namespace.
public enum AgentKernelParameters {
    public static let containerInitTimeoutKey = "agent.container_init_timeout"

    /// `agent.container_init_timeout=SECONDS`: how long a container's set-up (and then its
    /// exec) may take before CreateContainer (StartContainer) fails. The host sets it below
    /// its own call timeout so that the agent's precise error reaches it first; a guest
    /// whose kernel code is emulated (kvm_pvm) needs far longer than hardware.
    /// nil when absent or not a whole number of seconds in 1...3600.
    public static func containerInitTimeout(fromKernelCommandLine commandLine: String) -> Duration? {
        let prefix = containerInitTimeoutKey + "="
        let words = commandLine.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        guard let word = words.last(where: { $0.hasPrefix(prefix) }) else { return nil }
        return containerInitTimeout(parsing: word.dropFirst(prefix.count))
    }

    /// A container set-up limit as the command line and `--container-init-timeout` give
    /// it: whole seconds, 1 to 3600; nil otherwise.
    public static func containerInitTimeout(parsing text: Substring) -> Duration? {
        guard let seconds = Int(text), (1...3600).contains(seconds) else { return nil }
        return .seconds(seconds)
    }

    public static let containerInitTimeoutRule = "use whole seconds, 1 to 3600"
}
