import CAgentLinux
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Work inside another network namespace (a pod's, named by a path such as
/// /var/run/netns/cni-...). setns(CLONE_NEWNET) changes only the calling thread, so the
/// work runs on a thread of its own that enters the namespace and ends with the work:
/// the process's other threads never change namespace. Sockets and TAPs opened there
/// stay in that namespace after the thread is gone.
public enum NetworkNamespace {
    static let cloneNewNet: Int32 = 0x4000_0000

    private final class Job: @unchecked Sendable {
        let path: String
        let body: () throws -> Void
        var failure: (any Error)?
        init(path: String, body: @escaping () throws -> Void) {
            self.path = path
            self.body = body
        }

        /// On the job's own thread: enter the namespace, do the work, keep what failed.
        func run() {
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                failure = NetlinkError.system("open network namespace \(path)", errno)
                return
            }
            defer { close(descriptor) }
            guard kasa_setns(descriptor, NetworkNamespace.cloneNewNet) == 0 else {
                failure = NetlinkError.system("enter network namespace \(path)", errno)
                return
            }
            do { try body() } catch { failure = error }
        }
    }

    /// Runs `body` in the namespace at `path` and returns what it returns (or throws what
    /// it throws); entering the namespace failing is `NetlinkError.system`.
    public static func run<T>(at path: String, _ body: @escaping () throws -> T) throws -> T {
        var result: T?
        let job = Job(path: path) { result = try body() }
        let thread: JoinableThread
        do {
            thread = try JoinableThread(name: "kasa-netns") { job.run() }
        } catch {
            throw NetlinkError.system("start a thread for network namespace \(path)", error.code)
        }
        thread.join()
        if let failure = job.failure { throw failure }
        guard let result else { throw NetlinkError.malformed("no result from network namespace \(path)") }
        return result
    }
}
