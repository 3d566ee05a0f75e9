import AgentProtocol
import CAgentLinux
#if canImport(Glibc)
import Glibc
#endif

/// Creates a process's stdio (pipes, or a pty for `terminal`), launches it and wraps it
/// in a ManagedProcess whose output buffers are already draining.
enum ProcessSpawner {
    static func spawn(containerID: String, execID: String, spec: ContainerLaunchSpec,
                      launcher: any ProcessLauncher) throws -> ManagedProcess {
        if spec.terminal {
            var master: Int32 = -1, slave: Int32 = -1
            guard kasa_open_pty(&master, &slave) == 0 else {
                throw AgentError(.internal, "cannot allocate a pty: \(String(cString: strerror(errno)))")
            }
            defer { close(slave) }
            let launched: any LaunchedProcess
            do {
                launched = try launcher.launch(spec, stdio: .terminal(slave: slave))
            } catch {
                close(master)
                throw error
            }
            let output = OutputBuffer()
            output.drain(dup(master))
            return ManagedProcess(containerID: containerID, execID: execID, launched: launched, stdin: master,
                                  stdout: output, stderr: nil, ptyMaster: master)
        }
        var input: [Int32] = [0, 0], output: [Int32] = [0, 0], errors: [Int32] = [0, 0]
        guard kasa_pipe_cloexec(&input) == 0 else { throw AgentError(.internal, "pipe: \(String(cString: strerror(errno)))") }
        guard kasa_pipe_cloexec(&output) == 0 else {
            close(input[0]); close(input[1])
            throw AgentError(.internal, "pipe: \(String(cString: strerror(errno)))")
        }
        guard kasa_pipe_cloexec(&errors) == 0 else {
            for descriptor in input + output { close(descriptor) }
            throw AgentError(.internal, "pipe: \(String(cString: strerror(errno)))")
        }
        let launched: any LaunchedProcess
        do {
            launched = try launcher.launch(spec, stdio: .pipes(stdin: input[0], stdout: output[1], stderr: errors[1]))
        } catch {
            for descriptor in input + output + errors { close(descriptor) }
            throw error
        }
        // The child has its ends now; keeping ours open would hide its end of stream.
        close(input[0]); close(output[1]); close(errors[1])
        let stdout = OutputBuffer(), stderr = OutputBuffer()
        stdout.drain(output[0])
        stderr.drain(errors[0])
        return ManagedProcess(containerID: containerID, execID: execID, launched: launched, stdin: input[1],
                              stdout: stdout, stderr: stderr, ptyMaster: nil)
    }
}
