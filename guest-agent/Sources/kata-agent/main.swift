import KataAgentCore

// Container-init mode first: a re-executed agent must not start any thread before it forks.
runContainerInitIfRequested()
AgentMain.run(arguments: Array(CommandLine.arguments.dropFirst()))
