import AgentFuzzing
import Foundation

// Built for fuzzing (fuzz/run-fuzz.sh: coverage, ASan, -D FUZZING), libFuzzer's driver
// runs AgentInputFuzzer.check on generated inputs. Built normally, this replays inputs
// (files, or every file in a directory) and writes the seed corpus: a crash the fuzzer
// found can be rerun and debugged without the fuzzer's toolchain.

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// libFuzzer without its own main (fuzzer_no_main): SwiftPM names every executable's
/// entry point itself, so ours hands the command line to libFuzzer's driver.
@main
enum AgentFuzzDriver {
    static func main() {
        var count = CommandLine.argc
        var vector = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&count, &vector) { data, size in
            // A buffer of `size` bytes (nil when empty), valid for this call only.
            AgentInputFuzzer.check(size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : [])
            return 0
        })
    }
}
#else
@main
enum AgentFuzzReplay {
    static func main() throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--write-seeds", arguments.count == 2 {
            try FileManager.default.createDirectory(atPath: arguments[1], withIntermediateDirectories: true)
            for seed in AgentInputFuzzer.seeds() {
                try Data(seed.bytes).write(to: URL(filePath: arguments[1] + "/" + seed.name))
            }
            print("wrote \(AgentInputFuzzer.seeds().count) seeds to \(arguments[1])")
            exit(0)
        }
        guard !arguments.isEmpty else {
            FileHandle.standardError.write(Data("usage: agent-fuzz FILE|DIR... | --write-seeds DIR\n".utf8))
            exit(2)
        }
        var count = 0
        for argument in arguments {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("agent-fuzz: \(argument) does not exist\n".utf8))
                exit(2)
            }
            let files = isDirectory.boolValue
                ? try FileManager.default.contentsOfDirectory(atPath: argument).sorted().map { argument + "/" + $0 } : [argument]
            for file in files {
                AgentInputFuzzer.check([UInt8](try Data(contentsOf: URL(filePath: file))))
                count += 1
            }
        }
        print("agent-fuzz: \(count) inputs, no invariant broken")
    }
}
#endif
