import Foundation
import GuestMemory
import Synchronization
import Testing

/// A guest vCPU writes a virtqueue's idx while a device thread reads it. Every read must
/// give the old value or the new one, never the old low byte with the new high byte: a
/// torn idx of 0x01FF between 0x00FF and 0x0100 told a device 257 entries waited in a
/// 256-entry ring (NotificationRaceTests, once in a full run), and one of 0x01FF with
/// fewer outstanding would have had it serve ring slots the driver never filled.
@Suite struct ConcurrentFieldTests {
    final class Flag: Sendable {
        let stop = Atomic<Bool>(false)
    }

    /// Alternates the field between two values whose bytes all differ while this thread
    /// reads it, for `seconds`; returns the values read that were neither.
    static func tornReads<T: FixedWidthInteger & Sendable>(_ old: T, _ new: T, seconds: Double) throws -> [T] {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 0x1000)])
        let address = GuestAddress(0x100)
        try memory.write(old, at: address)
        let flag = Flag()
        let writer = Thread {
            while !flag.stop.load(ordering: .relaxed) {
                try? memory.write(new, at: address)
                try? memory.write(old, at: address)
            }
        }
        writer.start()
        defer { flag.stop.store(true, ordering: .relaxed) }
        var torn: [T] = []
        let deadline = Date().addingTimeInterval(seconds)
        var reads = 0
        while torn.count < 10 && (reads % 4096 != 0 || Date() < deadline) {
            let value = try memory.read(T.self, at: address)
            if value != old && value != new { torn.append(value) }
            reads += 1
        }
        return torn
    }

    @Test func a16BitFieldWrittenMeanwhileIsReadWhole() throws {
        let torn = try Self.tornReads(UInt16(0x00FF), UInt16(0x0100), seconds: 2)
        #expect(torn.isEmpty, "read \(torn.map { "0x" + String($0, radix: 16) }) between 0xff and 0x100")
    }

    @Test func a32BitFieldWrittenMeanwhileIsReadWhole() throws {
        let torn = try Self.tornReads(UInt32(0x00FF_FFFF), UInt32(0x0100_0000), seconds: 2)
        #expect(torn.isEmpty, "read \(torn.map { "0x" + String($0, radix: 16) }) between 0xffffff and 0x1000000")
    }
}
