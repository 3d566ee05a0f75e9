import AgentProtocol
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// The host end of kata-agent's debug console: a shell in a running sandbox's guest,
/// reached through the sandbox's hybrid vsock socket (`kata-runtime exec SANDBOX`).
public enum DebugConsoleClient {

    /// A connected stream to the guest's shell.
    public static func connect(sandboxID: String, configuration: RuntimeConfiguration) throws(RuntimeError) -> Int32 {
        let directory = configuration.runtime.sandboxDirectory(for: sandboxID)
        let socketPath = directory + "/vsock.sock"
        guard HostFile.isDirectory(directory) else {
            throw RuntimeError.invalidInput("no running sandbox \(sandboxID) (no \(directory))")
        }
        let descriptor: Int32
        switch UnixStream.connect(socketPath) {
        case .failure(let error):
            throw RuntimeError.sandbox("sandbox \(sandboxID) has no vsock socket yet (\(socketPath): \(error)); is it still booting?")
        case .success(let connected):
            descriptor = connected
        }
        _ = DescriptorIO.writeAll(descriptor, Array("CONNECT \(AgentService.debugConsoleVsockPort)\n".utf8))
        guard let reply = UnixStream.readLine(descriptor, timeout: 30), reply.hasPrefix("OK ") else {
            close(descriptor)
            throw RuntimeError.sandbox("sandbox \(sandboxID) does not serve a debug console: set debug_console_enabled = true in [agent.kata] before starting it (and boot an agent image with a shell: images/build-agent-image.sh --with-shell)")
        }
        return descriptor
    }

    /// Copies `input` to the console and the console to `output` until the shell ends
    /// (or the sandbox does).
    public static func bridge(_ console: Int32, input: Int32, output: Int32) {
        let cancel = StdinCancellation()
        DetachedThread.start {
            while let bytes = cancel.read(input), !bytes.isEmpty {
                if !DescriptorIO.writeAll(console, bytes) { return }
            }
        }
        while true {
            let bytes = DescriptorIO.readSome(console)
            if bytes.isEmpty { break }
            if !DescriptorIO.writeAll(output, bytes) { break }
        }
        cancel.cancel()
    }
}
