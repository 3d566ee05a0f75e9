import AgentFuzzing
import Foundation
import Testing

/// The fuzz check over the committed corpus (fuzz/corpus: the seeds, and any input the
/// fuzzer ever found a fault with) and over mutations of every seed: none may break an
/// invariant. A broken precondition crashes this test process, which fails the run.
@Suite struct AgentFuzzingTests {
    static let corpus = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appending(path: "fuzz/corpus").path

    @Test func theCommittedCorpusHoldsTheSeedsAndPasses() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.corpus)
        for seed in AgentInputFuzzer.seeds() {
            #expect(names.contains(seed.name), "fuzz/corpus lacks \(seed.name): run agent-fuzz --write-seeds fuzz/corpus")
        }
        for name in names {
            AgentInputFuzzer.check([UInt8](try Data(contentsOf: URL(filePath: Self.corpus + "/" + name))))
        }
    }

    @Test func mutatedSeedsBreakNoInvariant() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(state >> 33) }
        for seed in AgentInputFuzzer.seeds() {
            for _ in 0..<200 {
                var bytes = seed.bytes
                for _ in 0..<(1 + next() % 4) where !bytes.isEmpty {
                    switch next() % 3 {
                    case 0: bytes[next() % bytes.count] = UInt8(truncatingIfNeeded: next())
                    case 1: bytes.removeSubrange((next() % bytes.count)...)
                    default: bytes.insert(UInt8(truncatingIfNeeded: next()), at: next() % bytes.count)
                    }
                }
                AgentInputFuzzer.check(bytes)
            }
        }
    }
}
