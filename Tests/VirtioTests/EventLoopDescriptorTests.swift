import Foundation
import HostOS
import Testing
import Virtio

/// What the event loop does when a registered descriptor number stops naming the file it
/// was registered for. Its handlers act on numbers (an ioeventfd's handler reads 8 bytes
/// from its number), so running one for another file is data loss: a pipe that took such
/// a number lost the first 8 bytes of every write (issue 15, fault 2).
@Suite struct EventLoopDescriptorTests {
    final class Calls: @unchecked Sendable {
        let monitor = Monitor()
        var names: [String] = []
        func add(_ name: String) { monitor.update { names.append(name) } }
        var all: [String] { monitor.withLock { names } }
    }

    static func pipeHolding(_ text: String) throws -> (read: Int32, write: Int32) {
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        try #require(DescriptorIO.writeAll(ends[1], Array(text.utf8)))
        return (ends[0], ends[1])
    }

    /// Two ready descriptors; whichever handler runs first in the round unregisters the
    /// other, puts a new pipe under its number (dup2: the number reused at once, as another
    /// thread's open could) and registers that. The other's old handler, polled in the same
    /// round, must not run: it would read 8 bytes of the new pipe's message.
    @Test func aHandlerDoesNotRunForAFileOpenedUnderItsNumberInTheSameRound() throws {
        let loop = try EventLoop()
        let calls = Calls()
        let first = try Self.pipeHolding("12345678"), second = try Self.pipeHolding("12345678")
        let replacement = try Self.pipeHolding("hi from kasa\n")
        defer { [first.read, first.write, second.read, second.write, replacement.read, replacement.write].forEach { close($0) } }
        let numbers = [first.read, second.read]
        for (index, number) in numbers.enumerated() {
            let other = numbers[1 - index]
            loop.register(number) { _ in
                // An ioeventfd's handler: read the counter's 8 bytes.
                var counter: UInt64 = 0
                _ = read(number, &counter, 8)
                calls.add("old \(number)")
                guard calls.all.count == 1 else { return }
                loop.unregister(other)
                _ = dup2(replacement.read, other)
                loop.register(other) { _ in calls.add("new \(other)") }
            }
        }
        loop.runReady()
        let ran = calls.all
        #expect(ran.count == 1, "handlers run: \(ran)")
        let replaced = ran.first == "old \(first.read)" ? second.read : first.read
        // Whatever the round did, the new file's bytes are all still there.
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(replaced, &buffer, buffer.count)
        #expect(String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self) == "hi from kasa\n")
        try #require(DescriptorIO.writeAll(replacement.write, Array("again\n".utf8)))
        loop.runReady()
        #expect(calls.all.last == "new \(replaced)", "the new registration is served: \(calls.all)")
    }

    /// A descriptor closed before its owner unregistered it: poll reports POLLNVAL at once,
    /// every round. The handler hears it once and the loop stops watching the number.
    @Test func aDescriptorClosedWhileRegisteredIsDroppedAndCounted() throws {
        let loop = try EventLoop()
        let calls = Calls()
        let ends = try Self.pipeHolding("x")
        defer { close(ends.read); close(ends.write) }
        // A number far above the lowest free one, which every open takes: no other test's
        // file lands under it while it is closed (poll would then watch that file instead).
        var limit = rlimit()
        try #require(getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_cur > 300)
        let number = fcntl(ends.read, F_DUPFD_CLOEXEC, Int32(min(limit.rlim_cur - 64, 4000)))
        try #require(number >= 0)
        loop.register(number) { revents in calls.add(revents & Int16(POLLNVAL) != 0 ? "invalid" : "ready") }
        close(number)
        for _ in 0..<3 { loop.runReady() }
        #expect(calls.all == ["invalid"])
        #expect(loop.descriptorsClosedWhileWatched == 1)
    }
}
