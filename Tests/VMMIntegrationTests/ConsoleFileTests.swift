import Foundation
import Testing
@testable import VMM

/// kasa-vmm's console file has a size limit: a guest that writes without end must not
/// fill the host's disk, and the latest output (what explains a failure) is kept.
@Suite struct ConsoleFileTests {
    @Test func aConsoleFileStartsOverAtItsLimitKeepingTheLatestOutput() throws {
        let path = FileManager.default.temporaryDirectory.appending(path: "kasa-console-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let sink = try ConsoleSink.make(.file(path: path), fileLimit: 1000)
        for line in 0..<300 { sink(Array("line \(line)\n".utf8)) }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.utf8.count <= 1000, "\(text.utf8.count) bytes")
        #expect(text.hasPrefix("kasa-vmm: the console log reached 1000 bytes; earlier output was dropped\n"), "\(text.prefix(120))")
        #expect(text.hasSuffix("line 299\n"))
        #expect(!text.contains("line 0\n"))
    }

    @Test func aConsoleUnderItsLimitIsWrittenAsItCame() throws {
        let path = FileManager.default.temporaryDirectory.appending(path: "kasa-console-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let sink = try ConsoleSink.make(.file(path: path), fileLimit: 1000)
        for byte in Array("hello\nworld\n".utf8) { sink([byte]) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "hello\nworld\n")
    }
}
