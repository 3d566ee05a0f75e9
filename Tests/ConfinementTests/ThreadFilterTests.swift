import Confinement
import Foundation
import HostOS
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Real filters on real threads of the test process, in log mode (a refused call fails with
/// ENOSYS instead of killing the test runner): what a role refuses and allows, and that a
/// filter and a capability drop stay on the thread that loaded them.
@Suite(.serialized) struct ThreadFilterTests {
    struct Outcome: Sendable {
        var results: [String: Int32] = [:]
        var capabilities = ""
        var setupError: String?
    }

    /// Runs `body` on a new thread confined as `role`; returns what it recorded.
    static func confined(as role: ThreadRole, _ body: @escaping @Sendable (inout Outcome) -> Void) throws -> Outcome {
        let box = Box()
        let thread = try JoinableThread(name: "filter-test") {
            var outcome = Outcome()
            do {
                try VMMConfinement.forbidNewPrivileges()
                try VMMConfinement.reportViolations()
                try VMMConfinement.confineCurrentThread(as: role, label: "filter-test", mode: .log)
                body(&outcome)
            } catch {
                outcome.setupError = "\(error)"
            }
            box.set(outcome)
        }
        thread.join()
        return box.get()
    }

    final class Box: @unchecked Sendable {
        private let lock = Lock()
        private var value = Outcome()
        func set(_ outcome: Outcome) { lock.withLock { value = outcome } }
        func get() -> Outcome { lock.withLock { value } }
    }

    /// The calling thread's effective capabilities, as /proc shows them.
    static func effectiveCapabilities() -> String {
        guard let text = try? String(contentsOfFile: "/proc/thread-self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }) else { return "unreadable" }
        return line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces)
    }

    /// 0 when `call` succeeded (closing what it returned), else its errno.
    static func attempt(_ result: Int32) -> Int32 {
        if result >= 0 { close(result); return 0 }
        return errno
    }

    @Test func theEventLoopOpensUnixSocketsOnly() throws {
        let outcome = try Self.confined(as: .events) { outcome in
            outcome.results["unix"] = Self.attempt(socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0))
            outcome.results["inet"] = Self.attempt(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0))
            outcome.results["open"] = Self.attempt(open("/dev/null", O_RDONLY))
        }
        #expect(outcome.setupError == nil, "\(outcome.setupError ?? "")")
        #expect(outcome.results["unix"] == 0)
        #expect(outcome.results["inet"] == ENOSYS, "an IPv4 socket from the event loop must be refused")
        #expect(outcome.results["open"] == ENOSYS, "the event loop opens no files after set-up")
        // The test's own thread is not filtered.
        #expect(Self.attempt(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)) == 0)
    }

    @Test func noThreadMapsExecutableMemoryOrSignalsOtherProcesses() throws {
        let outcome = try Self.confined(as: .vcpu) { outcome in
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let data = mmap(nil, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            outcome.results["mmap rw"] = data == MAP_FAILED ? errno : 0
            outcome.results["mprotect exec"] = mprotect(data, page, PROT_READ | PROT_EXEC) == 0 ? 0 : errno
            let code = mmap(nil, page, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            outcome.results["mmap exec"] = code == MAP_FAILED ? errno : 0
            munmap(data, page)
            // Signal 0 only checks: harmless even if it were allowed.
            outcome.results["kill other"] = kill(getppid(), 0) == 0 ? 0 : errno
            outcome.results["signal own thread"] = pthread_kill(pthread_self(), 0)
            // chroot("/") changes nothing even if allowed (and the thread has no capability for it).
            outcome.results["chroot"] = chroot("/") == 0 ? 0 : errno
        }
        #expect(outcome.setupError == nil, "\(outcome.setupError ?? "")")
        #expect(outcome.results["mmap rw"] == 0)
        #expect(outcome.results["mprotect exec"] == ENOSYS)
        #expect(outcome.results["mmap exec"] == ENOSYS)
        #expect(outcome.results["kill other"] == ENOSYS)
        #expect(outcome.results["signal own thread"] == 0, "tgkill within the process stays allowed")
        #expect(outcome.results["chroot"] == ENOSYS)
    }

    @Test func capabilitiesDropPerThread() throws {
        let before = Self.effectiveCapabilities()
        try #require(before != "unreadable" && before != "0000000000000000", "these tests run as root with capabilities")
        // The api role may open and read files, so the thread can look at itself.
        let api = try Self.confined(as: .api) { $0.capabilities = Self.effectiveCapabilities() }
        let workers = try Self.confined(as: .fileSystem) { $0.capabilities = Self.effectiveCapabilities() }
        #expect(api.setupError == nil && workers.setupError == nil)
        #expect(api.capabilities == "0000000000000000")
        #expect(workers.capabilities == "000000000000001f", "CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID")
        #expect(Self.effectiveCapabilities() == before, "the test's own thread keeps its capabilities")
    }
}
