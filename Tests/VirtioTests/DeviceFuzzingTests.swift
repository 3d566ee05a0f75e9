import DeviceFuzzing
import Foundation
import Testing

/// Replays the device fuzzers' committed corpora (fuzz/devices/<device>, grown by
/// fuzz/run-device-fuzz.sh under libFuzzer and AddressSanitizer): every input a fuzzer
/// kept, and every crash it once found, must still run through its device without a trap.
/// A corpus that is missing or empty fails: the replay must have something to replay.
@Suite(.timeLimit(.minutes(5))) struct DeviceFuzzingTests {
    static let corpusRoot = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appending(path: "fuzz/devices")

    @Test(arguments: DeviceFuzzer.Target.allCases)
    func theCorpusReplaysWithoutATrap(target: DeviceFuzzer.Target) throws {
        let directory = Self.corpusRoot.appending(path: target.rawValue).path
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        #expect(files.count >= DeviceFuzzer.seeds(for: target).count, "the \(target) corpus has fewer inputs than its seeds")
        for file in files {
            DeviceFuzzer.check(target, [UInt8](try Data(contentsOf: URL(filePath: directory + "/" + file))))
        }
    }

    /// The seeds the corpus started from are in it, byte for byte (the fuzzer starts from
    /// the working paths, and a change to the script format shows here).
    @Test(arguments: DeviceFuzzer.Target.allCases)
    func theSeedsAreInTheCorpus(target: DeviceFuzzer.Target) throws {
        let directory = Self.corpusRoot.appending(path: target.rawValue).path
        for seed in DeviceFuzzer.seeds(for: target) {
            let stored = FileManager.default.contents(atPath: directory + "/seed-" + seed.name)
            #expect(stored.map { [UInt8]($0) } == seed.bytes, "seed-\(seed.name) of \(target)")
        }
    }
}
