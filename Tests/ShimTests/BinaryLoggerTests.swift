import Foundation
import Runtime
@testable import Shim
import Testing

/// containerd's binary:// logger contract, with shell scripts as loggers: stdout on
/// descriptor 3, stderr on 4, ready when 5 closes, the URI's query as arguments, the
/// container id and namespace in the environment. Serialized: a script written while
/// another test spawns could be held open by that child (ETXTBSY on exec).
@Suite(.serialized, .timeLimit(.minutes(1)))
final class BinaryLoggerTests {
    let directory: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appending(path: "kasa-logger-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    // Each test gets its own instance: its scripts and outputs go with it.
    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func script(_ name: String, _ body: String) throws -> String {
        let path = directory + "/" + name
        try ("#!/bin/sh\n" + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    func write(_ text: String, to descriptor: Int32) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
    }

    func read(_ name: String) -> String { (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? "<missing>" }

    @Test func theLoggerGetsBothStreamsItsArgumentsAndTheContainerItLogs() throws {
        let logger = try script("logger", """
            cd "$(dirname "$0")"
            echo "$CONTAINER_ID $CONTAINER_NAMESPACE $*" > args
            cat <&3 > out 5>&- 4<&- &
            cat <&4 > err 5>&- 3<&- &
            exec 5>&-
            wait
            """)
        let started = try BinaryLogger.start(uri: "binary://\(logger)?--tag=web&-v", containerID: "c1", namespace: "k8s.io")
        write("to stdout\n", to: started.stdout)
        write("to stderr\n", to: started.stderr)
        close(started.stdout)
        close(started.stderr)
        let status = started.process.wait(timeout: 20)
        #expect(status == 0, "the logger ends when both streams end")
        #expect(read("args") == "c1 k8s.io --tag web -v\n")
        #expect(read("out") == "to stdout\n")
        #expect(read("err") == "to stderr\n")
    }

    @Test func aLoggerThatNeverSignalsReadyIsAnErrorNotAHang() throws {
        let logger = try script("silent", "exec sleep 30")
        let error = #expect(throws: ShimError.self) {
            _ = try BinaryLogger.start(uri: "binary://\(logger)", containerID: "c2", namespace: "default", readyTimeout: 1)
        }
        #expect(error?.message.contains("did not signal ready") == true, "\(String(describing: error))")
    }

    @Test func badURIsAreRefused() throws {
        for uri in ["binary://relative/logger", "binary:///nonexistent/logger"] {
            let error = #expect(throws: ShimError.self) { _ = try BinaryLogger.start(uri: uri, containerID: "c", namespace: "default") }
            #expect(error?.kind == .invalidArgument, "\(uri): \(String(describing: error))")
        }
    }
}
