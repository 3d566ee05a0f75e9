import KataAgentCore

/// Container init mode: when the agent re-executes itself to start a container process
/// (`kata-agent __container-init`, see ContainerLauncher), run ContainerInit and never
/// return. Call this first thing in main, before anything starts a thread.
func runContainerInitIfRequested() {
    let arguments = CommandLine.arguments
    if arguments.count > 1 && arguments[1] == ContainerLauncher.initArgument {
        ContainerInit.main(arguments: arguments)
    }
}
