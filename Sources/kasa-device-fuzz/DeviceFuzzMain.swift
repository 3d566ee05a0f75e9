import DeviceFuzzing
import Foundation

// Built for fuzzing (fuzz/run-device-fuzz.sh: coverage, ASan, -D FUZZING), libFuzzer's
// driver runs DeviceFuzzer.check on generated inputs against the device named by
// KASA_FUZZ_DEVICE (block, net, vsock, entropy). Built normally, this replays inputs
// (files, or every file in a directory) against that device, so a crash the fuzzer found
// can be rerun and debugged without the fuzzer's toolchain.

/// The device under test, from the environment (libFuzzer owns the command line).
func fuzzTarget() -> DeviceFuzzer.Target {
    let name = ProcessInfo.processInfo.environment["KASA_FUZZ_DEVICE"] ?? ""
    guard let target = DeviceFuzzer.Target(rawValue: name) else {
        FileHandle.standardError.write(Data("kasa-device-fuzz: set KASA_FUZZ_DEVICE to one of \(DeviceFuzzer.Target.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    return target
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

nonisolated(unsafe) var target = DeviceFuzzer.Target.block

/// libFuzzer without its own main (fuzzer_no_main): SwiftPM names every executable's
/// entry point itself, so ours hands the command line to libFuzzer's driver.
@main
enum DeviceFuzzDriver {
    static func main() {
        target = fuzzTarget()
        var count = CommandLine.argc
        var vector = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&count, &vector) { data, size in
            // A buffer of `size` bytes (nil when empty), valid for this call only.
            DeviceFuzzer.check(target, size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : [])
            return 0
        })
    }
}
#else
@main
enum DeviceFuzzReplay {
    static func main() throws {
        let target = fuzzTarget()
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--write-seeds", arguments.count == 2 {
            try FileManager.default.createDirectory(atPath: arguments[1], withIntermediateDirectories: true)
            let seeds = DeviceFuzzer.seeds(for: target)
            for seed in seeds { try Data(seed.bytes).write(to: URL(filePath: arguments[1] + "/seed-" + seed.name)) }
            print("wrote \(seeds.count) \(target.rawValue) seeds to \(arguments[1])")
            exit(0)
        }
        guard !arguments.isEmpty else {
            FileHandle.standardError.write(Data("usage: KASA_FUZZ_DEVICE=NAME kasa-device-fuzz FILE|DIR... | --write-seeds DIR\n".utf8))
            exit(2)
        }
        var count = 0
        for argument in arguments {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("kasa-device-fuzz: \(argument) does not exist\n".utf8))
                exit(2)
            }
            let files = isDirectory.boolValue
                ? try FileManager.default.contentsOfDirectory(atPath: argument).sorted().map { argument + "/" + $0 } : [argument]
            for file in files {
                DeviceFuzzer.check(target, [UInt8](try Data(contentsOf: URL(filePath: file))))
                count += 1
            }
        }
        print("kasa-device-fuzz: \(target.rawValue): \(count) inputs, none trapped")
    }
}
#endif
