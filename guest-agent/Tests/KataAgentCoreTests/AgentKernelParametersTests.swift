import Testing
@testable import KataAgentCore

/// How long container set-up may take: the host says so on the kernel command line (the
/// agent as PID 1 has no arguments), a host-process agent takes an option.
struct AgentKernelParametersTests {
    @Test func theContainerInitTimeoutComesFromTheKernelCommandLine() {
        let parse = AgentKernelParameters.containerInitTimeout(fromKernelCommandLine:)
        #expect(parse("console=ttyS0 quiet agent.container_init_timeout=90\n") == .seconds(90))
        #expect(parse("console=ttyS0 quiet\n") == nil)
        // The last word wins, as with the kernel's own parameters.
        #expect(parse("agent.container_init_timeout=10 agent.container_init_timeout=20") == .seconds(20))
        for bad in ["agent.container_init_timeout=", "agent.container_init_timeout=0", "agent.container_init_timeout=-5",
                    "agent.container_init_timeout=1.5", "agent.container_init_timeout=86400", "xagent.container_init_timeout=9"] {
            #expect(parse(bad) == nil, "\(bad)")
        }
    }

    @Test func aHostProcessAgentTakesItAsAnOption() {
        var ignored: [String] = []
        let options = AgentMain.parse(["--container-init-timeout", "45"], log: { ignored.append($0) })
        #expect(options.containerInitTimeout == .seconds(45))
        #expect(ignored.isEmpty)
        let bad = AgentMain.parse(["--container-init-timeout", "soon"], log: { ignored.append($0) })
        #expect(bad.containerInitTimeout == nil)
        #expect(ignored.contains { $0.contains("--container-init-timeout soon") }, "\(ignored)")
    }
}
