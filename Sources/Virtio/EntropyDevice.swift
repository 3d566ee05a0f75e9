import CLinux

/// virtio-rng: fills each buffer the driver offers with bytes from the host's getrandom(2).
public final class EntropyDevice: VirtioDevice, @unchecked Sendable {
    public let deviceType = VirtioDeviceType.entropy
    public let deviceFeatures: UInt64 = 0
    public let queueMaximumSizes: [UInt16] = [256]
    /// Per request, so one greedy driver request cannot make the VMM allocate without bound.
    static let maximumRequest = 64 * 1024
    private var context: VirtioDeviceContext?  // guarded by the transport's lock

    public init() {}

    public func readConfiguration(offset: Int, count: Int) -> [UInt8] { [UInt8](repeating: 0, count: count) }
    public func writeConfiguration(offset: Int, bytes: [UInt8]) {}
    public func activate(_ context: VirtioDeviceContext) throws { self.context = context }
    public func reset() { context = nil }

    public func queueNotified(_ index: Int) {
        guard let context, index == 0 else { return }
        context.drainQueue(0) { chain in
            let count = min(chain.writableLength, EntropyDevice.maximumRequest)
            var bytes = [UInt8](repeating: 0, count: count)
            let filled = bytes.withUnsafeMutableBytes { buffer -> Int in
                guard count > 0 else { return 0 }
                return clinux_getrandom(buffer.baseAddress, UInt(count))
            }
            let written = filled > 0 ? ((try? chain.write(bytes[0..<filled], memory: context.memory)) ?? 0) : 0
            return UInt32(written)
        }
    }
}
