import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// A kvm_cpuid2 header followed by its flexible array of entries, which Swift cannot
/// declare directly.
struct CPUIDBuffer {
    let header: UnsafeMutablePointer<kvm_cpuid2>
    let capacity: Int

    var entries: [kvm_cpuid_entry2] {
        let count = Int(header.pointee.nent)
        // Safe: `withBuffer` allocated room for `capacity` entries right after the header,
        // and KVM never reports more entries than the `nent` capacity it was given.
        let first = UnsafeMutableRawPointer(header).advanced(by: MemoryLayout<kvm_cpuid2>.size)
            .assumingMemoryBound(to: kvm_cpuid_entry2.self)
        return Array(UnsafeBufferPointer(start: first, count: min(count, capacity)))
    }

    static func withBuffer<R>(capacity: Int, _ body: (CPUIDBuffer) throws -> R) rethrows -> R {
        let bytes = MemoryLayout<kvm_cpuid2>.size + capacity * MemoryLayout<kvm_cpuid_entry2>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        let header = raw.bindMemory(to: kvm_cpuid2.self, capacity: 1)
        header.pointee.nent = UInt32(capacity)
        return try body(CPUIDBuffer(header: header, capacity: capacity))
    }

    static func withBuffer<R>(entries: [kvm_cpuid_entry2], _ body: (CPUIDBuffer) throws -> R) rethrows -> R {
        try withBuffer(capacity: entries.count) { buffer in
            let first = UnsafeMutableRawPointer(buffer.header).advanced(by: MemoryLayout<kvm_cpuid2>.size)
                .assumingMemoryBound(to: kvm_cpuid_entry2.self)
            // Safe: room for exactly entries.count entries was allocated above.
            for (index, entry) in entries.enumerated() { first[index] = entry }
            return try body(buffer)
        }
    }
}
