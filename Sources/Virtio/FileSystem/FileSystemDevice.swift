import GuestMemory
import HostOS
import SharedFileSystem
#if canImport(Glibc)
import Glibc
#endif

/// virtio-fs: a host directory served to the guest over FUSE (device ID 26). Queue 0 is
/// the high-priority queue (FORGET, INTERRUPT), queue 1 the request queue. The event loop
/// only takes chains off the rings; a few worker threads run the requests (file I/O
/// straight between host files and guest buffers) and hand the chains back under the
/// transport's lock.
public final class FileSystemDevice: VirtioDevice, @unchecked Sendable {
    public let deviceType = VirtioDeviceType.fileSystem
    public let deviceFeatures: UInt64 = 0
    public let queueMaximumSizes: [UInt16] = [128, 128]
    /// The mount tag the guest names (`mount -t virtiofs TAG DIR`), at most 36 bytes.
    public let tag: String
    public let server: SharedDirectory
    /// Requests beyond this size (header and arguments; a WRITE's data is not counted) are
    /// refused: the largest is SETXATTR with a 64 KiB value.
    static let maximumRequest = 64 * 1024 + 4096

    /// nil: requests run inline, on the notifying thread (the fuzzer: one input, one
    /// deterministic run).
    private let workers: RequestWorkers?
    private let progress = Monitor()
    // Guarded by the transport's lock.
    private var context: VirtioDeviceContext?
    /// Bumped by every activate and reset: a worker finishing a request from an earlier
    /// generation must not touch the rings the driver has since reset.
    private var generation: UInt64 = 0
    // Guarded by `progress`: requests a worker holds whose guest buffers it may still write.
    private var inFlight = 0
    /// Chains taken off a ring whose used entry is not pushed yet (guarded by the
    /// transport's lock, like the rings): a snapshot must not cut one in half.
    private var unanswered = 0
    private let errorCount = Lock()
    private var malformed = 0

    /// `workers`: threads serving requests; 0 serves them inline.
    public init(tag: String, directory: String, options: SharedDirectoryOptions = SharedDirectoryOptions(),
                workers count: Int = 4) throws {
        guard !tag.isEmpty, tag.utf8.count <= 36 else { throw FileSystemDeviceError.badTag(tag) }
        do {
            server = try SharedDirectory(path: directory, options: options)
        } catch {
            throw FileSystemDeviceError.cannotExport(path: directory, reason: error.description)
        }
        self.tag = tag
        workers = count > 0 ? try RequestWorkers(count: count, name: "kasa-fs") : nil
        FileSystemDevice.raiseDescriptorLimit(toAtLeast: options.maximumNodes + options.maximumHandles + 1024)
    }

    /// Every node the guest holds is an open descriptor: the soft RLIMIT_NOFILE (often
    /// 1024) would make a guest listing a large directory fail long before the table's own
    /// limit, so it is raised towards the hard limit (never above it).
    static func raiseDescriptorLimit(toAtLeast wanted: Int) {
        var limit = rlimit()
        guard getrlimit(descriptorLimitResource, &limit) == 0, limit.rlim_cur < rlim_t(wanted) else { return }
        limit.rlim_cur = min(limit.rlim_max, rlim_t(wanted))
        _ = setrlimit(descriptorLimitResource, &limit)
    }

