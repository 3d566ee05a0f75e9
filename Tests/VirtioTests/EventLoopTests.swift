import Foundation
import HostOS
import Testing
import Virtio

/// The event loop's timers: device backends (vsock's request timeouts and close grace)
/// schedule their work there, so it runs on the loop thread beside their socket events.
@Suite struct EventLoopTests {
    final class Record: @unchecked Sendable {
        let monitor = Monitor()
        var fired: [(name: String, at: UInt64, onLoop: Bool)] = []
        var loopThread: pthread_t?
        /// Whether the caller is the loop's thread.
        var onLoop: Bool { monitor.withLock { loopThread.map { pthread_equal($0, pthread_self()) != 0 } ?? false } }
    }

    @Test func timersFireInDeadlineOrderOnTheLoopThreadAndNotBefore() throws {
        let loop = try EventLoop()
        let record = Record()
        let loopThread = Thread {
            record.monitor.update { record.loopThread = pthread_self() }
            loop.run()
        }
        loopThread.start()
        defer { loop.stop() }
        let scheduled = EventLoop.now()
        for (name, milliseconds) in [("late", 150), ("early", 30), ("now", 0), ("middle", 80)] {
            loop.schedule(after: UInt64(milliseconds) * 1_000_000) {
                let onLoop = record.onLoop
                record.monitor.update { record.fired.append((name, EventLoop.now(), onLoop)) }
            }
        }
        #expect(record.monitor.wait(until: { record.fired.count == 4 }, timeout: 10), "\(record.fired.map(\.name))")
        let fired = record.monitor.withLock { record.fired }
        #expect(fired.map(\.name) == ["now", "early", "middle", "late"])
        #expect(fired.allSatisfy { $0.onLoop })
        let late = try #require(fired.last)
        let lateAt = late.at
        #expect(lateAt - scheduled >= 150_000_000, "fired \((lateAt - scheduled) / 1_000_000) ms after scheduling")
    }

    @Test func aTimerDoesNotHoldUpSocketEventsAndAStoppedLoopRunsNoMore() throws {
        let loop = try EventLoop()
        let record = Record()
        let loopThread = Thread { loop.run() }
        loopThread.start()
        var pair: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        loop.schedule(after: 60_000_000_000) { record.monitor.update { record.fired.append(("far", 0, true)) } }
        let readEnd = pair[0]
        loop.register(readEnd) { _ in
            var byte: UInt8 = 0
            _ = read(readEnd, &byte, 1)
            record.monitor.update { record.fired.append(("socket", 0, true)) }
        }
        _ = DescriptorIO.writeAll(pair[1], [1])
        #expect(record.monitor.wait(until: { !record.fired.isEmpty }, timeout: 10))
        loop.stop()
        #expect(record.monitor.withLock { record.fired.map(\.name) } == ["socket"])
    }
}
