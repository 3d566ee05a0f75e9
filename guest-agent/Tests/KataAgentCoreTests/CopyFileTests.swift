import AgentProtocol
import Foundation
import Testing
@testable import KataAgentCore
#if canImport(Glibc)
import Glibc
#endif

/// CopyFile: how bind mounts of host files reach a VM without a shared file system. The
/// runtime copies each file, directory and symlink into the agent's shared-files
/// directory and binds the copy; nothing may land outside that directory.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct CopyFileTests {
    static func request(_ path: String, _ mode: mode_t, _ data: String = "", size: Int? = nil, offset: Int = 0,
                        uid: Int32 = 0, gid: Int32 = 0) -> AgentCopyFileRequest {
        var request = AgentCopyFileRequest()
        request.path = path
        request.fileMode = mode
        request.dirMode = 0o755
        request.data = Data(data.utf8)
        request.fileSize = Int64(size ?? data.utf8.count)
        request.offset = Int64(offset)
        request.uid = uid
        request.gid = gid
        return request
    }

    @Test func copiedFilesAreBoundIntoTheContainerAndGoWithIt() throws {
        let agent = try RunningAgent()
        let details = try agent.client.call(.getGuestDetails, AgentGuestDetailsRequest(), returning: AgentGuestDetailsResponse.self)
        let shared = details.sharedFilesDirectory
        #expect(shared == agent.directory + "/state/shared")
        let config = shared + "/c1/0-config"
        for step in [Self.request(config, S_IFDIR | 0o750),
                     Self.request(config + "/app.conf", S_IFREG | 0o640, "hello ", size: 12, uid: 1000, gid: 1000),
                     Self.request(config + "/app.conf", S_IFREG | 0o640, "world\n", size: 12, offset: 6, uid: 1000, gid: 1000),
                     Self.request(config + "/link", S_IFLNK | 0o777, "app.conf"),
                     Self.request(shared + "/c1/1-hosts", S_IFREG | 0o644, "10.0.0.7 db\n")] {
            try agent.client.call(.copyFile, step)
        }
        #expect(try String(contentsOfFile: config + "/app.conf", encoding: .utf8) == "hello world\n")
        var info = stat()
        #expect(stat(config + "/app.conf", &info) == 0 && info.st_mode & 0o7777 == 0o640 && info.st_uid == 1000 && info.st_gid == 1000)
        #expect(lstat(config, &info) == 0 && info.st_mode & 0o7777 == 0o750)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: config + "/link") == "app.conf")

        try agent.create("c1", "cat /config/app.conf /config/link /etc/hosts", extraMounts: """
            , {"destination": "/config", "type": "bind", "source": "\(config)", "options": ["rbind", "ro"]},
              {"destination": "/etc/hosts", "type": "bind", "source": "\(shared)/c1/1-hosts", "options": ["bind", "ro"]}
            """)
        try agent.start("c1")
        #expect(try agent.readAll(.readStdout, "c1") == "hello world\nhello world\n10.0.0.7 db\n")
        #expect(try agent.wait("c1") == 0)
        // A name that is not UTF-8 (a container can make any name in a writable copy).
        let oddName = (config + "/").utf8CString.dropLast() + [CChar(bitPattern: 0xff), CChar(bitPattern: 0xfe), 0]
        let odd = open(Array(oddName), O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        #expect(odd >= 0)
        close(odd)
        try agent.remove("c1")
        #expect(access(shared + "/c1", F_OK) != 0, "the container's copies outlived it")
    }

    /// Set-id bits survive the owner change (chown clears them; the agent sets the mode last).
    @Test func modesAndOwnersAreKept() throws {
        let agent = try RunningAgent()
        let shared = agent.directory + "/state/shared"
        try agent.client.call(.copyFile, Self.request(shared + "/c3/tool", S_IFREG | 0o4755, "#!/bin/sh\n", uid: 1000, gid: 1000))
        try agent.client.call(.copyFile, Self.request(shared + "/c3/empty", S_IFREG | 0o600, ""))
        var info = stat()
        #expect(stat(shared + "/c3/tool", &info) == 0 && info.st_mode & 0o7777 == 0o4755 && info.st_uid == 1000)
        #expect(stat(shared + "/c3/empty", &info) == 0 && info.st_size == 0 && info.st_mode & 0o7777 == 0o600)
    }

    @Test func nothingIsWrittenOutsideTheSharedDirectory() throws {
        let agent = try RunningAgent()
        let shared = agent.directory + "/state/shared"
        let outside = agent.directory + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try agent.client.call(.copyFile, Self.request(shared + "/c2/escape", S_IFLNK | 0o777, outside))
        try agent.client.call(.copyFile, Self.request(shared + "/c2/file", S_IFREG | 0o644, "x"))
        try agent.client.call(.copyFile, Self.request(shared + "/c2/file-link", S_IFLNK | 0o777, outside + "/through-link"))
        let regular = S_IFREG | 0o644
        let refused: [(AgentCopyFileRequest, String)] = [
            (Self.request(agent.directory + "/elsewhere", regular, "x"), "not inside"),
            (Self.request(shared + "/c2/../../elsewhere", regular, "x"), "'..'"),
            (Self.request(shared + "/c2/escape/planted", regular, "x"), "not a directory"),
            (Self.request(shared + "/c2/file-link", regular, "x"), "open"),
            (Self.request(shared + "/c2/big", regular, "12345", size: 3), "do not fit"),
            (Self.request(shared + "/c2/fifo", S_IFIFO | 0o644), "only regular files"),
        ]
        for (request, reason) in refused {
            let error = #expect(throws: TTRPCCallError.self) { try agent.client.call(.copyFile, request) }
            #expect(error?.message.contains(reason) == true, "\(request.path): \(String(describing: error))")
        }
        // Sizes and offsets chosen to overflow a naive offset + count: refused, not a crash.
        var huge = Self.request(shared + "/c2/huge", regular, "12345")
        huge.offset = Int64.max - 2
        huge.fileSize = Int64.max
        let overflow = #expect(throws: TTRPCCallError.self) { try agent.client.call(.copyFile, huge) }
        #expect(overflow?.code == .invalidArgument)
        let nul = #expect(throws: TTRPCCallError.self) {
            try agent.client.call(.copyFile, Self.request(shared + "/\u{0}c2", S_IFDIR | 0o700))
        }
        #expect(nul?.message.contains("NUL") == true, "\(String(describing: nul))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "a request wrote outside the shared directory")
        #expect(access(agent.directory + "/elsewhere", F_OK) != 0)
        // The agent still serves.
        _ = try agent.client.call(.check, AgentCheckRequest(), returning: AgentHealthCheckResponse.self)
    }
}