    private static let descriptorLimitResource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)

    deinit { workers?.stop() }

    /// Chains that could not be read as a request (also counted as queue errors when the
    /// ring itself was broken).
    public var malformedRequests: Int { errorCount.withLock { malformed } }

    /// Config space: tag[36] (NUL-padded), num_request_queues (u32).
    public func readConfiguration(offset: Int, count: Int) -> [UInt8] {
        var space = Array(tag.utf8) + [UInt8](repeating: 0, count: 36 - tag.utf8.count)
        space += [1, 0, 0, 0]
        guard offset >= 0, count >= 0, offset < space.count else { return [UInt8](repeating: 0, count: max(count, 0)) }
        let end = min(space.count, offset + count)
        return Array(space[offset..<end]) + [UInt8](repeating: 0, count: count - (end - offset))
    }

    public func writeConfiguration(offset: Int, bytes: [UInt8]) {}

    public func activate(_ context: VirtioDeviceContext) throws {
        self.context = context
        generation &+= 1
        unanswered = 0
    }

    public func reset() {
        context = nil
        generation &+= 1
        unanswered = 0
        // Wait for workers still writing into guest buffers: after a reset the driver may
        // reuse that memory. They only take the transport's lock (held here) after they are
        // done with guest memory, so this cannot deadlock.
        _ = progress.wait(until: { inFlight == 0 })
        server.reset()
    }

    /// The host files the guest holds cannot be saved in a snapshot: once it has mounted
    /// the export (a FUSE session), or while a request is being served, none can be taken.
    /// A device the driver has only probed (a template VM: the agent mounts the export of
    /// each clone later) holds nothing of the host and is saved with its rings alone.
    public var snapshotObstacle: String? {
        guard context != nil else { return nil }
        if unanswered > 0 { return "the virtio-fs device (tag \(tag)) has \(unanswered) request(s) unanswered" }
        if !server.isIdle { return "the guest has mounted the virtio-fs device (tag \(tag)): the host files it holds cannot be saved" }
        return nil
    }

    public func queueNotified(_ index: Int) {
        guard let context, index == 0 || index == 1 else { return }
        let queue = context.queues[index]
        let current = generation
        while let chain = context.nextChain(index) {
            guard let workers else {
                do {
                    try queue.pushUsed(head: chain.head, length: try serve(chain, memory: context.memory), memory: context.memory)
                    context.signalUsed(index)
                } catch {
                    context.queueBroken(index, error)
                    break
                }
                continue
            }
            progress.update { inFlight += 1 }
            unanswered += 1
            workers.submit { [self] in
                let outcome = Result { try self.serve(chain, memory: context.memory) }
                self.progress.update { self.inFlight -= 1 }
                context.serialized {
                    guard self.generation == current, self.context != nil else { return }
                    self.unanswered -= 1
                    do {
                        try queue.pushUsed(head: chain.head, length: try outcome.get(), memory: context.memory)
                        context.signalUsed(index)
                    } catch {
                        context.queueBroken(index, error)
                    }
                }
            }
        }
    }

    /// Runs one request; returns the bytes written into the chain's writable buffers. A
    /// chain that cannot carry a request and its reply header throws: the queue is broken
    /// (DEVICE_NEEDS_RESET), as for any malformed chain.
    func serve(_ chain: DescriptorChain, memory: GuestMemory) throws -> UInt32 {
        let request = ChainStream(chain.readable, memory: memory)
        let reply = ChainStream(chain.writable, memory: memory)
        do {
            let header = try request.read(from: 0, count: min(request.length, FUSE.inHeaderSize))
            guard header.count == FUSE.inHeaderSize else { throw VirtioDeviceError.malformedRequest("FUSE request shorter than its header") }
            var reader = FUSEReader(header)
            let parsed = try FUSEInHeader(&reader)
            // A WRITE's data stays in guest memory: only its arguments are read here.
            let writeArguments = 40
            let argumentEnd = parsed.opcode == FUSEOpcode.write.rawValue
                ? min(request.length, FUSE.inHeaderSize + writeArguments) : request.length
            let answer: FUSEReply?
            if argumentEnd > FileSystemDevice.maximumRequest {
                answer = FUSEReply(unique: parsed.unique, error: -E2BIG, body: [], dataLength: 0)
            } else {
                let bytes = try request.read(from: 0, count: argumentEnd)
                let io = GuestPayloadIO(request: request, payloadOffset: argumentEnd, reply: reply)
                answer = server.serve(bytes, replyCapacity: reply.length - FUSE.outHeaderSize, io: io)
            }
            guard var answer else { return 0 }
            guard reply.length >= FUSE.outHeaderSize else {
                throw VirtioDeviceError.malformedRequest("no room for the reply header")
            }
            if answer.body.count > reply.length - FUSE.outHeaderSize {
                answer = FUSEReply(unique: answer.unique, error: -ERANGE, body: [], dataLength: 0)
            }
            try reply.write(answer.header.encoded + answer.body, at: 0)
            return UInt32(FUSE.outHeaderSize + answer.body.count + answer.dataLength)
        } catch {
            errorCount.withLock { malformed += 1 }
            throw error
        }
    }
}

public enum FileSystemDeviceError: Error, Equatable, CustomStringConvertible {
    case badTag(String)
    case cannotExport(path: String, reason: String)

    public var description: String {
        switch self {
        case .badTag(let tag): return "virtio-fs tag '\(tag)' must be 1 to 36 bytes"
        case .cannotExport(let path, let reason): return "cannot share directory '\(path)': \(reason)"
        }
    }
}
