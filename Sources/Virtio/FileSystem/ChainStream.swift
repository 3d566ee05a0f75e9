import GuestMemory
import SharedFileSystem
#if canImport(Glibc)
import Glibc
#endif

/// A chain's readable or writable buffers as one byte stream: the FUSE driver may split a
/// request or a reply across buffers anywhere, so offsets are logical and every range is
/// mapped back onto the buffers, each piece checked against guest memory.
struct ChainStream {
    let buffers: [Descriptor]
    let memory: GuestMemory
    let length: Int

    init(_ buffers: [Descriptor], memory: GuestMemory) {
        self.buffers = buffers
        self.memory = memory
        length = buffers.reduce(0) { $0 + Int($1.length) }
    }

    /// The host memory behind [offset, offset + count), buffer by buffer.
    func pieces(from offset: Int, count: Int) throws -> [UnsafeMutableRawBufferPointer] {
        guard offset >= 0, count >= 0, offset <= length, count <= length - offset else {
            throw VirtioDeviceError.malformedRequest("range \(offset)+\(count) outside a \(length)-byte chain")
        }
        var result: [UnsafeMutableRawBufferPointer] = []
        var skip = offset
        var remaining = count
        for buffer in buffers where remaining > 0 {
            let size = Int(buffer.length)
            if skip >= size { skip -= size; continue }
            let take = min(size - skip, remaining)
            result.append(try memory.hostBuffer(at: try buffer.address.advanced(by: UInt64(skip), forAccessOf: UInt64(take)), count: take))
            remaining -= take
            skip = 0
        }
        return result
    }

    func read(from offset: Int, count: Int) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        for piece in try pieces(from: offset, count: count) { bytes += UnsafeRawBufferPointer(piece) }
        return bytes
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        var done = 0
        for piece in try pieces(from: offset, count: bytes.count) {
            bytes.withUnsafeBytes { source in
                piece.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[done..<(done + piece.count)]))
            }
            done += piece.count
        }
    }
}

/// A request's data (WRITE) and a reply's data (READ) moved between a host file and the
/// guest's buffers by preadv/pwritev: no copy in kasa-vmm.
struct GuestPayloadIO: FUSEPayloadIO {
    let request: ChainStream
    let payloadOffset: Int
    let reply: ChainStream

    var payloadLength: Int { max(0, request.length - payloadOffset) }

    func writePayload(count: Int, to descriptor: Int32, at offset: Int64) throws(HostErrno) -> Int {
        guard let pieces = try? request.pieces(from: payloadOffset, count: count) else { throw HostErrno(EINVAL) }
        return try GuestPayloadIO.transfer(pieces, descriptor: descriptor, offset: offset, write: true)
    }

    func readReplyData(count: Int, from descriptor: Int32, at offset: Int64) throws(HostErrno) -> Int {
        guard let pieces = try? reply.pieces(from: FUSE.outHeaderSize, count: count) else { throw HostErrno(EINVAL) }
        return try GuestPayloadIO.transfer(pieces, descriptor: descriptor, offset: offset, write: false)
    }

    /// preadv/pwritev until done, the end of the file (reads) or an error; a partial
    /// transfer reports what moved, an error with nothing moved is the error.
    static func transfer(_ pieces: [UnsafeMutableRawBufferPointer], descriptor: Int32, offset: Int64, write: Bool) throws(HostErrno) -> Int {
        var vectors = pieces.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        var first = 0
        var done = 0
        while first < vectors.count {
            let batch = min(vectors.count - first, 1024)  // IOV_MAX
            let result = vectors[first..<(first + batch)].withUnsafeBufferPointer { pointer in
                write ? pwritev(descriptor, pointer.baseAddress, Int32(batch), off_t(offset) + off_t(done))
                      : preadv(descriptor, pointer.baseAddress, Int32(batch), off_t(offset) + off_t(done))
            }
            if result < 0 {
                if errno == EINTR { continue }
                if done > 0 { return done }
                throw HostErrno(errno)
            }
            if result == 0 { break }
            done += result
            // Step past the vectors this call finished, and into the one it stopped in.
            var moved = result
            while first < vectors.count, moved >= vectors[first].iov_len {
                moved -= vectors[first].iov_len
                first += 1
            }
            if moved > 0 {
                vectors[first].iov_base = vectors[first].iov_base.map { $0 + moved }
                vectors[first].iov_len -= moved
            }
        }
        return done
    }
}
