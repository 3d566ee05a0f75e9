/// Turns a byte stream (read in chunks of any size) into ttrpc frames.
///
/// Feed it whatever a read returned; it hands out each frame once its header and whole
/// payload have arrived, and keeps partial headers and payloads for the next chunk.
///
/// A header that announces more than `maxPayloadLength` bytes makes it throw
/// `TTRPCFrameError.frameTooLarge` as soon as those 10 header bytes are in, without
/// waiting for or keeping any of the payload. The decoder then skips that payload as it
/// arrives (it is never stored) and goes on with the next frame, as containerd's ttrpc
/// does: a server can answer the stream with RESOURCE_EXHAUSTED and carry on, or just
/// close the connection.
public struct TTRPCFrameDecoder: Sendable {
    public let maxPayloadLength: Int

    /// Bytes received and not yet handed out; the unread part starts at `readIndex`.
    private var buffer: [UInt8] = []
    private var readIndex = 0
    /// Payload bytes of an oversized frame still to be skipped.
    private var skipRemaining: UInt64 = 0
    /// An error met by `feed` after it had already completed frames in the same call.
    private var deferredError: TTRPCFrameError?

    /// Buffers are compacted once this much has been consumed from their front.
    private static let compactionThreshold = 64 * 1024

    public init(maxPayloadLength: Int = TTRPCFrameHeader.maxPayloadLength) {
        precondition(maxPayloadLength >= 0)
        self.maxPayloadLength = maxPayloadLength
    }

    /// Bytes held for frames not yet complete.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Payload bytes of a refused (oversized) frame that will still be skipped.
    public var bytesLeftToSkip: UInt64 { skipRemaining }

    /// True when no partial frame is pending: the stream may end here cleanly.
    public var isAtFrameBoundary: Bool { bufferedByteCount == 0 && skipRemaining == 0 }

    /// Adds received bytes. Bytes that belong to a refused frame's payload are dropped
    /// here, never stored.
    public mutating func append<Bytes: Sequence<UInt8>>(_ bytes: Bytes) {
        if skipRemaining == 0 && bufferedByteCount == 0 {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        }
        if skipRemaining == 0 {
            buffer.append(contentsOf: bytes)
            return
        }
        var iterator = bytes.makeIterator()
        while skipRemaining > 0 {
            guard iterator.next() != nil else { return }
            skipRemaining -= 1
        }
        while let byte = iterator.next() { buffer.append(byte) }
    }

    /// The next complete frame, or nil when more bytes are needed.
    public mutating func nextFrame() throws(TTRPCFrameError) -> TTRPCFrame? {
        if let error = deferredError {
            deferredError = nil
            throw error
        }
        guard skipRemaining == 0, bufferedByteCount >= TTRPCFrameHeader.size else { return nil }
        let header = buffer.withUnsafeBytes { raw in
            TTRPCFrameHeader(unchecked: UnsafeRawBufferPointer(rebasing: raw[readIndex...]))
        }
        let length = Int(header.length)
        if length > maxPayloadLength {
            // Refuse at once: drop the header and whatever of the payload is already
            // here, and skip the rest of it as it arrives.
            readIndex += TTRPCFrameHeader.size
            let present = min(length, bufferedByteCount)
            readIndex += present
            skipRemaining = UInt64(length - present)
            compact()
            throw .frameTooLarge(streamID: header.streamID, length: UInt64(header.length), limit: maxPayloadLength)
        }
        guard bufferedByteCount >= TTRPCFrameHeader.size + length else { return nil }
        let payloadStart = readIndex + TTRPCFrameHeader.size
        let payload = Array(buffer[payloadStart ..< payloadStart + length])
        readIndex = payloadStart + length
        compact()
        return TTRPCFrame(streamID: header.streamID, type: header.type, flags: header.flags, payload: payload)
    }

    /// Appends `bytes` and returns every frame they complete, in order.
    ///
    /// If an error (`frameTooLarge`) comes after frames that this call completed, those
    /// frames are returned and the error is thrown by the next call to `feed` or
    /// `nextFrame`; after an error the decoder goes on as described above.
    public mutating func feed<Bytes: Sequence<UInt8>>(_ bytes: Bytes) throws(TTRPCFrameError) -> [TTRPCFrame] {
        if let error = deferredError {
            // Keep the bytes; report the earlier error first.
            deferredError = nil
            append(bytes)
            throw error
        }
        append(bytes)
        var frames: [TTRPCFrame] = []
        while true {
            do throws(TTRPCFrameError) {
                guard let frame = try nextFrame() else { return frames }
                frames.append(frame)
            } catch {
                if frames.isEmpty { throw error }
                deferredError = error
                return frames
            }
        }
    }

    private mutating func compact() {
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 2 * Self.compactionThreshold)
            readIndex = 0
        } else if readIndex >= Self.compactionThreshold && readIndex >= buffer.count / 2 {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
    }
}
